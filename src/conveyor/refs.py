"""References users type: ``name``, ``name:3`` (a version), ``name@alias`` (``@latest`` for data,
``@champion`` for models). One parser for every kind of resource, and one rule for names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from conveyor.errors import InvalidReference

__all__ = ["LATEST", "MAX_VERSION", "Ref", "parse_ref", "validate_alias", "validate_name", "validate_version"]

LATEST = "latest"
MAX_VERSION = 2**31 - 1
"""The largest version number: versions are stored in an INTEGER column, 32 bits on every backend."""
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


def validate_version(version: object, name: str = "", kind: str = "resource") -> int:
    """Check a version number: a whole number from 1 to :data:`MAX_VERSION`.

    Raises:
        InvalidReference: not a whole number (booleans included), below 1, or above the largest version any
            resource can have (a larger number would overflow the database's integer, so it is refused here).
    """
    shown = f"{name}:{version}" if name else str(version)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InvalidReference(
            f"{shown!r}: a {kind} version is a whole number from 1 (as in '{name or 'churn'}:3').",
            ref=shown,
        )
    if version > MAX_VERSION:
        raise InvalidReference(
            f"{shown!r}: version {version} is out of range; versions are numbered from 1 to {MAX_VERSION}, "
            "counting up from 1 as they are made.",
            ref=shown,
        )
    return version


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
        # ASCII digits only: str.isdigit accepts '²' (which int() refuses) and int() accepts other scripts'
        # digits. A number longer than MAX_VERSION's digits is out of range without parsing it (int() refuses
        # past 4,300 digits).
        digits = version_text.lstrip("0")
        if not (version_text.isascii() and version_text.isdigit()) or not digits:
            raise InvalidReference(
                f"{text[:80]!r}: the version after ':' must be a whole number from 1 (as in '{name}:3'), "
                f"or use '{name}@latest'.",
                ref=text,
            )
        if len(digits) > len(str(MAX_VERSION)):
            shown = f"{name}:{digits[:12]}…" if len(digits) > 24 else f"{name}:{digits}"
            raise InvalidReference(
                f"{shown!r}: the version is out of range; versions are numbered from 1 to {MAX_VERSION}, "
                "counting up from 1 as they are made.",
                ref=shown,
            )
        return Ref(name, version=validate_version(int(digits), name, kind))
    validate_name(raw, kind)
    return Ref(raw)
