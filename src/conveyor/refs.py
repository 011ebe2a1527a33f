"""References users type: ``name``, ``name:3`` (a version), ``name@alias`` (``@latest`` for data,
``@champion`` for models). One parser for every kind of resource, and one rule for names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from conveyor.errors import InvalidReference

__all__ = ["LATEST", "Ref", "parse_ref", "validate_alias", "validate_name"]

LATEST = "latest"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_ALIAS = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")


@dataclass(frozen=True)
class Ref:
    """A parsed reference. At most one of ``version`` and ``alias`` is set; neither means "latest"."""

    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}:{self.version}"
        if self.alias is not None:
            return f"{self.name}@{self.alias}"
        return self.name

    @property
    def is_latest(self) -> bool:
        return self.version is None and self.alias in (None, LATEST)


def validate_name(name: str, kind: str = "resource") -> str:
    """Check a resource name: 1–128 characters of letters, digits, ``_ . -``, starting with a letter or digit.

    Raises:
        InvalidReference: the name is empty, too long, or has other characters (``/`` included, so a name can
            never escape its folder).
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        shown = repr(name) if isinstance(name, str) else type(name).__name__
        raise InvalidReference(
            f"{shown} is not a valid {kind} name: use 1-128 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit (for example 'churn' or 'churn_2024').",
            name=name,
            kind=kind,
        )
    return name


def validate_alias(alias: str) -> str:
    """Check an alias name (``champion``, ``challenger``, ``latest`` ...).

    Raises:
        InvalidReference: the alias is empty or has other characters than letters, digits, ``_`` and ``-``.
    """
    if not _ALIAS.fullmatch(alias):
        raise InvalidReference(
            f"{alias!r} is not a valid alias: use letters, digits, '_' or '-', starting with a letter "
            "(for example 'champion').",
            alias=alias,
        )
    return alias


def parse_ref(text: str, kind: str = "resource") -> Ref:
    """Parse ``name``, ``name:3`` or ``name@alias`` (a leading ``azureml:`` is accepted and dropped).

    Raises:
        InvalidReference: the text is not one of those forms, or the version is not a positive whole number.
    """
    if not isinstance(text, str):
        raise InvalidReference(f"A {kind} reference must be text such as 'churn:3', not {type(text).__name__}.")
    raw = text.strip()
    if raw.startswith("azureml:"):
        raw = raw[len("azureml:") :]
    if "@" in raw:
        name, _, alias = raw.partition("@")
        validate_name(name, kind)
        validate_alias(alias)
        return Ref(name, alias=alias)
    if ":" in raw:
        name, _, version_text = raw.partition(":")
        validate_name(name, kind)
        if version_text == LATEST:
            return Ref(name, alias=LATEST)
        if not version_text.isdigit() or int(version_text) < 1:
            raise InvalidReference(
                f"{text!r}: the version after ':' must be a whole number from 1 (as in '{name}:3'), "
                f"or use '{name}@latest'.",
                ref=text,
            )
        return Ref(name, version=int(version_text))
    validate_name(raw, kind)
    return Ref(raw)
