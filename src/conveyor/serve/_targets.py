"""Deploy targets: an endpoint rendered as files that run it elsewhere (a Docker image, Kubernetes manifests).

A target is a plug-in kind with one small contract, :class:`DeployTarget`: ``render(spec, blob, out)`` writes
the files into an empty folder and returns them. Targets register under the entry-point group
``conveyor.deploy_targets``, so other packages can add their own; :func:`deploy_target` finds one by name.

Every target starts from the same bundle: ``bundle/endpoint.json`` (the :class:`EndpointSpec` without its key
digests: a container takes its keys from ``CONVEYOR_ENDPOINT_KEYS`` at run time) and ``bundle/blobs/<sha256>``
for each model file, which the serving process verifies again when it loads them. The Docker target adds a
Dockerfile, ``requirements.txt`` pinned to the versions this environment runs (Conveyor's own dependencies
included, so an image built next year resolves the same packages) and Conveyor itself as a wheel when it is
installed from source. The Kubernetes target adds ``k8s/`` manifests that run that image.

:func:`export_endpoint` is the workspace-facing step: it checks the destination, renders into a staging folder
beside it and renames it into place, so a failed export leaves nothing behind.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import orjson
import yaml
from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from conveyor._version import __version__
from conveyor.errors import Conflict, ConveyorError, InvalidSpec, NotFound, did_you_mean
from conveyor.registry import ModelCorrupted
from conveyor.serve._spec import BUNDLE_SPEC, KEYS_ENV, BlobSource, EndpointSpec

if TYPE_CHECKING:
    from conveyor.workspace import Workspace

__all__ = [
    "DeployTarget",
    "DockerTarget",
    "ExportedEndpoint",
    "KubernetesTarget",
    "deploy_target",
    "deploy_targets",
    "export_endpoint",
    "k8s_name",
    "pinned_requirements",
    "write_export",
]

#: The entry-point group deploy targets register under.
ENTRY_POINT_GROUP = "conveyor.deploy_targets"
#: Where the image keeps the bundle and the wheels (the Dockerfile's WORKDIR).
IMAGE_ROOT = "/opt/conveyor"
#: The port the container serves on.
PORT = 8080
_DISTRIBUTION = "conveyor-ml"
# The model registry pins ``xgboost`` at the version of whichever build provides the import; Conveyor installs
# the CPU build, and installing both would pull 470 MB of CUDA libraries into the image for nothing.
_PROVIDED_BY = {"xgboost": "xgboost-cpu"}
#: Conveyor's own dependencies that loading and serving a model needs: the image installs these (with what they
#: need, all pinned) and Conveyor without its other dependencies (training, the lake, the control plane, the
#: studio). The model's own requirements (xgboost for an XGBoost model, ...) are added per export.
#: tests/serve/test_export.py serves exported models with every other package made unimportable.
SERVE_DEPENDENCIES = frozenset(
    {
        "numpy", "pandas", "scikit-learn", "joblib", "skops", "pyarrow",  # models and their inputs
        "orjson", "uvicorn", "httptools", "uvloop", "prometheus-client",  # the HTTP server and its metrics
    }
)  # fmt: skip
# Kubernetes names are DNS-1123 labels; the longest suffix added to the base name is "-config".
_DNS_LABEL_MAX = 63
_LONGEST_SUFFIX = len("-config")
_PREFIX = "conveyor-endpoint-"


@runtime_checkable
class DeployTarget(Protocol):
    """A way to run an endpoint elsewhere: renders files from an :class:`EndpointSpec`.

    ``render`` writes into ``out`` (an existing empty folder) and returns the paths it wrote. ``blob`` gives
    the verified bytes of a model file by digest; ``requirements`` are the pinned requirement lines of the
    deployed model versions (``ModelVersion.requirements``).
    """

    @property
    def name(self) -> str:
        """What users call the target: ``conveyor export NAME``."""

    def render(
        self, spec: EndpointSpec, blob: BlobSource, out: Path, *, requirements: Sequence[str] = ()
    ) -> list[Path]: ...


@dataclass(frozen=True)
class ExportedEndpoint:
    """An endpoint written to a folder by a deploy target; ``packages_mb``: what the image's packages take
    installed (measured on this machine's copies), beside the base image."""

    target: str
    endpoint: str
    revision: int
    path: str
    image: str
    files: list[str]
    packages: int = 0
    packages_mb: float = 0.0


# -- the Docker target ----------------------------------------------------------------------------------


class DockerTarget:
    """A Docker build context: Dockerfile, pinned ``requirements.txt``, the bundle and Conveyor's wheel."""

    name: ClassVar[str] = "docker"

    def __init__(self, *, image: str | None = None) -> None:
        self.image = image

    def render(
        self, spec: EndpointSpec, blob: BlobSource, out: Path, *, requirements: Sequence[str] = ()
    ) -> list[Path]:
        """Write the build context into ``out``.

        Raises:
            Conflict: the endpoint cannot run in a container (no deployments, or no authentication), or its
                deployments pin different versions of one package.
            ModelCorrupted: a model file's bytes do not match its digest.
            ConveyorError: Conveyor's wheel could not be built from its source.
        """
        _check_exportable(spec)
        image = self.image or default_image(spec)
        written = write_bundle(spec, blob, out / "bundle")
        wheel = _conveyor_wheel(out / "wheels")
        if wheel is not None:
            written.append(wheel)
        any_onnx = any(d.onnx is not None for d in spec.deployments)
        lines = pinned_requirements(requirements, onnx=any_onnx, wheel=wheel)
        header = f"# Endpoint {spec.name} revision {spec.revision}: pinned by `conveyor export` ({__version__}).\n"
        written.append(_write(out / "requirements.txt", header + "\n".join(lines) + "\n"))
        copy_wheels = "COPY wheels/ ./wheels/\n" if wheel is not None else ""
        dockerfile = _template("Dockerfile.tmpl").substitute(
            endpoint=spec.name,
            revision=spec.revision,
            image=image,
            python=f"{sys.version_info.major}.{sys.version_info.minor}",
            copy_wheels=copy_wheels,
        )
        written.append(_write(out / "Dockerfile", dockerfile))
        written.append(_write(out / ".dockerignore", _template("dockerignore.tmpl").template))
        written.append(_write(out / "README.md", _readme(spec, self.name, image, kubernetes="")))
        return written


# -- the Kubernetes target ------------------------------------------------------------------------------


class KubernetesTarget:
    """The Docker build context plus ``k8s/``: ConfigMap, Deployment, Service, autoscaler and disruption budget.

    The key Secret is not generated (real keys would sit in a file beside the manifests, and placeholder keys
    would go live with ``kubectl apply -f k8s/``); the README gives the ``kubectl create secret`` command, and
    the pods wait for the Secret before starting.
    """

    name: ClassVar[str] = "k8s"

    def __init__(
        self, *, image: str | None = None, replicas: int = 2, max_replicas: int = 10, cpu_target: int = 70
    ) -> None:
        self.image = image
        self.replicas = replicas
        self.max_replicas = max_replicas
        self.cpu_target = cpu_target

    def render(
        self, spec: EndpointSpec, blob: BlobSource, out: Path, *, requirements: Sequence[str] = ()
    ) -> list[Path]:
        """Write the build context and the manifests into ``out``.

        Raises:
            InvalidSpec: a replica count or the CPU target is out of range.
            Conflict: the endpoint cannot run in a container (see :meth:`DockerTarget.render`).
            ModelCorrupted: a model file's bytes do not match its digest.
            ConveyorError: Conveyor's wheel could not be built from its source.
        """
        if not 1 <= self.replicas <= self.max_replicas <= 1000:
            raise InvalidSpec(
                f"Replicas must satisfy 1 <= replicas <= max replicas <= 1000; got {self.replicas} and "
                f"{self.max_replicas}. Pass --replicas and --max-replicas accordingly."
            )
        if not 1 <= self.cpu_target <= 100:
            raise InvalidSpec(f"The CPU utilisation target must be 1-100 (%); got {self.cpu_target}.")
        image = self.image or default_image(spec)
        written = DockerTarget(image=image).render(spec, blob, out, requirements=requirements)
        manifests = self.manifests(spec, image, model_bytes=_bundle_bytes(out / "bundle"))
        k8s = out / "k8s"
        for filename, (comment, document) in manifests.items():
            body = yaml.dump(document, Dumper=_PlainDumper, sort_keys=False)
            text = "".join(f"# {line}\n" for line in comment.splitlines()) + body
            written.append(_write(k8s / filename, text))
        names = _names(spec.name)
        kubernetes = _template("README.k8s.md.tmpl").substitute(
            app=names["app"],
            config=names["config"],
            secret=names["secret"],
            image=image,
            cpu_target=self.cpu_target,
            min_replicas=self.replicas,
            max_replicas=self.max_replicas,
        )
        _write(out / "README.md", _readme(spec, self.name, image, kubernetes=kubernetes))
        return written

    def manifests(self, spec: EndpointSpec, image: str, *, model_bytes: int) -> dict[str, tuple[str, Any]]:
        """The manifests by file name, each with a header comment: plain dicts, dumped as YAML by ``render``."""
        names = _names(spec.name)
        workers = spec.workers if spec.workers > 0 else 2
        labels = {
            "app.kubernetes.io/name": "conveyor-endpoint",
            "app.kubernetes.io/instance": names["app"],
            "app.kubernetes.io/component": "endpoint",
            "app.kubernetes.io/part-of": "conveyor",
            "app.kubernetes.io/managed-by": "conveyor",
        }
        # The selector is immutable once applied: it names the endpoint, never the revision.
        selector = {k: labels[k] for k in ("app.kubernetes.io/name", "app.kubernetes.io/instance")}
        versioned = labels | {"app.kubernetes.io/version": str(spec.revision)}

        def meta(name: str) -> dict[str, Any]:
            return {"name": name, "labels": versioned, "annotations": {"conveyor.dev/endpoint": spec.name}}

        # Each worker holds its own copy of the models; a loaded model takes a few times its file's size.
        per_worker_mi = 192 + math.ceil(3 * model_bytes / 2**20)
        memory_mi = _round_up(256 + workers * per_worker_mi, 64)
        probe = {"httpGet": {"path": "/v2/health/ready", "port": "http"}, "timeoutSeconds": 3}
        container = {
            "name": "endpoint",
            "image": image,
            "imagePullPolicy": "IfNotPresent",
            "args": ["--host", "0.0.0.0", "--port", str(PORT)],  # noqa: S104 - a container serves its pod IP
            "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
            "envFrom": [{"configMapRef": {"name": names["config"]}}],
            "env": [
                {
                    "name": KEYS_ENV,
                    "valueFrom": {"secretKeyRef": {"name": names["secret"], "key": "keys", "optional": False}},
                }
            ],
            "resources": {
                "requests": {"cpu": f"{workers * 500}m", "memory": f"{memory_mi}Mi"},
                "limits": {"cpu": str(workers), "memory": f"{memory_mi * 2}Mi"},
            },
            # Models load before readiness: up to five minutes, during which liveness is not checked.
            "startupProbe": probe | {"periodSeconds": 5, "failureThreshold": 60},
            "livenessProbe": {
                "httpGet": {"path": "/v2/health/live", "port": "http"},
                "periodSeconds": 10,
                "timeoutSeconds": 3,
                "failureThreshold": 3,
            },
            "readinessProbe": probe | {"periodSeconds": 5, "failureThreshold": 2},
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "runAsNonRoot": True,
                "capabilities": {"drop": ["ALL"]},
            },
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108 - an emptyDir, not the host's
        }
        deployment = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta(names["app"]),
            "spec": {
                # No "replicas": the autoscaler owns it, and `kubectl apply` would otherwise reset a scale-out.
                "revisionHistoryLimit": 5,
                "selector": {"matchLabels": selector},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                "template": {
                    # No prometheus.io/scrape annotations: /metrics needs a key, which annotation-driven scraping
                    # cannot send; the README shows a scrape job with the key.
                    "metadata": {"labels": versioned},
                    "spec": {
                        "automountServiceAccountToken": False,
                        "terminationGracePeriodSeconds": 30,
                        "securityContext": {
                            "runAsNonRoot": True,
                            "runAsUser": 10001,
                            "runAsGroup": 10001,
                            "fsGroup": 10001,
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "containers": [container],
                        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}],
                    },
                },
            },
        }
        service = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta(names["app"]),
            "spec": {
                "type": "ClusterIP",
                "selector": selector,
                "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
            },
        }
        autoscaler = {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": meta(names["app"]),
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": names["app"]},
                "minReplicas": self.replicas,
                "maxReplicas": self.max_replicas,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": self.cpu_target},
                        },
                    }
                ],
            },
        }
        budget = {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": meta(names["app"]),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector}},
        }
        config = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": meta(names["config"]),
            "data": {"CONVEYOR_WORKERS": str(workers)},
        }
        head = f"Conveyor endpoint {spec.name!r}, revision {spec.revision}: generated by `conveyor export k8s`."
        secret_note = (
            f"Needs the Secret {names['secret']} (key 'keys' = PRIMARY,SECONDARY), created by hand:\n"
            f'  kubectl create secret generic {names["secret"]} --from-literal=keys="$PRIMARY,$SECONDARY"\n'
            f"Build and push the image, then set it below: {image}"
        )
        return {
            "configmap.yaml": (f"{head}\nCONVEYOR_WORKERS: keep it equal to the CPU limit in deployment.yaml.", config),
            "deployment.yaml": (f"{head}\n{secret_note}", deployment),
            "service.yaml": (head, service),
            "hpa.yaml": (head, autoscaler),
            "pdb.yaml": (head, budget),
        }


