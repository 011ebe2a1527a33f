"""Pipelines declared in YAML (``conveyor apply -f pipeline.yaml``), checked against a JSON Schema with
errors that name the file, the line and the key (and suggest the right key for a typo).

```yaml
kind: pipeline
name: churn-training
description: Prepare the churn data and train a model
params:
  min_tenure: 3
steps:
  - name: prepare
    sql: SELECT * FROM churn WHERE tenure_months >= $min_tenure
    inputs:
      churn: data:churn@latest          # a data version
  - name: train
    function: my_project.steps:train    # module:attribute of a function or @step
    inputs:
      frame: step:prepare               # another step's result
      seed: param:seed                  # a pipeline parameter
      target: churned                   # anything else is a literal value
    retries: 2
    timeout: 600
```

Specs sent over the REST API may name only functions of *trusted* modules (see :func:`check_trusted`): the
module path is checked before anything is imported, so ``os:system`` or ``builtins:eval`` never load.
"""

from __future__ import annotations

import importlib
import types
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from conveyor.errors import Forbidden, InvalidSpec, NotFound, did_you_mean
from conveyor.pipelines._definition import Binding, Node, Pipeline, Step, topological

__all__ = ["PIPELINE_SCHEMA", "check_trusted", "is_trusted", "load_spec", "parse_spec", "pipeline_from_spec"]

TRUST_HELP = (
    "An admin trusts a module by adding it to [pipelines] trusted_modules in the workspace's conveyor.toml "
    '(e.g. trusted_modules = ["my_project.steps"]) or to CONVEYOR_TRUSTED_MODULES (comma-separated), then '
    "restarting the server; a module's submodules are trusted with it. Specs applied on the machine itself "
    "(conveyor apply -f) are not restricted."
)

_STEP_OPTIONS = {
    "cache": {"type": "boolean"},
    "retries": {"type": "integer", "minimum": 0, "maximum": 100},
    "retry_backoff": {"type": "number", "minimum": 0},
    "timeout": {"type": "number", "exclusiveMinimum": 0},
    "continue_on_failure": {"type": "boolean"},
}
PIPELINE_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Conveyor pipeline",
    "type": "object",
    "required": ["name", "steps"],
    "additionalProperties": False,
    "properties": {
        "kind": {"const": "pipeline"},
        "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"},
        "description": {"type": "string"},
        "params": {"type": "object"},
        "steps": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["name"],
                "additionalProperties": False,
                "oneOf": [{"required": ["function"]}, {"required": ["sql"]}],
                "properties": {
                    "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"},
                    "function": {"type": "string", "pattern": r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$"},
                    "sql": {"type": "string", "minLength": 1},
                    "inputs": {"type": "object"},
                    **_STEP_OPTIONS,
                },
            },
        },
    },
}


def load_spec(path: Path) -> dict[str, Any]:
    """Read and check a pipeline YAML file.

    Raises:
        NotFound: the file does not exist.
        InvalidSpec: it is not valid YAML or breaks the schema (the message names the line and key).
    """
    if not path.is_file():
        raise NotFound(f"No such file: {str(path)!r}.", path=str(path))
    return parse_spec(path.read_text(encoding="utf-8"), str(path))


def parse_spec(text: str, source: str = "<spec>") -> dict[str, Any]:
    """Parse and check a pipeline spec (see the module docstring)."""
    import jsonschema
    import yaml

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        spec = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        raise InvalidSpec(f"{source}{where}: not valid YAML ({getattr(exc, 'problem', exc)}).") from exc
    if not isinstance(spec, dict):
        raise InvalidSpec(f"{source}: a pipeline spec is a mapping with 'name' and 'steps'.")
    validator = jsonschema.Draft202012Validator(PIPELINE_SCHEMA)
    # Shallowest first; at one place, a misspelt key (with its suggestion) before the "missing" it causes.
    errors = sorted(
        validator.iter_errors(spec),
        key=lambda e: (len(e.absolute_path), e.validator != "additionalProperties", list(map(str, e.absolute_path))),
    )
    if errors:
        raise InvalidSpec(_explain(errors[0], root, source))
    names = [s["name"] for s in spec["steps"]]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise InvalidSpec(f"{source}: two steps are named {duplicated[0]!r}; step names must be unique.")
    if spec["name"].lower().endswith((".yaml", ".yml")):
        # `conveyor pipeline run NAME` would read a file of that name instead of the registered pipeline
        raise InvalidSpec(
            f"{source}: the pipeline name {spec['name']!r} ends like a YAML file name; choose a name without "
            f"the extension, such as {spec['name'].rsplit('.', 1)[0]!r}."
        )
    return spec


