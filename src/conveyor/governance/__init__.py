"""Governance: the lineage graph (later: identities, roles, tokens, audit chain, explanations, secrets)."""

from conveyor.governance._lineage import Edge, Lineage, add_edge, run_inputs

__all__ = ["Edge", "Lineage", "add_edge", "run_inputs"]
