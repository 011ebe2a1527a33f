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
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from conveyor.errors import InvalidSpec, NotFound, did_you_mean
from conveyor.pipelines._definition import Binding, Node, Pipeline, Step, topological

__all__ = ["PIPELINE_SCHEMA", "load_spec", "parse_spec", "pipeline_from_spec"]

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


def pipeline_from_spec(spec: dict[str, Any]) -> Pipeline:
    """Build the pipeline a checked spec describes (functions are imported now).

    Raises:
        InvalidSpec: a function cannot be imported, an input names an unknown step or parameter, or the steps
            form a cycle.
    """
    params = dict(spec.get("params") or {})
    nodes: list[Node] = []
    step_names = [s["name"] for s in spec["steps"]]
    for item in spec["steps"]:
        options = {k: item[k] for k in _STEP_OPTIONS if k in item}
        inputs = dict(item.get("inputs") or {})
        if "sql" in item:
            made = Step(name=item["name"], func=None, sql=item["sql"], sql_inputs=tuple(inputs), **options)
        else:
            made = _import_step(item["name"], item["function"], options)
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


def _import_step(name: str, reference: str, options: dict[str, Any]) -> Step:
    module_name, _, attribute = reference.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise InvalidSpec(
            f"Step {name!r}: cannot import {reference} ({exc}). Check the module is importable where the pipeline "
            "runs (installed, or on PYTHONPATH)."
        ) from exc
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
