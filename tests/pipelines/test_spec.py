"""Pipelines declared in YAML: checked against the schema, errors that name the line and suggest the fix."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from conveyor.errors import InvalidSpec
from conveyor.pipelines._spec import parse_spec, pipeline_from_spec

GOOD = """
kind: pipeline
name: nums-report
description: Double the numbers and count the big ones
params:
  threshold: 4
steps:
  - name: doubled
    function: tests.pipelines.steps:double
    inputs:
      frame: data:nums@latest
  - name: big
    sql: SELECT * FROM frame WHERE x >= $threshold
    inputs:
      frame: step:doubled
  - name: how_many
    function: tests.pipelines.steps:count_rows
    inputs:
      frame: step:big
    retries: 1
"""


def test_a_yaml_pipeline_applies_and_runs(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    workspace.data.commit_table(pa.table({"x": [1, 2, 3]}), name="nums", source={})
    spec = tmp_path / "pipeline.yaml"
    spec.write_text(GOOD)
    info = workspace.pipelines.apply(spec)
    assert info.name == "nums-report" and info.kind == "yaml"
    run = workspace.pipelines.run("nums-report")
    assert run.status == "succeeded", run.error
    assert run.step("how_many").outputs["value"] == 2
    assert workspace.pipelines.run("nums-report", params={"threshold": 6}).step("how_many").outputs["value"] == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("    retries: 1", "    retrys: 1"), r"line 20: unknown key 'retrys' in steps.2.*Did you mean 'retries'"),
        (("name: nums-report\n", "nmae: nums-report\n"), r"line 3: unknown key 'nmae'.*Did you mean 'name'"),
        (("    retries: 1", "    retries: lots"), r"line 20: steps.2.retries: 'lots' is not of type 'integer'"),
        (("      frame: step:big", "      frame: step:bigg"), r"refers to step 'bigg'.*Did you mean 'big'"),
        (("$threshold", "$threshold\n    function: x:y"), "exactly one of 'function'"),
        (("  - name: big\n", "  - name: doubled\n"), "two steps are named 'doubled'"),
        (("steps:count_rows", "steps:nope"), "cannot import tests.pipelines.steps:nope"),
        (("      frame: step:doubled", "      frame: step:how_many"), "has a cycle: .*big -> how_many -> big"),
        (("steps:", "steps: [\n"), "not valid YAML"),
    ],
)
def test_mistakes_are_explained(change: tuple[str, str], message: str) -> None:
    text = GOOD.replace(*change)
    with pytest.raises(InvalidSpec, match=message):
        pipeline_from_spec(parse_spec(text, "pipeline.yaml"))


def test_unknown_param_reference() -> None:
    text = GOOD.replace("      frame: step:big", "      frame: param:treshold")
    with pytest.raises(InvalidSpec, match="parameter 'treshold'.*Did you mean 'threshold'"):
        pipeline_from_spec(parse_spec(text))


def test_the_schema_is_published() -> None:
    import json

    from conveyor.pipelines import PIPELINE_SCHEMA

    published = json.loads((Path(__file__).parents[2] / "docs" / "pipeline.schema.json").read_text())
    assert published == PIPELINE_SCHEMA, "regenerate docs/pipeline.schema.json (make docs)"
