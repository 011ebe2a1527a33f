"""Governance: identities, roles and tokens; the hash-chained audit log; secrets; the lineage graph; model cards
(explanations, fairness)."""

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
