"""Steps and pipelines: definitions, built and checked once, never changed in place.

A step is a plain typed Python function decorated with :func:`step` (or a SQL statement, :func:`sql_step`).
A pipeline is a function decorated with :func:`pipeline` whose body calls steps; calling a step inside it
records a node instead of running it, and passing one step's result to another records an edge::

    @step
    def prepare(raw: pd.DataFrame, min_tenure: int = 0) -> pd.DataFrame:
        return raw[raw.tenure_months >= min_tenure]

    @pipeline
    def churn(min_tenure: int = 3):
        prepared = prepare(data("churn@latest"), min_tenure=min_tenure)
        train(prepared)

Pipeline parameters (``min_tenure``) have defaults and are overridden at run time. Outside a pipeline a step
is still the plain function: ``prepare(frame)`` just calls it.
"""

from __future__ import annotations

import contextvars
import hashlib
import inspect
import typing
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from conveyor.errors import InvalidSpec, did_you_mean
from conveyor.refs import parse_ref, validate_name

__all__ = [
    "Binding",
    "DataRef",
    "Node",
    "Param",
    "Pipeline",
    "Step",
    "StepOutput",
    "data",
    "pipeline",
    "sql_step",
    "step",
]

_JSON_SCALARS = (str, int, float, bool, type(None))


@dataclass(frozen=True)
class Step:
    """A unit of work. ``func`` is the user's function (``None`` for a SQL step, which has ``sql``)."""

    name: str
    func: Callable[..., Any] | None
    sql: str | None = None
    cache: bool = True
    retries: int = 0
    retry_backoff: float = 1.0
    timeout: float | None = None
    continue_on_failure: bool = False
    sql_inputs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        validate_name(self.name, "step")
        if self.retries < 0:
            raise InvalidSpec(f"Step {self.name!r}: retries must be 0 or more, not {self.retries}.")
        if self.retry_backoff < 0:
            raise InvalidSpec(f"Step {self.name!r}: retry_backoff must be 0 or more seconds.")
        if self.timeout is not None and self.timeout <= 0:
            raise InvalidSpec(f"Step {self.name!r}: timeout must be a positive number of seconds.")

    @property
    def parameters(self) -> list[str]:
        if self.func is None:
            return list(self.sql_inputs)
        return list(inspect.signature(self.func).parameters)

    def required(self) -> list[str]:
        if self.func is None:
            return list(self.sql_inputs)
        return [
            n
            for n, p in inspect.signature(self.func).parameters.items()
            if p.default is inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]

    def annotations(self) -> dict[str, Any]:
        """Resolved type hints of the function (``return`` included); empty for SQL steps."""
        if self.func is None:
            return {"return": "table"}
        try:
            return typing.get_type_hints(self.func)
        except Exception:  # noqa: BLE001 - unresolvable hints (forward refs) are treated as unknown
            return {}

    def code(self) -> str:
        """What identifies the step's behaviour for caching: its source (or SQL) and its settings."""
        if self.func is None:
            body = self.sql or ""
        else:
            try:
                body = inspect.getsource(self.func)
            except (OSError, TypeError):
                code = getattr(self.func, "__code__", None)
                body = repr(code.co_code) if code is not None else repr(self.func)
        return f"{self.name}\n{body}"

    def reference(self) -> str | None:
        """``module:qualname`` of the function when it can be imported by name (not for ``__main__``)."""
        if self.func is None:
            return None
        module, qualname = getattr(self.func, "__module__", None), getattr(self.func, "__qualname__", "")
        if not module or module == "__main__" or "<locals>" in qualname:
            return None
        return f"{module}:{qualname}"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        builder = _BUILDER.get()
        if builder is None:
            if self.func is None:
                raise InvalidSpec(f"SQL step {self.name!r} runs only inside a pipeline.")
            return self.func(*args, **kwargs)
        return builder.add(self, args, kwargs)


@typing.overload
def step(func: Callable[..., Any], /) -> Step: ...


@typing.overload
def step(
    func: None = None,
    *,
    name: str | None = None,
    cache: bool = True,
    retries: int = 0,
    retry_backoff: float = 1.0,
    timeout: float | None = None,
    continue_on_failure: bool = False,
) -> Callable[[Callable[..., Any]], Step]: ...


def step(
    func: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    cache: bool = True,
    retries: int = 0,
    retry_backoff: float = 1.0,
    timeout: float | None = None,
    continue_on_failure: bool = False,
) -> Any:
    """Make a function a pipeline step (usable bare, ``@step``, or with options, ``@step(retries=2)``).

    Args:
        cache: reuse the outputs of an earlier successful run with the same code, parameters and inputs.
        retries: extra attempts after a failure, waiting ``retry_backoff`` seconds, doubled each time.
        timeout: seconds after which the attempt's process is stopped and the attempt fails.
        continue_on_failure: when this step fails, the steps that need it are skipped but the rest of the
            pipeline still runs (and the run does not fail because of it).
    """

    def wrap(f: Callable[..., Any]) -> Step:
        return Step(
            name=name or f.__name__,
            func=f,
            cache=cache,
            retries=retries,
            retry_backoff=retry_backoff,
            timeout=timeout,
            continue_on_failure=continue_on_failure,
        )

    return wrap(func) if func is not None else wrap