def _explain(error: Any, root: Any, source: str) -> str:
    path = list(error.absolute_path)
    node = _node_at(root, path)
    line = f", line {node.start_mark.line + 1}" if node is not None else ""
    where = ".".join(str(p) for p in path) or "the top level"
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        key = extra[0] if extra else "?"
        key_node = _key_node(node, key)
        if key_node is not None:
            line = f", line {key_node.start_mark.line + 1}"
        suggestion = did_you_mean(key, allowed)
        return f"{source}{line}: unknown key {key!r} in {where}.{suggestion} Allowed: {', '.join(allowed)}."
    if error.validator == "required":
        return f"{source}{line}: {where} is missing {error.message.split(' is a required')[0]}."
    if error.validator == "oneOf":
        return f"{source}{line}: step at {where} needs exactly one of 'function' (module:attribute) or 'sql'."
    return f"{source}{line}: {where}: {error.message}."


def _node_at(root: Any, path: list[Any]) -> Any:
    node = root
    for part in path:
        if node is None:
            return None
        if isinstance(part, int):
            items = getattr(node, "value", [])
            node = items[part] if isinstance(items, list) and part < len(items) else None
        else:
            node = next((v for k, v in getattr(node, "value", []) if getattr(k, "value", None) == part), None)
    return node


def _key_node(node: Any, key: str) -> Any:
    for k, _ in getattr(node, "value", []) or []:
        if getattr(k, "value", None) == key:
            return k
    return None


def is_trusted(module: str, trusted: Collection[str]) -> bool:
    """Whether ``module`` is one of ``trusted`` or inside one of them (``a.b`` is trusted when ``a`` is)."""
    parts = module.split(".")
    return any(".".join(parts[:n]) in trusted for n in range(1, len(parts) + 1))


def check_trusted(spec: Mapping[str, Any], trusted: Mapping[str, str]) -> None:
    """Refuse a spec that names a function outside the trusted modules, by name alone (nothing is imported).

    Args:
        spec: a spec :func:`parse_spec` checked.
        trusted: trusted module → where it was trusted (shown in the refusal).

    Raises:
        Forbidden: a step's function is in a module that is not trusted, or its attribute path is private.
    """
    for item in spec.get("steps") or []:
        reference = item.get("function")
        if not isinstance(reference, str):
            continue
        module, _, attribute = reference.partition(":")
        if not is_trusted(module, trusted):
            raise Forbidden(
                f"Step {item.get('name')!r} names the function {reference}, but module {module!r} is not trusted: "
                f"pipelines sent over the API may only use functions of trusted modules ({_listing(trusted)}). "
                + TRUST_HELP,
                function=reference,
                module=module,
                setting="pipelines.trusted_modules",
            )
        if any(part.startswith("__") for part in attribute.split(".")):
            raise Forbidden(
                f"Step {item.get('name')!r} names the function {reference}, which goes through a special "
                "attribute (a name starting with '__'); name a function of the module itself.",
                function=reference,
            )


def _listing(trusted: Mapping[str, str]) -> str:
    if not trusted:
        return "none are, so far"
    return "trusted: " + ", ".join(f"{name} ({origin})" for name, origin in sorted(trusted.items()))


