"""The shape of the code: small public APIs, and data flowing faces → services → store only."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import conveyor

SRC = Path(conveyor.__file__).parent
SERVICES = ["data", "tracking", "registry", "train", "serve", "governance", "quickstart", "pipelines", "monitor"]
FACES = ("fastapi", "typer", "conveyor.cli", "conveyor.api", "conveyor.studio", "jinja2", "rich", "click")


def test_top_level_api() -> None:
    assert conveyor.__all__ == ["ConveyorError", "Workspace", "__version__"]


@pytest.mark.parametrize(
    ("module", "names"),
    [
        (
            "conveyor.data",
            [
                "FORMATS",
                "Checkpoint",
                "DataAsset",
                "DataAssets",
                "DataVersion",
                "Datastore",
                "Datastores",
                "IngestResult",
                "RuleOutcome",
                "Rules",
                "StreamIngester",
                "StreamMessage",
                "StreamSource",
                "StreamStats",
                "apply_rules",
                "compute_profile",
                "diff_profiles",
                "diff_versions",
                "load_rules",
                "parse_rules",
                "privileged_datastore_reason",
                "profile_of",
                "render_profile_html",
            ],
        ),
        (
            "conveyor.tracking",
            ["ActiveRun", "Artifact", "Comparison", "Experiment", "Metric", "Run", "RunPage", "Tracking"],
        ),
        (
            "conveyor.registry",
            [
                "ExportedModel",
                "LoggedModel",
                "ModelCorrupted",
                "ModelVersion",
                "NotConvertible",
                "OnnxModel",
                "RegisteredModel",
                "Registry",
                "infer_signature",
            ],
        ),
        (
            "conveyor.train",
            [
                "LEARNERS",
                "METRICS",
                "AutoMLModel",
                "AutoMLResult",
                "DateFeatures",
                "Guardrail",
                "SweepResult",
                "SweepSpec",
                "SweepTrial",
                "TextColumn",
                "Training",
                "TrainingResult",
                "TrialRecord",
                "automl",
                "build_featurizer",
                "infer_column_kinds",
                "load_sweep",
                "report",
                "run_sweep",
                "train_tabular",
            ],
        ),
        (
            "conveyor.serve",
            [
                "BatchResult",
                "BatchScoring",
                "DeployTarget",
                "Deployment",
                "Endpoint",
                "EndpointSpec",
                "Endpoints",
                "ExportedEndpoint",
                "ScoringFailed",
            ],
        ),
        (
            "conveyor.governance",
            [
                "PERMISSIONS",
                "ROLES",
                "AuditEvent",
                "AuditLog",
                "Cards",
                "Edge",
                "Identities",
                "IssuedToken",
                "Lineage",
                "LineageEdge",
                "LineageGraph",
                "LineageNode",
                "LineageRef",
                "ModelCard",
                "Principal",
                "SecretInfo",
                "Secrets",
                "Token",
                "User",
                "Verification",
                "acting_as",
                "add_edge",
                "current_principal",
                "local_principal",
                "parse_duration",
                "parse_lineage_ref",
                "role_allows",
                "run_inputs",
            ],
        ),
        ("conveyor.store", ["ArtifactStore", "Blob", "MetadataStore", "mask_url"]),
        (
            "conveyor.quickstart",
            ["TARGET", "QuickstartResult", "Stage", "churn_pipeline", "make_churn_frame", "run_quickstart"],
        ),
        (
            "conveyor.pipelines",
            [
                "PIPELINE_SCHEMA",
                "DataRef",
                "Executor",
                "Fired",
                "LocalExecutor",
                "Node",
                "Param",
                "Pipeline",
                "PipelineInfo",
                "PipelineRun",
                "Pipelines",
                "Schedule",
                "Scheduler",
                "Step",
                "StepContext",
                "StepRun",
                "current_step",
                "data",
                "make_executor",
                "pipeline",
                "sql_step",
                "step",
            ],
        ),
        (
            "conveyor.monitor",
            [
                "DEFAULT_THRESHOLDS",
                "PERFORMANCE_METRICS",
                "SIGNALS",
                "Alert",
                "CategoricalSketch",
                "Column",
                "ColumnDrift",
                "DriftMetric",
                "DriftReport",
                "Monitor",
                "MonitorResult",
                "MonitorScheduler",
                "Monitors",
                "NumericSketch",
                "Profile",
                "Score",
                "Table",
                "build_profile",
                "compute_drift",
                "default_metric",
                "drift_metrics",
                "get_metric",
                "parse_window",
            ],
        ),
        ("conveyor.api", ["API_PREFIX", "create_app"]),
        ("conveyor.cli", ["app", "main"]),
        ("conveyor.studio", ["add_studio"]),
    ],
)
def test_public_names(module: str, names: list[str]) -> None:
    imported = importlib.import_module(module)
    assert sorted(imported.__all__) == sorted(names)
    for name in names:
        assert hasattr(imported, name)


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("package", [*SERVICES, "store"])
def test_services_never_import_a_face(package: str) -> None:
    for path in (SRC / package).rglob("*.py"):
        bad = {m for m in _imports(path) if m.startswith(FACES)}
        assert not bad, f"{path.relative_to(SRC)} imports {sorted(bad)}; services must not know their faces"


def test_the_store_imports_no_service() -> None:
    services = tuple(f"conveyor.{s}" for s in SERVICES)
    for path in (SRC / "store").rglob("*.py"):
        bad = {m for m in _imports(path) if m.startswith(services)}
        assert not bad, f"{path.relative_to(SRC)} imports {sorted(bad)}"
