"""Roles and what each may do: the permission matrix, in one table.

The REST API maps every route to one permission (``conveyor.api._permissions``); a test walks every
route × role from this table, and ``docs/security.md`` prints it. On the machine itself the CLI and SDK act
as the OS user with the ``admin`` role: whoever can open the workspace's files already holds everything in it.
"""

from __future__ import annotations

from types import MappingProxyType

from conveyor.errors import BadInput, did_you_mean

__all__ = ["PERMISSIONS", "ROLES", "check_role", "matrix_markdown", "role_allows"]

ROLES = ("admin", "data-scientist", "operator", "reader")

#: permission → (what it covers, roles that hold it)
PERMISSIONS: MappingProxyType[str, tuple[str, frozenset[str]]] = MappingProxyType(
    {
        "public": ("health and readiness; no token needed", frozenset(ROLES)),
        "read": (
            "list and show data, datastores, runs, models, endpoints, pipelines, schedules, lineage; SQL without "
            "save_as",
            frozenset(ROLES),
        ),
        "self": ("see yourself; create, list and revoke your own tokens", frozenset(ROLES)),
        "data.write": (
            "ingest and upload data, save SQL results, add and remove datastores on remote hosts",
            frozenset({"admin", "data-scientist"}),
        ),
        "datastores.admin": (
            "datastores on this machine's files, its databases, loopback or private addresses",
            frozenset({"admin"}),
        ),
        "pipelines.write": (
            "register pipeline specs (functions from trusted modules only)",
            frozenset({"admin", "data-scientist"}),
        ),
        "pipelines.run": (
            "run and trigger pipelines, add and remove schedules",
            frozenset({"admin", "data-scientist", "operator"}),
        ),
        "train.run": ("start AutoML training", frozenset({"admin", "data-scientist"})),
        "models.write": ("register model versions, set and remove tags", frozenset({"admin", "data-scientist"})),
        "models.promote": (
            "move and remove aliases (champion, challenger)",
            frozenset({"admin", "data-scientist", "operator"}),
        ),
        "endpoints.write": (
            "create, deploy, split traffic, mirror, roll back, start, stop and delete endpoints",
            frozenset({"admin", "operator"}),
        ),
        "endpoints.keys": ("read and regenerate endpoint keys", frozenset({"admin", "operator"})),
        "endpoints.logs": ("read endpoints' access logs", frozenset({"admin", "operator", "data-scientist"})),
        "batch.run": ("score a data version in bulk", frozenset({"admin", "data-scientist", "operator"})),
        "monitors.write": (
            "create, run and delete monitors (webhooks to private addresses need datastores.admin)",
            frozenset({"admin", "data-scientist", "operator"}),
        ),
        "monitors.feedback": (
            "send labels (ground truth) for an endpoint's requests",
            frozenset({"admin", "data-scientist", "operator"}),
        ),
        "audit.read": ("read and verify the audit log", frozenset({"admin", "operator"})),
        "secrets.write": ("set, list and delete secrets (values are never returned)", frozenset({"admin"})),
        "users.admin": ("add, disable and list users; manage anyone's tokens", frozenset({"admin"})),
    }
)


def role_allows(role: str, permission: str) -> bool:
    """Whether ``role`` holds ``permission`` (an unknown permission is held by no one)."""
    entry = PERMISSIONS.get(permission)
    return entry is not None and role in entry[1]


def check_role(role: str) -> str:
    """``role`` if it is one of :data:`ROLES`.

    Raises:
        BadInput: the role is unknown (with a suggestion).
    """
    if role not in ROLES:
        raise BadInput(f"Unknown role {role!r}; use one of {', '.join(ROLES)}.{did_you_mean(role, ROLES)}")
    return role


def matrix_markdown() -> str:
    """The permission matrix as a Markdown table (docs/security.md embeds it; a test keeps them equal)."""
    lines = ["| permission | what it covers | " + " | ".join(ROLES) + " |", "|---|---|" + "---|" * len(ROLES)]
    for name, (what, roles) in PERMISSIONS.items():
        marks = " | ".join("✓" if role in roles else "–" for role in ROLES)
        lines.append(f"| `{name}` | {what} | {marks} |")
    return "\n".join(lines)
