"""The ASGI app of a serving worker: every route of an endpoint, written as one plain ASGI callable.

Routes (under the endpoint's base URL):

- Open Inference Protocol (V2): ``GET /v2/health/live``, ``GET /v2/health/ready``, ``GET /v2``,
  ``GET /v2/models/{name}[/versions/{v}]``, ``GET /v2/models/{name}[/versions/{v}]/ready``,
  ``POST /v2/models/{name}[/versions/{v}]/infer``. The model name is the endpoint's; a version is a
  deployment's name or its model version number, and targets that deployment.
- MLflow: ``POST /invocations``, ``GET /ping``, ``GET /health``, ``GET /version``.
- ``POST /predict``: a JSON list of records. ``GET /``: what is served. ``GET /metrics``: Prometheus.

Each scoring request is authenticated (``Authorization: Bearer KEY`` unless the endpoint has no auth), size
limited, decoded and validated against the signature, routed to a deployment (the ``conveyor-deployment``
header, else at random by the live traffic weights), scored through that deployment's batcher, optionally
mirrored to shadow deployments after the answer is sent, counted, logged and sampled for collection. Every
refusal is a 4xx ``{"error": {"code", "message"}}`` naming the field and the fix.

Plain ASGI rather than a framework: the hot path is a handful of dictionary look-ups, which is what lets two
cores answer tens of thousands of requests per second.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import os
import random
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import numpy as np
import orjson

from conveyor.errors import BadInput, ConveyorError, InvalidSpec, did_you_mean
from conveyor.serve import _protocols as protocols
from conveyor.serve._openapi import endpoint_openapi
from conveyor.serve._runtime import LoadedDeployment, Overloaded, Rows, Scored
from conveyor.serve._spec import EndpointSpec, key_digest

__all__ = ["EndpointApp", "HTTPError", "Shared"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_JSON = [(b"content-type", b"application/json")]
_TEXT = "text/plain; version=0.0.4; charset=utf-8"
_PUBLIC = frozenset({"/v2/health/live", "/v2/health/ready", "/ping", "/health"})
#: Names the fields of a request that were left out because the model does not take them.
_IGNORED_HEADER = b"conveyor-ignored-fields"
_MAX_IGNORED_SHOWN = 32


class HTTPError(Exception):
    """A refusal with its status and JSON error body."""

    def __init__(self, status: int, code: str, message: str, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, list(headers)
        #: Set when the refusal came from a deployment (so metrics and logs can say which).
        self.deployment = ""
        self.protocol = "other"

    @classmethod
    def of(cls, exc: ConveyorError) -> HTTPError:
        headers = []
        if "retry_after" in exc.details:
            headers.append((b"retry-after", str(exc.details["retry_after"]).encode()))
        return cls(exc.http_status, exc.code, exc.message, headers)


@dataclass
class Shared:
    """What the supervisor changes while the worker runs: traffic, mirror shares and keys (shared memory).

    ``weights``/``mirror`` are indexed like the spec's deployments; ``accepted_keys`` returns the accepted key digests;
    ``last_request`` is this worker's last request time (monotonic), read by the supervisor for idling.
    """

    weights: Sequence[int]
    mirror: Sequence[int]
    accepted_keys: Callable[[], list[str]]
    last_request: Any = None


class EndpointApp:
    """The ASGI callable of one worker serving one endpoint's deployments."""

    def __init__(
        self,
        spec: EndpointSpec,
        deployments: list[LoadedDeployment],
        shared: Shared,
        *,
        metrics: Any | None = None,
        access_log: Any | None = None,
        collector: Any | None = None,
    ) -> None:
        self.spec = spec
        self.deployments = deployments
        self.by_name = {d.spec.name: d for d in deployments}
        self.by_version = {str(d.spec.model_version): d for d in deployments}
        self.shared = shared
        self.metrics = metrics
        self.access_log = access_log
        self.collector = collector
        self.ready = True
        #: Set when the worker is stopping: answers close their connection, so clients reconnect elsewhere.
        self.draining = False
        self._ids = itertools.count(1)
        self._prefix = f"{os.getpid():x}-"
        self._rng = random.Random()  # noqa: S311 - picking a deployment, not a secret
        self._background: set[asyncio.Task[None]] = set()
        self._tokens = float(max(spec.rate_limit, 1.0))
        self._openapi = orjson.dumps(endpoint_openapi(spec))
        self._refilled = time.monotonic()
        if metrics is not None:
            for d in deployments:
                d.batcher.on_batch = metrics.batch_observer(d.spec.name)
                metrics.model_loaded(d.spec.name, d.load_seconds)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await _lifespan(receive, send)
            return
        started = time.perf_counter()
        if self.shared.last_request is not None:
            self.shared.last_request.value = time.monotonic()
        path: str = scope["path"]
        method: str = scope["method"]
        headers = dict(scope["headers"])
        request_id = headers.get(b"x-request-id", b"").decode("latin-1") or self._prefix + str(next(self._ids))
        deployment = ""
        protocol = "other"
        ignored: list[str] = []
        try:
            if path not in _PUBLIC:
                self._authenticate(headers)
            scoring = _is_scoring(path)
            if method == "POST" and scoring:
                protocol, deployment, status, body, extra = await self._score(
                    path, headers, receive, request_id, ignored
                )
            elif method in ("GET", "HEAD") and not scoring:
                status, body, extra = self._get(path, headers)
            else:
                allowed = "POST" if scoring else "GET, HEAD"
                raise HTTPError(
                    405,
                    "method_not_allowed",
                    f"{method} is not allowed on {path}; use {allowed}.",
                    [(b"allow", allowed.encode())],
                )
        except HTTPError as exc:
            status, extra = exc.status, exc.headers
            deployment, protocol = exc.deployment or deployment, exc.protocol if exc.deployment else protocol
            body = _error_body(path, exc)
        extra = [*extra, (b"x-request-id", request_id.encode())]
        if self.draining:
            extra.append((b"connection", b"close"))
        await _respond(send, status, body, extra, method == "HEAD")
        elapsed = time.perf_counter() - started
        if self.metrics is not None and protocol != "other":
            self.metrics.request(deployment, protocol, status, elapsed)
        if self.access_log is not None:
            entry = {
                "ts": time.time(),
                "id": request_id,
                "method": method,
                "path": path,
                "status": status,
                "deployment": deployment,
                "ms": round(elapsed * 1000, 3),
                "bytes": len(body),
            }
            if ignored:
                entry["ignored"] = ignored[:_MAX_IGNORED_SHOWN]
            self.access_log(entry)

    # -- scoring ------------------------------------------------------------------------------------

    async def _score(
        self, path: str, headers: dict[bytes, bytes], receive: Receive, request_id: str, ignored: list[str]
    ) -> tuple[str, str, int, bytes, list[tuple[bytes, bytes]]]:
        if path == "/predict":
            protocol, version = "predict", None
        elif path == "/invocations":
            protocol, version = "mlflow", None
        else:
            protocol = "v2"
            version = self._v2_path(path, "infer")
        self._rate_limit()
        body = await self._body(headers, receive)
        deployment = self._choose(headers, version)
        name = deployment.spec.name
        try:
            columns, rows, want_proba, v2_id, outputs = self._decode(protocol, body, headers, deployment, ignored)
            # A request kept for monitoring also keeps the positive class's probability (for AUC), even if
            # the caller did not ask for probabilities; the answer still carries only what was asked.
            collect = self.collector is not None and self.collector.takes()
            scored = await deployment.batcher.submit(columns, rows, want_proba or (collect and deployment.has_proba))
            if protocol == "v2":
                answer: Any = protocols.v2_response(
                    self.spec.name,
                    str(deployment.spec.model_version),
                    v2_id if v2_id is not None else request_id,
                    scored.predictions,
                    scored.probabilities if want_proba else None,
                    outputs,
                )
            elif protocol == "mlflow":
                answer = protocols.mlflow_response(scored.predictions)
            else:
                answer = {"predictions": _plain(scored.predictions), "model": deployment.spec.model, "deployment": name}
                if ignored:
                    answer["ignored_fields"] = ignored
        except ConveyorError as exc:
            refused = HTTPError.of(exc)
            refused.deployment, refused.protocol = name, protocol
            raise refused from exc
        extra = [(b"conveyor-deployment", name.encode())]
        if ignored:
            extra.append((_IGNORED_HEADER, _ignored_header(ignored)))
        body_out = orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY)
        self._after(deployment, columns, rows, scored, request_id, collect)
        return protocol, name, 200, body_out, extra

    @staticmethod
    def _decode(
        protocol: str, body: bytes, headers: dict[bytes, bytes], deployment: LoadedDeployment, ignored: list[str]
    ) -> tuple[Rows, int, bool, str | None, list[str] | None]:
        """A request body checked against the signature: its rows, their count, and what the protocol asks.
        The names of fields the signature does not have are appended to ``ignored`` (unless the deployment is
        strict, which refuses them)."""
        signature = deployment.spec.signature
        strict = deployment.spec.strict
        v2_id, outputs, want_proba = None, None, False
        columns: Rows
        if protocol == "v2":
            columns, v2_id, outputs = protocols.v2_to_columns(_json(body), signature, strict=strict, ignored=ignored)
            want_proba = outputs is not None and "predict_proba" in outputs
        elif protocol == "mlflow":
            content_type = headers.get(b"content-type", b"application/json").decode("latin-1")
            columns = protocols.mlflow_to_columns(body, content_type, signature, strict=strict, ignored=ignored)
        else:
            payload = _json(body)
            matrix = deployment.records_matrix(payload)
            columns = (
                matrix
                if matrix is not None
                else protocols.records_to_columns(payload, signature, strict=strict, ignored=ignored)
            )
        rows = _row_count(columns)
        if rows == 0:
            raise InvalidSpec("The request holds no rows; send at least one.")
        return columns, rows, want_proba, v2_id, outputs

    def _after(
        self, deployment: LoadedDeployment, columns: Rows, rows: int, scored: Scored, request_id: str, collect: bool
    ) -> None:
        """Mirror to shadow deployments and keep a sampled request for collection, never delaying the answer."""
        for i, shadow in enumerate(self.deployments):
            share = self.shared.mirror[i]
            if share and shadow is not deployment and self._rng.random() * 100 < share:
                self._spawn(self._mirror(shadow, columns, rows))
        if collect and self.collector is not None:
            self.collector.offer(deployment.spec, deployment.as_columns(columns), rows, scored, request_id)

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _mirror(self, shadow: LoadedDeployment, columns: Rows, rows: int) -> None:
        outcome = "ok"
        try:
            await shadow.batcher.submit(columns, rows, False)
        except Overloaded:
            outcome = "dropped"
        except ConveyorError:
            outcome = "error"
        if self.metrics is not None:
            self.metrics.mirrored(shadow.spec.name, outcome)

    async def _body(self, headers: dict[bytes, bytes], receive: Receive) -> bytes:
        limit = self.spec.max_body_bytes
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _too_large(limit)
        chunks = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise HTTPError(400, "disconnected", "The client went away before sending the whole body.")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
            more = message.get("more_body", False)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _choose(self, headers: dict[bytes, bytes], version: str | None) -> LoadedDeployment:
        wanted = headers.get(b"conveyor-deployment")
        if wanted is not None and version is not None:
            by_path = self._choose({}, version)
            if by_path.spec.name != wanted.decode("latin-1"):
                raise HTTPError(
                    400,
                    "conflicting_deployment",
                    f"The path names version {version!r} (deployment {by_path.spec.name!r}) but the "
                    f"conveyor-deployment header names {wanted.decode('latin-1')!r}; send one of them.",
                )
            return by_path
        if wanted is not None:
            name = wanted.decode("latin-1")
            found = self.by_name.get(name)
            if found is None:
                raise HTTPError(
                    404,
                    "not_found",
                    f"Endpoint {self.spec.name!r} has no deployment {name!r} (conveyor-deployment header)."
                    f"{did_you_mean(name, self.by_name)} Deployments: {', '.join(self.by_name)}.",
                )
            return found
        if version is not None:
            found = self.by_name.get(version) or self.by_version.get(version)
            if found is None:
                raise HTTPError(
                    404,
                    "not_found",
                    f"Model {self.spec.name!r} has no version {version!r}; versions are the deployments "
                    f"({', '.join(self.by_name)}) or their model versions ({', '.join(self.by_version)}).",
                )
            return found
        weights = self.shared.weights
        total = sum(weights)
        if total <= 0:
            raise HTTPError(
                503,
                "no_traffic",
                f"No deployment of {self.spec.name!r} takes traffic; set it with "
                f"'conveyor endpoints traffic {self.spec.name} NAME=100'.",
                [(b"retry-after", b"1")],
            )
        if len(weights) == 1:
            return self.deployments[0]
        pick = self._rng.random() * total
        for deployment, weight in zip(self.deployments, weights, strict=True):
            pick -= weight
            if pick < 0:
                return deployment
        return self.deployments[-1]

    def _authenticate(self, headers: dict[bytes, bytes]) -> None:
        if self.spec.auth == "none":
            return
        value = headers.get(b"authorization")
        if value is None or not value.startswith(b"Bearer "):
            raise HTTPError(
                401,
                "unauthorized",
                "This endpoint needs a key: send 'Authorization: Bearer KEY' (see 'conveyor endpoints keys NAME').",
                [(b"www-authenticate", b'Bearer realm="conveyor"')],
            )
        digest = key_digest(value[7:].decode("latin-1").strip())
        if not any(hmac.compare_digest(digest, known) for known in self.shared.accepted_keys()):
            raise HTTPError(
                403,
                "forbidden",
                "The key is not valid for this endpoint; it may have been regenerated. Get the current keys with "
                "'conveyor endpoints keys NAME'.",
            )

    def _rate_limit(self) -> None:
        rate = self.spec.rate_limit
        if rate <= 0:
            return
        # A token bucket per worker, each worker taking its share of the endpoint's rate.
        share = rate / max(self.spec.workers, 1)
        now = time.monotonic()
        self._tokens = min(share, self._tokens + (now - self._refilled) * share)
        self._refilled = now
        if self._tokens < 1.0:
            raise HTTPError(
                429,
                "rate_limited",
                f"Endpoint {self.spec.name!r} takes at most {rate:g} requests/s; slow down and retry.",
                [(b"retry-after", b"1")],
            )
        self._tokens -= 1.0

    # -- reads --------------------------------------------------------------------------------------

    def _get(  # noqa: PLR0911 - one return per route
        self, path: str, headers: dict[bytes, bytes]
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        if path in ("/v2/health/live", "/ping", "/health"):
            return 200, orjson.dumps({"live": True}), []
        if path == "/v2/health/ready":
            status = 200 if self.ready else 503
            return status, orjson.dumps({"ready": self.ready}), []
        if path == "/v2":
            return 200, orjson.dumps(protocols.v2_server_metadata()), []
        if path == "/version":
            return 200, orjson.dumps(protocols.v2_server_metadata()["version"]), []
        if path == "/":
            return 200, orjson.dumps(self.describe()), []
        if path == "/metrics":
            if self.metrics is None:
                raise HTTPError(404, "not_found", "Metrics are off for this endpoint.")
            return 200, self.metrics.render(), [(b"content-type", _TEXT.encode())]
        if path.startswith("/v2/models/"):
            if path.endswith("/ready"):
                version = self._v2_path(path, "ready")
                target = self._choose(headers, version) if version else None
                ready = self.ready and (target is not None or bool(self.deployments))
                return (200 if ready else 503), orjson.dumps({"name": self.spec.name, "ready": ready}), []
            version = self._v2_path(path, None)
            targets = [self._choose(headers, version)] if version else self.deployments
            first = targets[0]
            metadata = protocols.v2_model_metadata(
                self.spec.name,
                list(dict.fromkeys(str(d.spec.model_version) for d in targets)),
                first.spec.signature,
                f"conveyor_{first.engine}",
            )
            return 200, orjson.dumps(metadata), []
        if path == "/openapi.json":
            return 200, self._openapi, []
        raise HTTPError(404, "not_found", f"No route {path}. Routes: {', '.join(sorted(self.routes()))}.")

    def _v2_path(self, path: str, action: str | None) -> str | None:
        """The version in ``/v2/models/NAME[/versions/V][/ACTION]`` (None without one).

        Raises:
            HTTPError: the path is not such a route, or names another model.
        """
        parts = path.strip("/").split("/")
        if action is not None:
            if not parts or parts[-1] != action:
                raise HTTPError(404, "not_found", f"No route {path}. Routes: {', '.join(sorted(self.routes()))}.")
            parts = parts[:-1]
        if len(parts) == 3 and parts[:2] == ["v2", "models"]:
            name, version = parts[2], None
        elif len(parts) == 5 and parts[:2] == ["v2", "models"] and parts[3] == "versions":
            name, version = parts[2], parts[4]
        else:
            raise HTTPError(404, "not_found", f"No route {path}. Routes: {', '.join(sorted(self.routes()))}.")
        if name != self.spec.name:
            raise HTTPError(
                404,
                "not_found",
                f"No model {name!r} here: this endpoint serves the model {self.spec.name!r} "
                f"(/v2/models/{self.spec.name}/infer).",
            )
        return version

    def routes(self) -> dict[str, str]:
        base = f"/v2/models/{self.spec.name}"
        return {
            "predict": "/predict",
            "invocations": "/invocations",
            "v2_infer": f"{base}/infer",
            "v2_model": base,
            "v2_model_ready": f"{base}/ready",
            "v2_server": "/v2",
            "live": "/v2/health/live",
            "ready": "/v2/health/ready",
            "metrics": "/metrics",
            "openapi": "/openapi.json",
        }

    def describe(self) -> dict[str, Any]:
        return {
            "endpoint": self.spec.name,
            "revision": self.spec.revision,
            "auth": self.spec.auth,
            "deployments": [
                {
                    "name": d.spec.name,
                    "model": d.spec.model,
                    "engine": d.engine,
                    "traffic": self.shared.weights[i],
                    "mirror": self.shared.mirror[i],
                    "signature": d.spec.signature,
                }
                for i, d in enumerate(self.deployments)
            ],
            "routes": self.routes(),
        }


def _ignored_header(ignored: list[str]) -> bytes:
    """The ``conveyor-ignored-fields`` value: the names, percent-encoded where a header cannot carry them
    (``,`` ``%``, spaces, control and non-ASCII characters), comma-separated, at most 32 then ``+N more``."""
    shown = [quote(name, safe="!#$&'()*+-./:;<=>?@[]^_`{|}~") for name in ignored[:_MAX_IGNORED_SHOWN]]
    if len(ignored) > _MAX_IGNORED_SHOWN:
        shown.append(f"+{len(ignored) - _MAX_IGNORED_SHOWN} more")
    return ", ".join(shown).encode("ascii")


def _error_body(path: str, exc: HTTPError) -> bytes:
    if path.startswith("/v2"):
        # The Open Inference Protocol's error object is {"error": "<message>"}; the code rides beside it.
        return orjson.dumps({"error": exc.message, "code": exc.code})
    return orjson.dumps({"error": {"code": exc.code, "message": exc.message}})


def _plain(predictions: np.ndarray) -> Any:
    """Predictions as orjson serialises them: numeric arrays as they are, labels (text, objects) as a list."""
    kind = predictions.dtype.kind
    if kind == "M":
        return np.datetime_as_string(predictions).tolist()
    return predictions if kind in "biuf" else predictions.tolist()


def _row_count(rows: Rows) -> int:
    if isinstance(rows, np.ndarray):
        return len(rows)
    return len(next(iter(rows.values()))) if rows else 0


def _is_scoring(path: str) -> bool:
    return path in ("/predict", "/invocations") or (path.startswith("/v2/models/") and path.endswith("/infer"))


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadInput(f"The body is not valid JSON: {exc}. Send a JSON document (UTF-8).") from exc


def _too_large(limit: int) -> HTTPError:
    return HTTPError(
        413,
        "payload_too_large",
        f"The body is over this endpoint's limit of {limit} bytes ({limit / 1048576:g} MB); send fewer rows per "
        "request.",
    )


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]], head_only: bool = False
) -> None:
    if not any(name == b"content-type" for name, _ in headers):
        headers = [*_JSON, *headers]
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head_only else body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