class _PlainDumper(yaml.SafeDumper):
    """Writes shared values out in full: anchors and aliases (``&id001``) are valid YAML but puzzle readers."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


# -- finding targets ------------------------------------------------------------------------------------

_BUILT_IN: dict[str, type[DockerTarget] | type[KubernetesTarget]] = {
    DockerTarget.name: DockerTarget,
    KubernetesTarget.name: KubernetesTarget,
}


def deploy_targets() -> dict[str, Any]:
    """The deploy target classes by name: the built-in ones and those other packages register under the
    ``conveyor.deploy_targets`` entry-point group."""
    found: dict[str, Any] = dict(_BUILT_IN)
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry.name not in found:
            found[entry.name] = entry
    return found


def deploy_target(name: str, **options: Any) -> DeployTarget:
    """A deploy target by name, made with ``options``.

    Raises:
        NotFound: no target has that name.
        InvalidSpec: the entry point does not give a :class:`DeployTarget`.
    """
    known = deploy_targets()
    if name not in known:
        raise NotFound(
            f"Unknown deploy target {name!r}; known targets: {', '.join(sorted(known))}.{did_you_mean(name, known)}",
            target=name,
        )
    factory = known[name]
    if isinstance(factory, metadata.EntryPoint):
        factory = factory.load()
    target = factory(**options)
    if not isinstance(target, DeployTarget):
        raise InvalidSpec(f"The deploy target {name!r} ({factory!r}) lacks name and render(spec, blob, out).")
    return target


# -- exporting ------------------------------------------------------------------------------------------


def export_endpoint(ws: Workspace, name: str, target: DeployTarget, path: Path, *, force: bool) -> ExportedEndpoint:
    """Render the endpoint ``name`` of the workspace with ``target`` into the folder ``path``.

    Raises:
        NotFound: no endpoint has that name.
        Conflict: ``path`` is a file, or is not empty and ``force`` is not given, or the endpoint cannot run
            in a container.
        ModelCorrupted: a stored model file no longer matches its digest.
    """
    from conveyor.registry._export import _check_destination

    spec = ws.endpoints.spec(name)
    destination = _check_destination(path, force, ws.models)
    _check_exportable(spec)
    requirements = [line for d in spec.deployments for line in ws.models.get_by_id(d.model_version_id).requirements]
    return write_export(target, spec, ws.endpoints.blob, destination, requirements=requirements)


def write_export(
    target: DeployTarget,
    spec: EndpointSpec,
    blob: BlobSource,
    destination: Path,
    *,
    requirements: Sequence[str] = (),
) -> ExportedEndpoint:
    """Render into a staging folder beside ``destination``, then rename it into place (replacing what is there).

    The caller has checked ``destination`` (``registry._export._check_destination``).

    Raises:
        Conflict, ModelCorrupted, ConveyorError: as the target's ``render``.
    """
    from conveyor.registry._export import _replace

    destination = destination.absolute()
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=destination.parent, prefix=f".{destination.name}.export-"))
    try:
        target.render(spec, blob, staging, requirements=requirements)
        files = sorted(str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file())
        # mkdtemp makes the folder private to its owner; an exported folder is meant to be shared and built.
        staging.chmod(0o755)
        _replace(staging, destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    image = getattr(target, "image", None) or default_image(spec)
    count, size = installed_size(destination / "requirements.txt")
    return ExportedEndpoint(
        target=target.name,
        endpoint=spec.name,
        revision=spec.revision,
        path=str(destination),
        image=image,
        files=files,
        packages=count,
        packages_mb=round(size / 1e6, 1),
    )


def installed_size(requirements: Path) -> tuple[int, int]:
    """How many packages a ``requirements.txt`` names and the bytes their installed files take here (0, 0 when
    there is no such file; a package not installed here counts as nothing)."""
    if not requirements.is_file():
        return 0, 0
    count = total = 0
    for raw in requirements.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        count += 1
        name = re.split(r"[=<>!~;@ \[]", line, maxsplit=1)[0]
        try:
            files = metadata.distribution(name).files or []
        except metadata.PackageNotFoundError:
            continue
        total += sum(f.size or 0 for f in files)
    return count, total


# -- the bundle -----------------------------------------------------------------------------------------


def write_bundle(spec: EndpointSpec, blob: BlobSource, folder: Path) -> list[Path]:
    """Write ``endpoint.json`` (without key digests) and ``blobs/<sha256 hex>`` for every model file.

    Raises:
        ModelCorrupted: ``blob`` returned bytes that do not match the digest asked for.
    """
    written = [_write(folder / BUNDLE_SPEC, dataclasses.replace(spec, key_digests=[]).to_json() + b"\n")]
    wanted: dict[str, str] = {}
    for d in spec.deployments:
        wanted.setdefault(d.digest, f"the model file of {d.model} (deployment {d.name})")
        if d.onnx is not None:
            wanted.setdefault(d.onnx.digest, f"the ONNX file of {d.model} (deployment {d.name})")
    for digest, what in wanted.items():
        data = blob(digest, what)
        hex_digest = digest.removeprefix("sha256:")
        # Checked here too: an image must never carry bytes its spec does not vouch for.
        if hashlib.sha256(data).hexdigest() != hex_digest:
            raise ModelCorrupted(f"{what} does not match its SHA-256 {digest}; restore it before exporting.")
        # Named by the bare hex digest: a ':' in a file name breaks Docker build contexts on Windows.
        written.append(_write(folder / "blobs" / hex_digest, data))
    return written


def pinned_requirements(model_requirements: Iterable[str], *, onnx: bool, wheel: Path | None) -> list[str]:
    """Every package the image installs, pinned: the models' own pins, and for everything else the version
    installed here (Conveyor's serving dependencies, :data:`SERVE_DEPENDENCIES`, and theirs; the models'
    requirements and theirs; ONNX Runtime when a deployment serves ONNX). The image installs exactly these
    (``pip install --no-deps``): Conveyor's training, lake and control-plane dependencies stay out.

    Conveyor itself comes first: from the wheel in the image when there is one, else from the package index.

    Raises:
        Conflict: two deployments pin different versions of one package (one image holds one version).
    """
    model_requirements = list(model_requirements)
    pins: dict[str, tuple[str, str]] = {}  # canonical name -> (model's pin, the line that pinned it)
    for line in model_requirements:
        requirement = _requirement(line)
        key: str = canonicalize_name(requirement.name)
        if key == _DISTRIBUTION:
            continue
        pinned = next((s.version for s in requirement.specifier if s.operator == "=="), None)
        if pinned is None:
            continue
        if key in pins and pins[key][0] != pinned:
            raise Conflict(
                f"The deployments need different versions of {requirement.name}: {pins[key][1]} and {line}. "
                "One image holds one version; deploy model versions trained with the same packages, or export "
                "the endpoint's deployments separately.",
                package=requirement.name,
            )
        pins[key] = (pinned, line)
    declared = [Requirement(line) for line in (metadata.requires(_DISTRIBUTION) or [])]
    roots = [r for r in declared if r.marker is None or "extra" not in str(r.marker)]
    roots = [r for r in roots if canonicalize_name(r.name) in SERVE_DEPENDENCIES]
    # A model's own pin of Conveyor is the wheel in the image, not a way back to all of Conveyor's dependencies.
    roots += [r for r in map(_requirement, model_requirements) if canonicalize_name(r.name) != _DISTRIBUTION]
    if onnx:
        roots.append(Requirement("onnxruntime"))
    closure = _closure(roots)
    lines = []
    for key, (name, requirement) in sorted(closure.items()):
        if key == _DISTRIBUTION or (key in _PROVIDED_BY and _PROVIDED_BY[key] in closure):
            continue
        if key in pins:
            lines.append(f"{name}=={pins[key][0]}")
        elif (installed := _installed_version(name)) is not None:
            lines.append(f"{name}=={installed}")
        else:
            # Needed on Linux but not installed here (an export made on another system): the range is all we know.
            lines.append(str(requirement))
    own = (
        f"{_DISTRIBUTION} @ file://{IMAGE_ROOT}/wheels/{wheel.name}"
        if wheel is not None
        else f"{_DISTRIBUTION}=={__version__}"
    )
    return [own, *lines]


def _closure(roots: Iterable[Requirement]) -> dict[str, tuple[str, Requirement]]:
    """The requirements reachable from ``roots`` through installed metadata, with markers evaluated for the
    image (Linux, this Python) rather than for the machine that exports."""
    environment: dict[str, str] = {k: str(v) for k, v in default_environment().items()}
    environment |= {"sys_platform": "linux", "platform_system": "Linux", "os_name": "posix"}
    found: dict[str, tuple[str, Requirement]] = {}
    extras_seen: dict[str, set[str]] = {}
    queue = [(r, "") for r in roots]
    while queue:
        requirement, parent_extra = queue.pop()
        if requirement.marker is not None and not requirement.marker.evaluate(environment | {"extra": parent_extra}):
            continue
        key = canonicalize_name(requirement.name)
        new_extras = {"", *requirement.extras} - extras_seen.get(key, set())
        if not new_extras:
            continue
        extras_seen.setdefault(key, set()).update(new_extras)
        found.setdefault(key, (requirement.name, requirement))
        try:
            children = metadata.requires(requirement.name) or []
        except metadata.PackageNotFoundError:
            continue
        for child in children:
            parsed = Requirement(child)
            queue.extend((parsed, extra) for extra in sorted(new_extras))
    return found


def _requirement(line: str) -> Requirement:
    try:
        return Requirement(line)
    except InvalidRequirement as exc:
        raise InvalidSpec(f"A model version's requirement {line!r} does not parse: {exc}.") from exc


def _installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


# -- Conveyor's own wheel -------------------------------------------------------------------------------


def conveyor_source() -> Path | None:
    """The project folder Conveyor runs from (an editable or source install), or None for an installed wheel."""
    import conveyor

    for folder in Path(conveyor.__file__).resolve().parents:
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file():
            try:
                name = tomllib.loads(pyproject.read_text()).get("project", {}).get("name")
            except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError):
                return None
            return folder if name == _DISTRIBUTION else None
    return None


def _conveyor_wheel(folder: Path) -> Path | None:
    """Build Conveyor's wheel from its source into ``folder``; None when Conveyor is installed from a wheel
    (the image then installs the same version from the package index).

    Raises:
        ConveyorError: pip could not build the wheel.
    """
    source = conveyor_source()
    if source is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(folder), str(source)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ConveyorError(f"Building Conveyor's wheel from {source} took over 10 minutes; try again.") from exc
    wheels = sorted(folder.glob("conveyor_ml-*.whl"))
    if done.returncode != 0 or len(wheels) != 1:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
        raise ConveyorError(
            f"Could not build Conveyor's wheel from {source} (`pip wheel` exited {done.returncode}): {tail}\n"
            "pip needs the build backend (hatchling) from the package index, or installed here with --no-build-"
            "isolation. Alternatively install Conveyor from a wheel; the image then takes it from the index.",
            source=str(source),
        )
    return wheels[0]


# -- helpers --------------------------------------------------------------------------------------------


def _check_exportable(spec: EndpointSpec) -> None:
    """Raises:
    Conflict: the endpoint has no deployment, or no authentication.
    """
    if spec.auth == "none":
        # A container listens on every interface; an exported endpoint without keys would be open to anyone
        # who reaches the pod or the published port.
        raise Conflict(
            f"Endpoint {spec.name!r} has no authentication (auth 'none'), and an exported endpoint listens on "
            f"every interface. Recreate it with keys (`conveyor endpoints create {spec.name} --auth key`) and "
            "export again.",
            endpoint=spec.name,
        )
    if not spec.deployments:
        raise Conflict(
            f"Endpoint {spec.name!r} has no deployments to export; deploy a model version to it first "
            f"(`conveyor endpoints deploy {spec.name} --model MODEL`).",
            endpoint=spec.name,
        )


def k8s_name(endpoint: str) -> str:
    """The base name of an endpoint's Kubernetes objects: ``conveyor-endpoint-<name>``, a DNS-1123 label.

    Endpoint names may hold capitals, ``_`` and ``.``; those become ``-``, and a name changed that way or cut to
    fit 63 characters gets a short hash of the original, so two endpoints never share objects.
    """
    slug = re.sub(r"[^a-z0-9]+", "-", endpoint.lower()).strip("-") or "endpoint"
    budget = _DNS_LABEL_MAX - _LONGEST_SUFFIX - len(_PREFIX)
    if slug != endpoint or len(slug) > budget:
        suffix = hashlib.sha256(endpoint.encode()).hexdigest()[:6]
        slug = f"{slug[: budget - len(suffix) - 1].rstrip('-')}-{suffix}"
    return _PREFIX + slug


def default_image(spec: EndpointSpec) -> str:
    """``conveyor-endpoint-<name>:<revision>``: the local image name, to retag for a registry before pushing."""
    return f"{k8s_name(spec.name)}:{spec.revision}"


def _names(endpoint: str) -> dict[str, str]:
    base = k8s_name(endpoint)
    return {"app": base, "config": f"{base}-config", "secret": f"{base}-keys"}


def _readme(spec: EndpointSpec, target: str, image: str, *, kubernetes: str) -> str:
    deployments = ", ".join(
        f"`{d.name}` → {d.model} ({d.traffic}% of traffic{', ONNX' if d.onnx else ''})" for d in spec.deployments
    )
    inputs = spec.deployments[0].signature.get("inputs", [])
    example = orjson.dumps([{c["name"]: _example_value(c.get("type", "string")) for c in inputs}]).decode()
    return _template("README.md.tmpl").substitute(
        endpoint=spec.name,
        revision=spec.revision,
        target=target,
        image=image,
        deployments=deployments,
        example=example.replace("'", "'\\''"),
        kubernetes=kubernetes,
    )


def _example_value(kind: str) -> object:
    values: dict[str, object] = {"integer": 0, "long": 0, "float": 0.0, "double": 0.0, "boolean": False}
    return values.get(kind, "2024-01-31" if kind in ("date", "datetime") else "")


def _bundle_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in (folder / "blobs").iterdir())


def _round_up(value: int, step: int) -> int:
    return -(-value // step) * step


def _template(name: str) -> Template:
    return Template(resources.files("conveyor.serve").joinpath("templates", name).read_text(encoding="utf-8"))


def _write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path
