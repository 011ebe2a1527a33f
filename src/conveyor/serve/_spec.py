"""What an endpoint serves, as one immutable value: the serving processes' only input.

The control plane (``ws.endpoints``) builds an :class:`EndpointSpec` from the workspace's tables; an exported
bundle (``conveyor export docker|k8s``) stores the same value as ``endpoint.json`` beside the model files. The
serving processes never read the tables themselves, so a container runs without a workspace database.

Model files are addressed by their SHA-256 digest in both cases: a :class:`BlobSource` returns verified bytes
for a digest, from the workspace's artifact store or from a bundle's ``blobs/`` folder.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

from conveyor.errors import ArtifactCorrupted, InvalidSpec

__all__ = [
    "BUNDLE_SPEC",
    "KEYS_ENV",
    "Batching",
    "BlobSource",
    "BundleBlobs",
    "DeploymentSpec",
    "EndpointSpec",
    "OnnxSpec",
    "bundle_keys",
    "is_loopback",
    "key_digest",
    "status_path",
]

#: The file of a bundle that holds its :class:`EndpointSpec`.
BUNDLE_SPEC = "endpoint.json"
#: The environment variable a bundle's serving process reads its keys from: ``PRIMARY,SECONDARY``.
KEYS_ENV = "CONVEYOR_ENDPOINT_KEYS"


def key_digest(key: str) -> str:
    """What a serving process keeps of an endpoint key: its SHA-256 (so a spec or a log never holds a key)."""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class Batching:
    """Adaptive micro-batching of one deployment.

    Requests that arrive while the model is busy are scored together, up to ``max_batch_size`` rows;
    ``max_latency_ms`` > 0 also waits that long for more requests before scoring a partial batch (more
    throughput for models with a high fixed cost per call, at the price of latency). A deployment holds at
    most ``max_queue`` waiting requests per worker; past that it answers 503 with ``Retry-After``.
    """

    max_batch_size: int = 64
    max_latency_ms: float = 0.0
    max_queue: int = 512

    def check(self) -> Batching:
        """Raises:
        InvalidSpec: a knob is out of range.
        """
        if not 1 <= self.max_batch_size <= 100_000:
            raise InvalidSpec(f"max_batch_size must be between 1 and 100000; got {self.max_batch_size}.")
        if not 0 <= self.max_latency_ms <= 10_000:
            raise InvalidSpec(f"max_latency_ms must be between 0 and 10000; got {self.max_latency_ms}.")
        if not 1 <= self.max_queue <= 1_000_000:
            raise InvalidSpec(f"max_queue must be between 1 and 1000000; got {self.max_queue}.")
        return self


@dataclass(frozen=True)
class OnnxSpec:
    """A deployment's ONNX conversion (``model.onnx`` of its version), used instead of the model when present."""

    digest: str
    inputs: list[dict[str, str]]
    outputs: list[str]
    kind: str
    missing_text: str | None
    #: The classifier's classes in the order of its probability columns (None: unknown, or a regressor).
    classes: list[Any] | None = None

    @property
    def self_sufficient(self) -> bool:
        """Whether the ONNX file alone can answer everything the endpoint is asked (no model load needed)."""
        return self.kind != "classifier" or self.classes is not None


@dataclass(frozen=True)
class DeploymentSpec:
    """One model version behind the endpoint, with its share of live and of mirrored traffic."""

    name: str
    model: str  # name:version
    model_name: str
    model_version: int
    model_version_id: str
    format: str
    digest: str
    trusted_types: list[str]
    signature: dict[str, Any]
    traffic: int = 0
    mirror: int = 0
    batching: Batching = field(default_factory=Batching)
    onnx: OnnxSpec | None = None
    #: The deployment's id in the workspace (lineage of collected requests); empty in exported bundles.
    id: str = ""
    #: A row of the model's own input (from the version's stored input example) that warm-up scores; None:
    #: the version has none, and warm-up makes a row from the signature.
    example: list[dict[str, Any]] | None = None
    #: Refuse request fields the signature does not have (422); by default they are left out, as MLflow does,
    #: and named in the ``conveyor-ignored-fields`` response header and the access log.
    strict: bool = False


@dataclass(frozen=True)
class EndpointSpec:
    """Everything a serving process needs to serve an endpoint.

    ``key_digests`` are the SHA-256 digests of the primary and secondary keys (empty with ``auth="none"``).
    ``workers`` is the number of worker processes; ``idle_timeout_s`` > 0 scales the endpoint to zero
    workers after that long without a request (the next request starts them again).
    """

    name: str
    revision: int
    auth: str
    key_digests: list[str]
    deployments: list[DeploymentSpec]
    workers: int = 0
    idle_timeout_s: float = 0.0
    max_body_bytes: int = 10 * 1024 * 1024
    rate_limit: float = 0.0
    collect: dict[str, Any] | None = None

    def deployment(self, name: str) -> DeploymentSpec | None:
        return next((d for d in self.deployments if d.name == name), None)

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2)

    @classmethod
    def from_json(cls, data: bytes) -> EndpointSpec:
        """Raises:
        InvalidSpec: the document is not an endpoint spec.
        """
        try:
            raw = orjson.loads(data)
            deployments = []
            for d in raw.pop("deployments"):
                onnx = d.pop("onnx", None)
                deployments.append(
                    DeploymentSpec(
                        **d | {"batching": Batching(**d.get("batching", {}))},
                        onnx=None if onnx is None else OnnxSpec(**onnx),
                    )
                )
            return cls(**raw, deployments=deployments)
        except (orjson.JSONDecodeError, TypeError, KeyError, AttributeError) as exc:
            raise InvalidSpec(f"Not an endpoint spec ({BUNDLE_SPEC}): {exc}.") from exc


class BlobSource(Protocol):
    """Verified bytes of a stored file by its SHA-256 digest."""

    def __call__(self, digest: str, what: str) -> bytes: ...


class BundleBlobs:
    """The model files of an exported bundle: ``DIR/blobs/<sha256>``, verified on read."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def __call__(self, digest: str, what: str) -> bytes:
        # Digests are recorded as ``sha256:<hex>``; files are named by the bare hex (':' breaks some filesystems).
        hex_digest = digest.removeprefix("sha256:")
        path = self.folder / "blobs" / hex_digest
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise InvalidSpec(f"The bundle at {self.folder} lacks {what} (blobs/{hex_digest}).") from exc
        if hashlib.sha256(data).hexdigest() != hex_digest:
            raise ArtifactCorrupted(f"{what} in {path} does not match its SHA-256 {digest}; re-export the bundle.")
        return data


def bundle_keys() -> list[str]:
    """The key digests a bundle's process accepts, from ``CONVEYOR_ENDPOINT_KEYS`` (comma-separated keys)."""
    raw = os.environ.get(KEYS_ENV, "")
    return [key_digest(k.strip()) for k in raw.split(",") if k.strip()]


def status_path(home: Path, endpoint: str) -> Path:
    """Where the supervisor of ``endpoint`` reports its state (state, revision, worker pids)."""
    return home / "run" / "endpoints" / f"{endpoint}.json"


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (only there may an endpoint go without auth)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