def sql_step(name: str, query: str, *, inputs: tuple[str, ...] | list[str] = (), **options: Any) -> Step:
    """A step that runs DuckDB SQL over its inputs, each visible as a table named after its argument, and
    returns the result as a table. Pipeline parameters appear as ``$name`` placeholders."""
    return Step(name=name, func=None, sql=query, sql_inputs=tuple(inputs), **options)


@dataclass(frozen=True)
class Param:
    """A pipeline parameter, as seen while the pipeline's graph is built."""

    name: str


@dataclass(frozen=True)
class DataRef:
    """A data version to read, resolved when the run starts (``churn@latest`` becomes ``churn:4``)."""

    ref: str


def data(ref: str) -> DataRef:
    """A data asset input: ``data("churn@latest")`` or ``data("churn:3")``."""
    parse_ref(ref, "data asset")
    return DataRef(ref)


@dataclass(frozen=True)
class StepOutput:
    """The future result of a node, as seen while the pipeline's graph is built."""

    node: str


@dataclass(frozen=True)
class Binding:
    """Where one argument of a node comes from: another node's output, a parameter, a data version or a
    literal JSON value."""

    kind: str  # "output" | "param" | "data" | "value"
    value: Any

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "value": self.value}


@dataclass(frozen=True)
class Node:
    """One call of a step in a pipeline."""

    name: str
    step: Step
    args: Mapping[str, Binding]

    @property
    def upstream(self) -> list[str]:
        return sorted({b.value for b in self.args.values() if b.kind == "output"})


@dataclass(frozen=True)
class Pipeline:
    """A checked graph of nodes in a runnable order, with its parameters' defaults."""

    name: str
    nodes: tuple[Node, ...]
    params: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def resolve_params(self, given: Mapping[str, Any] | None) -> dict[str, Any]:
        """Defaults overridden by ``given``.

        Raises:
            InvalidSpec: an unknown parameter (with "did you mean"), or one without default left unset.
        """
        values = dict(self.params)
        for key, value in (given or {}).items():
            if key not in self.params:
                known = ", ".join(sorted(self.params)) or "none"
                raise InvalidSpec(
                    f"Pipeline {self.name!r} has no parameter {key!r}.{did_you_mean(key, self.params)} "
                    f"Its parameters: {known}.",
                    param=key,
                )
            values[key] = value
        missing = [k for k, v in values.items() if v is _REQUIRED]
        if missing:
            raise InvalidSpec(
                f"Pipeline {self.name!r} needs a value for {missing[0]!r}: pass --param {missing[0]}=VALUE."
            )
        return values

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for n in self.nodes:
            digest.update(n.step.code().encode())
            digest.update(repr(sorted((k, b.kind, repr(b.value)) for k, b in n.args.items())).encode())
        return digest.hexdigest()


class _Required:
    def __repr__(self) -> str:
        return "<required>"


_REQUIRED: Any = _Required()


class _GraphBuilder:
    def __init__(self, pipeline_name: str, params: Mapping[str, Any]) -> None:
        self.pipeline_name = pipeline_name
        self.params = params
        self.nodes: list[Node] = []
        self.names: set[str] = set()

    def add(self, step_: Step, args: tuple[Any, ...], kwargs: dict[str, Any]) -> StepOutput:
        names = step_.parameters
        if len(args) > len(names):
            raise InvalidSpec(f"Step {step_.name!r} takes {len(names)} arguments, {len(args)} were given.")
        given = dict(zip(names, args, strict=False))
        for key, value in kwargs.items():
            if key not in names:
                raise InvalidSpec(
                    f"Step {step_.name!r} has no argument {key!r}.{did_you_mean(key, names)} Its arguments: "
                    f"{', '.join(names)}."
                )
            if key in given:
                raise InvalidSpec(f"Step {step_.name!r} got {key!r} twice.")
            given[key] = value
        node_name = step_.name
        counter = 2
        while node_name in self.names:
            node_name, counter = f"{step_.name}_{counter}", counter + 1
        missing = [r for r in step_.required() if r not in given]
        if missing:
            raise InvalidSpec(
                f"Step {step_.name!r} in pipeline {self.pipeline_name!r} needs {missing[0]!r} and nothing gives it: "
                "pass another step's result, a parameter, data(...) or a value."
            )
        bindings = {key: self._bind(node_name, key, value) for key, value in given.items()}
        node = Node(node_name, step_, bindings)
        _check_types(node, {n.name: n for n in self.nodes})
        self.nodes.append(node)
        self.names.add(node_name)
        return StepOutput(node_name)

    def _bind(self, node: str, key: str, value: Any) -> Binding:
        if isinstance(value, StepOutput):
            return Binding("output", value.node)
        if isinstance(value, Param):
            return Binding("param", value.name)
        if isinstance(value, DataRef):
            return Binding("data", value.ref)
        if _json_ready(value):
            return Binding("value", value)
        raise InvalidSpec(
            f"Argument {key!r} of {node!r} is a {type(value).__name__}; a step takes another step's result, a "
            "pipeline parameter, data('asset@latest') or a JSON value (text, number, list, mapping)."
        )


