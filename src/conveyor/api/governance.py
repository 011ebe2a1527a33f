"""``/api/v1/me``, ``/tokens``, ``/users``, ``/audit``, ``/secrets``: identities, the audit log and secrets.

Token values are returned once, by ``POST /tokens``; secret values never (``PUT /secrets/{name}`` takes one).
"""

from __future__ import annotations

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from conveyor.api._auth import CallerDep, require
from conveyor.api._deps import WorkspaceDep
from conveyor.errors import NotFound
from conveyor.governance import (
    AuditEvent,
    Principal,
    SecretInfo,
    Token,
    User,
    Verification,
    parse_duration,
    role_allows,
)

router = APIRouter(tags=["governance"])


class Me(BaseModel):
    name: str
    role: str
    source: str


class TokenRequest(BaseModel):
    name: str = Field("", max_length=128, description="A label to tell tokens apart.")
    expires: str = Field("90d", max_length=16, description="30d, 12h, 45m, 2w or never.")
    user: str | None = Field(None, description="Another user's token (admins only); default: yourself.")


class IssuedTokenBody(BaseModel):
    token: Token
    secret: str = Field(description="The token itself: shown this once, stored only as a hash.")


class UserRequest(BaseModel):
    name: str
    role: str = Field(description="admin, data-scientist, operator or reader")


class RoleRequest(BaseModel):
    role: str = Field(description="admin, data-scientist, operator or reader")


class SecretRequest(BaseModel):
    value: str = Field(min_length=1, max_length=65_536, description="The value; never returned.")
    description: str = Field("", max_length=1000)


def _own_name(caller: Principal) -> str:
    if caller.user_id is None:
        raise NotFound(
            f"{caller.name!r} is not a registered user (the server runs with --no-auth); tokens belong to users "
            "added with `conveyor users add`."
        )
    name: str = caller.name
    return name


@router.get("/me", summary="Who the token belongs to")
def me(caller: CallerDep) -> Me:
    return Me(name=caller.name, role=caller.role, source=caller.source)


@router.get("/tokens", summary="Your tokens (admins: anyone's with ?user=)")
def list_tokens(ws: WorkspaceDep, caller: CallerDep, user: str | None = None) -> list[Token]:
    if user is not None and user != caller.name:
        require(caller, "users.admin")
        return ws.identities.tokens(user)
    return ws.identities.tokens(_own_name(caller))


@router.post("/tokens", summary="Create a token (its value is in the answer, once)", status_code=201)
def create_token(body: TokenRequest, ws: WorkspaceDep, caller: CallerDep) -> IssuedTokenBody:
    owner = body.user or _own_name(caller)
    if owner != caller.name:
        require(caller, "users.admin")
    issued = ws.identities.create_token(owner, name=body.name, expires_in=parse_duration(body.expires))
    return IssuedTokenBody(token=issued.token, secret=issued.secret)


@router.delete("/tokens/{token_id}", summary="Revoke a token (yours; admins: anyone's)")
def revoke_token(token_id: str, ws: WorkspaceDep, caller: CallerDep) -> Token:
    mine_only = not role_allows(caller.role, "users.admin")
    return ws.identities.revoke(token_id, user=caller.name if mine_only else None)


@router.get("/users", summary="Every user with their role")
def list_users(ws: WorkspaceDep) -> list[User]:
    return ws.identities.users()


@router.post("/users", summary="Add a user", status_code=201)
def add_user(body: UserRequest, ws: WorkspaceDep) -> User:
    return ws.identities.add_user(body.name, body.role)


@router.get("/users/{name}", summary="One user")
def get_user(name: str, ws: WorkspaceDep) -> User:
    return ws.identities.get_user(name)


@router.put("/users/{name}/role", summary="Change a user's role")
def set_role(name: str, body: RoleRequest, ws: WorkspaceDep) -> User:
    return ws.identities.set_role(name, body.role)


@router.post("/users/{name}/disable", summary="Disable a user: their tokens stop working at once")
def disable_user(name: str, ws: WorkspaceDep) -> User:
    return ws.identities.disable(name)


@router.post("/users/{name}/enable", summary="Enable a disabled user again")
def enable_user(name: str, ws: WorkspaceDep) -> User:
    return ws.identities.enable(name)


@router.get("/audit", summary="Audit log entries, newest first")
def audit_list(
    ws: WorkspaceDep,
    limit: int = Query(50, ge=1, le=10_000),
    actor: str | None = Query(None, max_length=128),
    action: str | None = Query(None, max_length=512, description="A part of the action, e.g. 'endpoints'."),
    table: str | None = Query(None, max_length=64, description="Only entries that changed this table."),
    before: int | None = Query(None, ge=1, le=2**62, description="Entries before this sequence number (paging)."),
) -> list[AuditEvent]:
    return ws.audit.list(limit=limit, actor=actor, action=action, table=table, before=before)


@router.get("/audit/verify", summary="Check the hash chain; names the first edited, inserted or deleted entry")
def audit_verify(ws: WorkspaceDep) -> Verification:
    return ws.audit.verify()


@router.get("/secrets", summary="Secrets by name (values are never returned)")
def list_secrets(ws: WorkspaceDep) -> list[SecretInfo]:
    return ws.secrets.list()


@router.put("/secrets/{name}", summary="Set a secret (encrypted at rest; the value is never returned)")
def set_secret(name: str, body: SecretRequest, ws: WorkspaceDep) -> SecretInfo:
    return ws.secrets.set(name, body.value, description=body.description)


@router.delete("/secrets/{name}", summary="Delete a secret", status_code=204)
def delete_secret(name: str, ws: WorkspaceDep) -> Response:
    ws.secrets.delete(name)
    return Response(status_code=204)