def pipeline_from_spec(spec: dict[str, Any], trusted: Mapping[str, str] | None = None) -> Pipeline:
    """Build the pipeline a checked spec describes (functions are imported now).

    Args:
        spec: a spec :func:`parse_spec` checked.
        trusted: when given, the only modules (→ where they were trusted) whose functions steps may name; they
            are checked before any import, and the function found must be defined in a trusted module too
            (a trusted module's ``from os import system`` does not make ``os.system`` trusted). ``None``
            trusts every importable function (a spec the user on this machine applied).

    Raises:
        Forbidden: with ``trusted``, a step names a function outside the trusted modules.
        InvalidSpec: a function cannot be imported, an input names an unknown step or parameter, or the steps
            form a cycle.
    """
    if trusted is not None:
        check_trusted(spec, trusted)
    params = dict(spec.get("params") or {})
    nodes: list[Node] = []
    step_names = [s["name"] for s in spec["steps"]]
    for item in spec["steps"]:
        options = {k: item[k] for k in _STEP_OPTIONS if k in item}
        inputs = dict(item.get("inputs") or {})
        if "sql" in item:
            made = Step(name=item["name"], func=None, sql=item["sql"], sql_inputs=tuple(inputs), **options)
        else:
            made = _import_step(item["name"], item["function"], options, trusted)
        args = {
            key: _binding(spec["name"], item["name"], key, value, step_names, params) for key, value in inputs.items()
        }
        if made.func is not None:
            unknown = [a for a in args if a not in made.parameters]
            if unknown:
                raise InvalidSpec(
                    f"Step {item['name']!r}: {item['function']} has no argument {unknown[0]!r}."
                    f"{did_you_mean(unknown[0], made.parameters)} Its arguments: {', '.join(made.parameters)}."
                )
            missing = [r for r in made.required() if r not in args]
            if missing:
                raise InvalidSpec(f"Step {item['name']!r} needs input {missing[0]!r}; add it under 'inputs'.")
        nodes.append(Node(item["name"], made, args))
    ordered = topological(nodes, spec["name"])
    return Pipeline(spec["name"], ordered, params, spec.get("description", ""))


def _import_step(name: str, reference: str, options: dict[str, Any], trusted: Mapping[str, str] | None) -> Step:
    module_name, _, attribute = reference.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
            if trusted is not None and isinstance(target, types.ModuleType):
                _refuse_outside(name, reference, target.__name__, trusted)
    except (ImportError, AttributeError) as exc:
        raise InvalidSpec(
            f"Step {name!r}: cannot import {reference} ({exc}). Check the module is importable where the pipeline "
            "runs (installed, or on PYTHONPATH)."
        ) from exc
    if trusted is not None:
        func = target.func if isinstance(target, Step) else target
        _refuse_outside(name, reference, getattr(func, "__module__", None) or "<unknown>", trusted)
    if isinstance(target, Step):
        settings = {
            "cache": target.cache,
            "retries": target.retries,
            "retry_backoff": target.retry_backoff,
            "timeout": target.timeout,
            "continue_on_failure": target.continue_on_failure,
            **options,
        }
        return Step(name=name, func=target.func, **settings)
    if not callable(target):
        raise InvalidSpec(f"Step {name!r}: {reference} is not a function.")
    return Step(name=name, func=target, **options)


def _refuse_outside(step: str, reference: str, module: str, trusted: Mapping[str, str]) -> None:
    """Refuse what a trusted module only re-exports (``my_project.steps:os.system``, ``from os import system``)."""
    if not is_trusted(module, trusted):
        raise Forbidden(
            f"Step {step!r} names the function {reference}, which is defined in module {module!r}, not in a trusted "
            f"module ({_listing(trusted)}). Name a function your trusted module defines itself. " + TRUST_HELP,
            function=reference,
            module=module,
            setting="pipelines.trusted_modules",
        )


def _binding(pipeline: str, step: str, key: str, value: Any, steps: list[str], params: dict[str, Any]) -> Binding:
    if isinstance(value, str):
        prefix, _, rest = value.partition(":")
        if prefix == "step" and rest:
            if rest not in steps:
                raise InvalidSpec(
                    f"Step {step!r} input {key!r} refers to step {rest!r}, which pipeline {pipeline!r} does not have."
                    f"{did_you_mean(rest, steps)}"
                )
            return Binding("output", rest)
        if prefix == "param" and rest:
            if rest not in params:
                raise InvalidSpec(
                    f"Step {step!r} input {key!r} refers to parameter {rest!r}, which is not under 'params'."
                    f"{did_you_mean(rest, params)}"
                )
            return Binding("param", rest)
        if prefix == "data" and rest:
            from conveyor.refs import parse_ref

            parse_ref(rest, "data asset")
            return Binding("data", rest)
    return Binding("value", value)
