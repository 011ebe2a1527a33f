"""Governance: identities, roles and tokens; the hash-chained audit log; secrets; the lineage graph; model cards
(explanations, fairness)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conveyor import _lazy

if TYPE_CHECKING:
    from conveyor.governance._audit import AuditEvent, AuditLog, Verification
    from conveyor.governance._cards import Cards, ModelCard
    from conveyor.governance._context import Principal, acting_as, current_principal, local_principal
    from conveyor.governance._identities import Identities, IssuedToken, Token, User, parse_duration
    from conveyor.governance._lineage import (
        Edge,
        Lineage,
        LineageEdge,
        LineageGraph,
        LineageNode,
        LineageRef,
        add_edge,
        parse_lineage_ref,
        run_inputs,
    )
    from conveyor.governance._roles import PERMISSIONS, ROLES, role_allows
    from conveyor.governance._secrets import SecretInfo, Secrets

__all__ = [
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
]

_HOME = {
    "AuditEvent": "_audit",
    "AuditLog": "_audit",
    "Verification": "_audit",
    "Cards": "_cards",
    "ModelCard": "_cards",
    "Principal": "_context",
    "acting_as": "_context",
    "current_principal": "_context",
    "local_principal": "_context",
    "Identities": "_identities",
    "IssuedToken": "_identities",
    "Token": "_identities",
    "User": "_identities",
    "parse_duration": "_identities",
    "Edge": "_lineage",
    "Lineage": "_lineage",
    "LineageEdge": "_lineage",
    "LineageGraph": "_lineage",
    "LineageNode": "_lineage",
    "LineageRef": "_lineage",
    "add_edge": "_lineage",
    "parse_lineage_ref": "_lineage",
    "run_inputs": "_lineage",
    "PERMISSIONS": "_roles",
    "ROLES": "_roles",
    "role_allows": "_roles",
    "SecretInfo": "_secrets",
    "Secrets": "_secrets",
}


def __getattr__(name: str) -> Any:
    return _lazy.load(__name__, _HOME, name)


def __dir__() -> list[str]:
    return sorted(__all__)