_BUILDER: contextvars.ContextVar[_GraphBuilder | None] = contextvars.ContextVar("conveyor_pipeline", default=None)


@contextmanager
def _building(builder: _GraphBuilder) -> Iterator[None]:
    token = _BUILDER.set(builder)
    try:
        yield
    finally:
        _BUILDER.reset(token)


@typing.overload
def pipeline(func: Callable[..., Any], /) -> Pipeline: ...


@typing.overload
def pipeline(
    func: None = None, *, name: str | None = None, description: str = ""
) -> Callable[[Callable[..., Any]], Pipeline]: ...


def pipeline(func: Callable[..., Any] | None = None, *, name: str | None = None, description: str = "") -> Any:
    """Build a :class:`Pipeline` from a function whose body calls steps (``@pipeline`` or ``@pipeline(name=…)``).

    Its parameters become the pipeline's parameters; give each a default (or pass it at run time).
    """

    def build(f: Callable[..., Any]) -> Pipeline:
        pipeline_name = name or f.__name__.replace("_", "-")
        validate_name(pipeline_name, "pipeline")
        signature = inspect.signature(f)
        params = {
            p: (_REQUIRED if spec.default is inspect.Parameter.empty else spec.default)
            for p, spec in signature.parameters.items()
        }
        for key, value in params.items():
            if value is not _REQUIRED and not _json_ready(value):
                raise InvalidSpec(f"Parameter {key!r} of pipeline {pipeline_name!r} must default to a JSON value.")
        builder = _GraphBuilder(pipeline_name, params)
        with _building(builder):
            f(**{p: Param(p) for p in params})
        if not builder.nodes:
            raise InvalidSpec(f"Pipeline {pipeline_name!r} calls no step; call at least one @step function.")
        return Pipeline(pipeline_name, tuple(builder.nodes), params, description or (inspect.getdoc(f) or ""))

    return build(func) if func is not None else build


def topological(nodes: list[Node], pipeline_name: str) -> tuple[Node, ...]:
    """``nodes`` in an order where each comes after the nodes it needs.

    Raises:
        InvalidSpec: a node needs an unknown node, or the nodes form a cycle (named in the message).
    """
    by_name = {n.name: n for n in nodes}
    for n in nodes:
        for up in n.upstream:
            if up not in by_name:
                raise InvalidSpec(
                    f"Step {n.name!r} of pipeline {pipeline_name!r} needs step {up!r}, which is not in the pipeline."
                    f"{did_you_mean(up, by_name)}"
                )
    ordered: list[Node] = []
    state: dict[str, int] = {}

    def visit(n: Node, path: list[str]) -> None:
        mark = state.get(n.name, 0)
        if mark == 2:
            return
        if mark == 1:
            cycle = [*path[path.index(n.name) :], n.name]
            raise InvalidSpec(f"Pipeline {pipeline_name!r} has a cycle: {' -> '.join(cycle)}. Steps must form a DAG.")
        state[n.name] = 1
        for up in n.upstream:
            visit(by_name[up], [*path, n.name])
        state[n.name] = 2
        ordered.append(n)

    for n in nodes:
        visit(n, [])
    for n in ordered:
        _check_types(n, by_name)
    return tuple(ordered)


_TABLE_TYPES = ("DataFrame", "Table", "LazyFrame", "DataVersion", "table")


def _type_name(annotation: Any) -> str | None:
    if annotation in (None, inspect.Parameter.empty, Any) or isinstance(annotation, typing.TypeVar):
        return None
    if isinstance(annotation, str):
        return annotation
    origin = typing.get_origin(annotation)
    if origin is not None:
        return None  # generics and unions: not checked
    return getattr(annotation, "__name__", None)


def _check_types(node: Node, known: Mapping[str, Node]) -> None:
    """Refuse an edge whose two ends declare types that cannot meet (tables meet tables, else the same type)."""
    hints = node.step.annotations()
    for arg, binding in node.args.items():
        if binding.kind != "output" or binding.value not in known:
            continue
        wanted = _type_name(hints.get(arg))
        produced = _type_name(known[binding.value].step.annotations().get("return"))
        if wanted is None or produced is None or wanted == produced:
            continue
        if wanted in _TABLE_TYPES and produced in _TABLE_TYPES:
            continue
        if {wanted, produced} <= {"int", "float"} or wanted == "object":
            continue
        raise InvalidSpec(
            f"Step {node.name!r} takes {arg!r} as {wanted}, but step {binding.value!r} returns {produced}. "
            "Change one of the annotations, or convert in between."
        )


def _json_ready(value: Any) -> bool:
    if isinstance(value, _JSON_SCALARS):
        return True
    if isinstance(value, list | tuple):
        return all(_json_ready(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _json_ready(v) for k, v in value.items())
    return False
