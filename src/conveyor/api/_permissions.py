"""Which permission each route needs: the REST half of the permission matrix (roles are in
``conveyor.governance._roles``). ``create_app`` refuses to start if a route has no entry here, and a test
walks every route × role, so a new route cannot ship without a rule.

A route may check one more permission in its body when the request asks for more than the route's rule
covers: ``POST /data/sql`` with ``save_as`` needs ``data.write``; ``POST /datastores`` for a datastore on
this machine's files, databases or private addresses needs ``datastores.admin``; ``/tokens`` with another
user than the caller needs ``users.admin``.
"""

from __future__ import annotations

from types import MappingProxyType

__all__ = ["ROUTE_PERMISSIONS", "permission_for", "routes_markdown"]

ROUTE_PERMISSIONS: MappingProxyType[tuple[str, str], str] = MappingProxyType(
    {
        ("GET", "/api/v1/health"): "public",
        ("GET", "/api/v1/workspace"): "read",
        # data
        ("GET", "/api/v1/data"): "read",
        ("POST", "/api/v1/data/sql"): "read",
        ("GET", "/api/v1/data/{ref}"): "read",
        ("GET", "/api/v1/data/{name}/versions"): "read",
        ("POST", "/api/v1/data/{name}/versions"): "data.write",
        ("GET", "/api/v1/data/{ref}/rows"): "read",
        ("GET", "/api/v1/data/{ref}/profile"): "read",
        ("GET", "/api/v1/data/{ref}/diff/{other}"): "read",
        ("POST", "/api/v1/data/{name}/ingest"): "data.write",
        ("GET", "/api/v1/datastores"): "read",
        ("POST", "/api/v1/datastores"): "data.write",
        ("GET", "/api/v1/datastores/{name}"): "read",
        ("DELETE", "/api/v1/datastores/{name}"): "data.write",
        # tracking
        ("GET", "/api/v1/runs"): "read",
        ("GET", "/api/v1/runs/search"): "read",
        ("GET", "/api/v1/runs/compare"): "read",
        ("GET", "/api/v1/runs/compare.html"): "read",
        ("GET", "/api/v1/runs/experiments"): "read",
        ("GET", "/api/v1/runs/{run_id}"): "read",
        ("GET", "/api/v1/runs/{run_id}/metrics/{key}"): "read",
        ("GET", "/api/v1/runs/{run_id}/artifacts/{path:path}"): "read",
        # registry
        ("GET", "/api/v1/models"): "read",
        ("POST", "/api/v1/models/{name}/versions"): "models.write",
        ("GET", "/api/v1/models/{name}/versions"): "read",
        ("PUT", "/api/v1/models/{name}/aliases/{alias}"): "models.promote",
        ("DELETE", "/api/v1/models/{name}/aliases/{alias}"): "models.promote",
        ("PATCH", "/api/v1/models/{ref}/tags"): "models.write",
        ("DELETE", "/api/v1/models/{ref}/tags/{key}"): "models.write",
        ("GET", "/api/v1/models/{ref}"): "read",
        ("GET", "/api/v1/models/{ref}/card"): "read",
        ("POST", "/api/v1/models/{ref}/card"): "models.write",
        ("GET", "/api/v1/models/{ref}/profile"): "read",
        ("POST", "/api/v1/models/{ref}/profile"): "models.write",
        # serving
        ("GET", "/api/v1/endpoints"): "read",
        ("POST", "/api/v1/endpoints"): "endpoints.write",
        ("GET", "/api/v1/endpoints/{name}"): "read",
        ("DELETE", "/api/v1/endpoints/{name}"): "endpoints.write",
        ("POST", "/api/v1/endpoints/{name}/deployments"): "endpoints.write",
        ("DELETE", "/api/v1/endpoints/{name}/deployments/{deployment}"): "endpoints.write",
        ("PUT", "/api/v1/endpoints/{name}/traffic"): "endpoints.write",
        ("PUT", "/api/v1/endpoints/{name}/mirror"): "endpoints.write",
        ("POST", "/api/v1/endpoints/{name}/rollback"): "endpoints.write",
        ("POST", "/api/v1/endpoints/{name}/stop"): "endpoints.write",
        ("POST", "/api/v1/endpoints/{name}/start"): "endpoints.write",
        ("GET", "/api/v1/endpoints/{name}/keys"): "endpoints.keys",
        ("POST", "/api/v1/endpoints/{name}/keys/{which}"): "endpoints.keys",
        ("GET", "/api/v1/endpoints/{name}/logs"): "endpoints.logs",
        ("POST", "/api/v1/batch/score"): "batch.run",
        # pipelines
        ("GET", "/api/v1/pipelines"): "read",
        ("PUT", "/api/v1/pipelines"): "pipelines.write",
        ("GET", "/api/v1/pipelines/{name}"): "read",
        ("POST", "/api/v1/pipelines/{name}/runs"): "pipelines.run",
        ("GET", "/api/v1/pipelines/{name}/runs"): "read",
        ("POST", "/api/v1/pipelines/{name}/trigger"): "pipelines.run",
        ("GET", "/api/v1/pipeline-runs/{run_id}"): "read",
        ("GET", "/api/v1/pipeline-runs/{run_id}/steps/{step}/logs"): "read",
        ("GET", "/api/v1/schedules"): "read",
        ("GET", "/api/v1/pipelines/{name}/schedules"): "read",
        ("POST", "/api/v1/pipelines/{name}/schedules"): "pipelines.run",
        ("DELETE", "/api/v1/pipelines/{name}/schedules"): "pipelines.run",
        ("DELETE", "/api/v1/pipelines/{name}/schedules/{schedule_id}"): "pipelines.run",
        # training
        ("POST", "/api/v1/train"): "train.run",
        # monitoring
        ("POST", "/api/v1/drift"): "read",
        ("GET", "/api/v1/monitors"): "read",
        ("POST", "/api/v1/monitors"): "monitors.write",
        ("GET", "/api/v1/monitors/{name}"): "read",
        ("DELETE", "/api/v1/monitors/{name}"): "monitors.write",
        ("POST", "/api/v1/monitors/{name}/run"): "monitors.write",
        ("GET", "/api/v1/monitors/{name}/history"): "read",
        ("GET", "/api/v1/monitors/{name}/alerts"): "read",
        ("POST", "/api/v1/monitors/{name}/feedback"): "monitors.feedback",
        # governance
        ("GET", "/api/v1/lineage"): "read",
        ("GET", "/api/v1/me"): "self",
        ("GET", "/api/v1/tokens"): "self",
        ("POST", "/api/v1/tokens"): "self",
        ("DELETE", "/api/v1/tokens/{token_id}"): "self",
        ("GET", "/api/v1/users"): "users.admin",
        ("POST", "/api/v1/users"): "users.admin",
        ("GET", "/api/v1/users/{name}"): "users.admin",
        ("PUT", "/api/v1/users/{name}/role"): "users.admin",
        ("POST", "/api/v1/users/{name}/disable"): "users.admin",
        ("POST", "/api/v1/users/{name}/enable"): "users.admin",
        ("GET", "/api/v1/audit"): "audit.read",
        ("GET", "/api/v1/audit/verify"): "audit.read",
        ("GET", "/api/v1/secrets"): "secrets.write",
        ("PUT", "/api/v1/secrets/{name}"): "secrets.write",
        ("DELETE", "/api/v1/secrets/{name}"): "secrets.write",
    }
)


def permission_for(method: str, path: str) -> str | None:
    """The permission a route needs (HEAD counts as GET), or None if the route has no rule."""
    return ROUTE_PERMISSIONS.get(("GET" if method == "HEAD" else method, path))


def routes_markdown() -> str:
    """Every route with its permission, as a Markdown table (docs/security.md embeds it)."""
    lines = ["| route | permission |", "|---|---|"]
    lines += [f"| `{method} {path}` | `{permission}` |" for (method, path), permission in ROUTE_PERMISSIONS.items()]
    return "\n".join(lines)
