"""Validation rules for tabular data, with quarantine of the rows that break them.

Rules are written in YAML, per column and per table::

    columns:
      age: {type: integer, not_null: true, min: 0, max: 130}
      email: {regex: '^[^@]+@[^@]+$'}
      plan: {allowed: [basic, standard, premium]}
      customer_id: {unique: true, not_null: true}
      signup: {type: date, min: 2020-01-01}
      churned: {type: boolean}
      seen_at: {type: datetime, format: '%d/%m/%Y %H:%M'}
      notes: {}                      # no rule: the column must only exist
    table:
      rows: {min: 1, max: 10000000}

Column rules (a row breaks a rule only through that column's value; a null breaks only ``not_null``):

``type``
    ``integer``, ``number`` (float), ``string``, ``boolean``, ``date`` or ``datetime``. A value that cannot
    be read as the type breaks ``col.type``; rows that pass have the column cast to that type (``Int64``,
    ``Float64``, ``String``, ``Boolean``, ``Date``, ``Datetime``). Text is read with surrounding spaces
    stripped; booleans are ``true``/``false``/``1``/``0``/``yes``/``no`` in any case; dates are
    ``YYYY-MM-DD`` and datetimes ISO 8601 without a zone (``YYYY-MM-DD[T ]HH:MM[:SS[.fff]]``) unless
    ``format`` gives a strftime pattern.
``not_null: true``
    the value is present.
``min`` / ``max``
    inclusive bounds, numbers for numeric columns, dates (``2020-01-01``) or datetimes for date columns.
``allowed: [a, b, c]``
    the value is one of these. For text columns the values are compared as written in the file, so
    ``[yes, no, NO]`` means the strings, not YAML booleans.
``regex: 'pattern'``
    the value contains a match (anchor with ``^`` and ``$`` to match the whole value). The syntax is Rust's
    ``regex`` crate (no look-around or back-references); non-text columns are matched as text.
``unique: true``
    no value repeats: the first row holding a value passes, every later one breaks ``col.unique``.
    Uniqueness is judged over the whole input, including rows that break other rules.

Table rules (``table.rows.min``/``table.rows.max``) count the rows that pass the column rules (the rows a
version would hold). They quarantine nothing; a failure is reported in ``summary["table_failures"]``.

Rules are evaluated in the order the file lists the columns, and within a column in the order
``type, not_null, min, max, allowed, regex, unique``. A row that breaks several rules is quarantined once,
under the first rule it breaks (``_rule``/``_reason``); the summary counts every rule each row breaks, so the
per-rule counts can add up to more than ``rows_quarantined``.

Every rule is one Polars expression and all of them run in one pass over the data; the reasons (the
``_reason`` text) are built from the failing rows only.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from conveyor.errors import InvalidSpec, NotFound, ValidationFailed, did_you_mean

if TYPE_CHECKING:
    import polars as pl
    import yaml

__all__ = ["TYPES", "ColumnRules", "RuleOutcome", "Rules", "TableRules", "apply_rules", "load_rules", "parse_rules"]

ColumnType = Literal["integer", "number", "string", "boolean", "date", "datetime"]
TYPES: tuple[ColumnType, ...] = ("integer", "number", "string", "boolean", "date", "datetime")
#: The order rules of one column are evaluated in (``format`` is a modifier of ``type``, not a rule).
RULE_ORDER: Final = ("type", "not_null", "min", "max", "allowed", "regex", "unique")
_COLUMN_KEYS: Final = (*RULE_ORDER, "format")
_TOP_KEYS: Final = ("columns", "table")
_TABLE_KEYS: Final = ("rows",)
_BOUND_KEYS: Final = ("min", "max")
#: Names people reach for, and the rule or type they mean.
_KEY_HINTS: Final = {
    "nullable": "not_null",
    "required": "not_null",
    "notnull": "not_null",
    "in": "allowed",
    "values": "allowed",
    "enum": "allowed",
    "one_of": "allowed",
    "pattern": "regex",
    "match": "regex",
    "minimum": "min",
    "maximum": "max",
    "dtype": "type",
    "distinct": "unique",
    "row_count": "rows",
    "count": "rows",
}
_TYPE_HINTS: Final = {
    "int": "integer",
    "int64": "integer",
    "float": "number",
    "float64": "number",
    "double": "number",
    "decimal": "number",
    "str": "string",
    "text": "string",
    "bool": "boolean",
    "timestamp": "datetime",
}
_ARTICLE: Final = {"integer": "an integer", "number": "a number", "string": "a string", "boolean": "a boolean"}
_BOOL_WORDS: Final = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}
_DATETIME_FORMATS: Final = ("%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M", "%Y-%m-%d")
_DATE_FORMAT: Final = "%Y-%m-%d"
#: Columns the quarantine adds; input columns may not use these names.
QUARANTINE_COLUMNS: Final = ("_rule", "_reason", "_row")
_EXAMPLES: Final = 3
_ROW: Final = "__conveyor_row"
_ANY: Final = "__conveyor_failed"


# -- the rules -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnRules:
    """The rules for one column. ``lines`` maps each rule given to its line in the rules file."""

    name: str
    line: int
    type: ColumnType | None = None
    format: str | None = None
    not_null: bool = False
    min: Any = None
    max: Any = None
    allowed: tuple[Any, ...] | None = None
    allowed_text: tuple[str, ...] | None = None
    regex: str | None = None
    unique: bool = False
    lines: dict[str, int] = field(default_factory=dict)

    @property
    def rules(self) -> list[str]:
        """The rules this column has, in evaluation order (``type``, ``not_null``, ...)."""
        given = {
            "type": self.type is not None,
            "not_null": self.not_null,
            "min": self.min is not None,
            "max": self.max is not None,
            "allowed": self.allowed is not None,
            "regex": self.regex is not None,
            "unique": self.unique,
        }
        return [r for r in RULE_ORDER if given[r]]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in _COLUMN_KEYS:
            value = getattr(self, key)
            if value is None or value is False:
                continue
            if isinstance(value, dt.date):
                value = value.isoformat()
            elif key == "allowed":
                value = [v.isoformat() if isinstance(v, dt.date) else v for v in value]
            out[key] = value
        return out


@dataclass(frozen=True)
class TableRules:
    """Rules over the whole table: the range of the number of rows that pass the column rules."""

    min_rows: int | None = None
    max_rows: int | None = None
    lines: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        rows = {k: v for k, v in (("min", self.min_rows), ("max", self.max_rows)) if v is not None}
        return {"rows": rows} if rows else {}


@dataclass(frozen=True)
class Rules:
    """Validation rules, as parsed from a rules file (``source`` names it in messages)."""

    columns: tuple[ColumnRules, ...] = ()
    table: TableRules = field(default_factory=TableRules)
    source: str = "<rules>"

    @property
    def rule_ids(self) -> list[str]:
        """Every rule as ``column.rule`` (and ``table.rows.min``/``max``), in evaluation order."""
        ids = [f"{c.name}.{r}" for c in self.columns for r in c.rules]
        if self.table.min_rows is not None:
            ids.append("table.rows.min")
        if self.table.max_rows is not None:
            ids.append("table.rows.max")
        return ids

    def to_dict(self) -> dict[str, Any]:
        """The rules as a JSON-ready object in the rules-file format."""
        out: dict[str, Any] = {"columns": {c.name: c.to_dict() for c in self.columns}}
        table = self.table.to_dict()
        if table:
            out["table"] = table
        return out


def load_rules(path: Path) -> Rules:
    """Read a YAML rules file.

    Raises:
        NotFound: there is no such file.
        InvalidSpec: the file is not valid YAML or breaks the rules format; the message names the line.
    """
    path = Path(path)
    if not path.exists():
        raise NotFound(f"No rules file {str(path)!r}. Check the path.", path=str(path))
    if path.is_dir():
        raise InvalidSpec(f"{str(path)!r} is a folder; give the rules file (YAML).", path=str(path))
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InvalidSpec(
            f"{path}, line {line}: byte {raw[exc.start : exc.start + 1]!r} is not UTF-8; re-save the rules file as "
            "UTF-8.",
            source=str(path),
            line=line,
        ) from exc
    return parse_rules(text, source=str(path))


def parse_rules(text: str, source: str = "<rules>") -> Rules:
    """Parse rules from YAML text; ``source`` names the text in error messages.

    Raises:
        InvalidSpec: the text is not valid YAML or breaks the rules format; the message names the line, the
            offending key or value, what is allowed, and (for misspelt names) what was probably meant.
    """
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        try:
            root = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else None
            where = f"{source}, line {line}" if line is not None else source
            problem = exc.problem or exc.context or "invalid YAML"
            raise InvalidSpec(
                f"{where}: YAML syntax error: {problem}. Fix the syntax (indentation, a missing ':' or an unclosed "
                "quote); every rule is 'key: value' under its column.",
                source=source,
                line=line,
            ) from exc
        except yaml.YAMLError as exc:
            raise InvalidSpec(f"{source}: YAML syntax error: {exc}.", source=source) from exc
        return _Parser(loader, source).rules(root)
    finally:
        loader.dispose()


class _Parser:
    """Checks a composed YAML tree against the rules format, with the line of every problem."""

    def __init__(self, loader: yaml.SafeLoader, source: str) -> None:
        self._loader = loader
        self._source = source

    def fail(self, node: yaml.Node, message: str) -> InvalidSpec:
        line = node.start_mark.line + 1
        return InvalidSpec(f"{self._source}, line {line}: {message}", source=self._source, line=line)

    def value(self, node: yaml.Node) -> Any:
        import yaml

        try:
            return self._loader.construct_object(node, deep=True)
        except (ValueError, yaml.YAMLError) as exc:
            if node.tag == "tag:yaml.org,2002:timestamp":
                return str(node.value)  # looks like a date but is not one (2020-13-01): say so where it is used
            problem = getattr(exc, "problem", None) or str(exc)
            shown = str(node.value) or str(node.tag)
            raise self.fail(
                node, f"{shown!r} cannot be read: {problem}. Remove the '!' tag, or quote the value to give text."
            ) from None

    def items(self, node: yaml.Node, what: str, example: str) -> Iterator[tuple[str, yaml.Node, yaml.Node]]:
        """The ``(key, key node, value node)`` of a mapping node, refusing other nodes and repeated keys."""
        import yaml

        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, f"{what} must be a mapping ('key: value' lines), e.g. {example}.")
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.fail(key_node, f"a key of {what} must be a plain name, not a list or mapping.")
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise self.fail(key_node, f"{key!r} is given twice in {what} (lines {seen[key]} and {line}); keep one.")
            seen[key] = line
            yield key, key_node, value_node

    def unknown(self, key_node: yaml.Node, key: str, what: str, allowed: Sequence[str]) -> InvalidSpec:
        hint = _KEY_HINTS.get(key.lower())
        suggestion = f" Did you mean {hint!r}?" if hint in allowed else did_you_mean(key, allowed)
        return self.fail(key_node, f"unknown key {key!r} in {what}.{suggestion} Allowed: {', '.join(allowed)}.")

    def rules(self, root: yaml.Node | None) -> Rules:
        example = "'columns:' then one line per column like '  age: {type: integer, min: 0}'"
        if root is None or (_is_null(root)):
            raise InvalidSpec(
                f"{self._source}: the rules file is empty; start with {example}.", source=self._source, line=1
            )
        columns: list[ColumnRules] = []
        table = TableRules()
        for key, key_node, value_node in self.items(root, "the rules file", example):
            if key == "columns":
                columns = self.columns(value_node)
            elif key == "table":
                table = self.table(value_node)
            else:
                raise self.unknown(key_node, key, "the rules file", _TOP_KEYS)
        return Rules(columns=tuple(columns), table=table, source=self._source)

    def columns(self, node: yaml.Node) -> list[ColumnRules]:
        if _is_null(node):
            return []
        out = []
        for name, key_node, value_node in self.items(node, "'columns'", "'age: {type: integer, min: 0}'"):
            out.append(self.column(name, key_node, value_node))
        return out

    def column(self, name: str, key_node: yaml.Node, node: yaml.Node) -> ColumnRules:
        import yaml

        line = key_node.start_mark.line + 1
        if _is_null(node):
            return ColumnRules(name=name, line=line)
        if not isinstance(node, yaml.MappingNode):
            hint = (
                f" {name!r} is a rule name: indent it under its column."
                if name in _COLUMN_KEYS
                else f" Write e.g. '{name}: {{type: integer, not_null: true}}'."
            )
            raise self.fail(node, f"the rules of column {name!r} must be a mapping of rule: value.{hint}")
        what = f"column {name!r}"
        found: dict[str, Any] = {}
        lines: dict[str, int] = {}
        for key, rule_key_node, value_node in self.items(node, what, "'{type: integer, not_null: true}'"):
            if key not in _COLUMN_KEYS:
                raise self.unknown(rule_key_node, key, what, _COLUMN_KEYS)
            lines[key] = rule_key_node.start_mark.line + 1
            found[key] = value_node
        kind = self.type(found["type"], name) if "type" in found else None
        fmt = self.format(found["format"], name, kind) if "format" in found else None
        not_null = self.flag(found["not_null"], name, "not_null") if "not_null" in found else False
        unique = self.flag(found["unique"], name, "unique") if "unique" in found else False
        low = self.bound(found["min"], name, "min", kind) if "min" in found else None
        high = self.bound(found["max"], name, "max", kind) if "max" in found else None
        if low is not None and high is not None and _comparable(low, high) and low > high:
            raise self.fail(found["max"], f"{name}.max ({_show(high)}) is below {name}.min ({_show(low)}); swap them.")
        allowed, allowed_text = self.allowed(found["allowed"], name, kind) if "allowed" in found else (None, None)
        regex = self.regex(found["regex"], name) if "regex" in found else None
        return ColumnRules(
            name=name,
            line=line,
            type=kind,
            format=fmt,
            not_null=not_null,
            min=low,
            max=high,
            allowed=allowed,
            allowed_text=allowed_text,
            regex=regex,
            unique=unique,
            lines=lines,
        )

    def scalar(self, node: yaml.Node, rule: str, expected: str) -> Any:
        import yaml

        if not isinstance(node, yaml.ScalarNode):
            shape = "a list" if isinstance(node, yaml.SequenceNode) else "a mapping"
            raise self.fail(node, f"{rule} must be {expected}, not {shape}.")
        return self.value(node)

    def type(self, node: yaml.Node, column: str) -> ColumnType:
        value = self.scalar(node, f"{column}.type", f"one of {', '.join(TYPES)}")
        text = str(node.value)
        for kind in TYPES:
            if text == kind:
                return kind
        hint = _TYPE_HINTS.get(text.lower())
        suggestion = f" Did you mean {hint!r}?" if hint else did_you_mean(text.lower(), TYPES)
        shown = text if isinstance(value, str) else _show(value)
        raise self.fail(
            node, f"{column}.type is {shown!r}, not a known type.{suggestion} Use one of: {', '.join(TYPES)}."
        )

    def format(self, node: yaml.Node, column: str, kind: ColumnType | None) -> str:
        self.scalar(node, f"{column}.format", "a strftime pattern such as '%d/%m/%Y'")
        text = str(node.value)
        if kind not in ("date", "datetime"):
            raise self.fail(
                node,
                f"{column}.format only applies to 'type: date' or 'type: datetime'; add one, or remove the format.",
            )
        if "%" not in text:
            raise self.fail(
                node, f"{column}.format {text!r} has no '%' fields; write a strftime pattern such as '%d/%m/%Y'."
            )
        return text

    def flag(self, node: yaml.Node, column: str, rule: str) -> bool:
        value = self.scalar(node, f"{column}.{rule}", "true or false")
        if not isinstance(value, bool):
            raise self.fail(node, f"{column}.{rule} is {node.value!r}; it must be true or false (unquoted).")
        return value

    def bound(self, node: yaml.Node, column: str, rule: str, kind: ColumnType | None) -> Any:
        rule_id = f"{column}.{rule}"
        value = self.scalar(node, rule_id, "a number or a date")
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if kind in ("string", "boolean"):
            raise self.fail(
                node,
                f"{rule_id}: min and max apply to integer, number, date and datetime columns, not {kind}. "
                "For text use 'allowed' or 'regex'.",
            )
        if kind in ("integer", "number"):
            if not numeric:
                raise self.fail(node, f"{rule_id} is {_show(value)}; a {kind} column needs a number here.")
            return value
        if kind == "date":
            return self.date_bound(node, rule_id, value, datetime_ok=False)
        if kind == "datetime":
            return self.date_bound(node, rule_id, value, datetime_ok=True)
        if numeric or isinstance(value, dt.date):
            return value
        raise self.fail(
            node,
            f"{rule_id} is {_show(value)}; give a number, or a date like 2020-01-01 (unquoted). For a date given as "
            "text, declare the column's type: date or datetime.",
        )

    def date_bound(self, node: yaml.Node, rule_id: str, value: Any, *, datetime_ok: bool) -> dt.date:
        kind = "datetime" if datetime_ok else "date"
        example = "2020-01-01T12:00:00" if datetime_ok else "2020-01-01"
        if isinstance(value, str):
            try:
                value = dt.datetime.fromisoformat(value) if datetime_ok else dt.date.fromisoformat(value)
            except ValueError:
                raise self.fail(node, f"{rule_id} {value!r} is not an ISO {kind}; write it like {example}.") from None
        if isinstance(value, dt.datetime):
            if not datetime_ok:
                raise self.fail(node, f"{rule_id} is {_show(value)}, a datetime; a date column needs a date here.")
            return value
        if isinstance(value, dt.date):
            return dt.datetime.combine(value, dt.time()) if datetime_ok else value
        raise self.fail(node, f"{rule_id} is {_show(value)}; a {kind} column needs a {kind} like {example} here.")

    def allowed(self, node: yaml.Node, column: str, kind: ColumnType | None) -> tuple[tuple[Any, ...], tuple[str, ...]]:
        import yaml

        rule_id = f"{column}.allowed"
        if not isinstance(node, yaml.SequenceNode) or not node.value:
            raise self.fail(node, f"{rule_id} must be a non-empty list, e.g. [basic, standard, premium].")
        values: list[Any] = []
        texts: list[str] = []
        for item in node.value:
            value = self.scalar(item, f"an item of {rule_id}", "a single value")
            if value is None:
                raise self.fail(
                    item, f"{rule_id} lists a null; nulls always pass 'allowed'. Use not_null: true to forbid them."
                )
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            problem = None
            if kind == "integer" and not (isinstance(value, int) and not isinstance(value, bool)):
                problem = "an integer"
            elif kind == "number" and not numeric:
                problem = "a number"
            elif kind == "boolean" and not isinstance(value, bool):
                problem = "true or false"
            elif kind == "date":
                value = self.date_bound(item, f"an item of {rule_id}", value, datetime_ok=False)
            elif kind == "datetime":
                value = self.date_bound(item, f"an item of {rule_id}", value, datetime_ok=True)
            if problem is not None:
                raise self.fail(item, f"{rule_id} lists {_show(value)}; a {kind} column needs {problem} here.")
            values.append(value)
            texts.append(str(item.value))
        return tuple(values), tuple(texts)

    def regex(self, node: yaml.Node, column: str) -> str:
        import polars as pl

        self.scalar(node, f"{column}.regex", "a pattern in quotes, e.g. '^[^@]+@[^@]+$'")
        pattern = str(node.value)
        try:
            pl.select(pl.lit("").str.contains(pattern))
        except pl.exceptions.PolarsError as exc:
            lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip().startswith("error:")]
            why = lines[0].removeprefix("error:").strip() if lines else str(exc).splitlines()[0]
            raise self.fail(
                node,
                f"{column}.regex {pattern!r} does not compile: {why}. Patterns use Rust regex syntax "
                "(no look-around or back-references); quote them with single quotes.",
            ) from None
        return pattern

    def table(self, node: yaml.Node) -> TableRules:
        if _is_null(node):
            return TableRules()
        low: int | None = None
        high: int | None = None
        lines: dict[str, int] = {}
        for key, key_node, value_node in self.items(node, "'table'", "'rows: {min: 1, max: 1000000}'"):
            if key not in _TABLE_KEYS:
                raise self.unknown(key_node, key, "'table'", _TABLE_KEYS)
            low_node: yaml.Node | None = None
            for bound, bound_key_node, bound_node in self.items(value_node, "'table.rows'", "'{min: 1, max: 1000}'"):
                if bound not in _BOUND_KEYS:
                    raise self.unknown(bound_key_node, bound, "'table.rows'", _BOUND_KEYS)
                value = self.scalar(bound_node, f"table.rows.{bound}", "a whole number of rows")
                if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                    raise self.fail(
                        bound_node, f"table.rows.{bound} is {_show(value)}; it must be a whole number, 0 or more."
                    )
                lines[bound] = bound_key_node.start_mark.line + 1
                if bound == "min":
                    low, low_node = value, bound_node
                else:
                    high = value
            if low is not None and high is not None and low > high:
                raise self.fail(low_node or value_node, f"table.rows.min ({low}) is above table.rows.max ({high}).")
        return TableRules(min_rows=low, max_rows=high, lines=lines)


def _is_null(node: yaml.Node) -> bool:
    import yaml

    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _comparable(a: Any, b: Any) -> bool:
    try:
        _ = a < b
    except TypeError:
        return False
    return True


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


# -- applying them --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleOutcome:
    """What applying rules to a frame found.

    Attributes:
        valid: the rows that pass every column rule: the input's columns in their order and types, except
            columns with a ``type`` rule, which are cast to it. Lazy: it reads the input again (without the
            rules) when collected or sunk, so give ``apply_rules`` a frame that is cheap to scan twice.
        quarantined: the rows that break a column rule, every input column as text (so bad values survive
            verbatim), then ``_rule`` (``age.max``), ``_reason`` and ``_row`` (1-based row in the input).
        summary: JSON-ready: ``rows_checked``, ``rows_valid``, ``rows_quarantined``, ``ok``,
            ``failed_rules`` (ids with failures, in rule order), ``rules`` (``{id: {"failed": n,
            "examples": [{"row", "value", "reason"}]}}`` for every column rule) and ``table_failures``
            (``[{"rule", "limit", "actual", "reason"}]``).
    """

    valid: pl.LazyFrame
    quarantined: pl.DataFrame
    summary: dict[str, Any]

    @property
    def ok(self) -> bool:
        """No row quarantined and no table rule broken."""
        return bool(self.summary["ok"])

    def message(self) -> str:
        """One paragraph saying what broke which rules (``"All N rows pass the rules."`` when none did)."""
        s = self.summary
        if s["ok"]:
            return f"All {s['rows_checked']} rows pass the rules."
        parts = []
        if s["rows_quarantined"]:
            parts.append(f"{s['rows_quarantined']} of {s['rows_checked']} rows break the rules")
        details = []
        for rule in s["failed_rules"]:
            info = s["rules"][rule]
            first = info["examples"][0] if info["examples"] else None
            example = f" (e.g. row {first['row']}: {first['reason']})" if first else ""
            details.append(f"{rule}: {info['failed']}{example}")
        details.extend(f"{f['rule']}: {f['reason']}" for f in s["table_failures"])
        head = "; ".join(parts) or "A table rule is broken"
        return f"{head}: " + "; ".join(details) + "."

    def raise_if_failed(self) -> None:
        """Raise ``ValidationFailed`` (with the summary in ``details``) unless ``ok``: ``--fail-on-invalid``."""
        if not self.ok:
            raise ValidationFailed(
                self.message() + " Fix the data or the rules; nothing was committed.", summary=self.summary
            )


@dataclass
class _Check:
    """One column rule: its id, the failure flag's column, and how to say why a row failed.

    ``key`` (``unique`` only) names the column of the failing rows holding the typed value, which finds the
    row each duplicate repeats (``first``) once the failing rows are known.
    """

    rule_id: str
    column: str
    flag: str
    fails: pl.Expr
    reason: pl.Expr
    key: str | None = None
    value: pl.Expr | None = None
    first: str | None = None


def apply_rules(frame: pl.LazyFrame, rules: Rules) -> RuleOutcome:
    """Check every row of ``frame`` against ``rules`` in one pass, splitting valid rows from quarantined ones.

    The column rules are evaluated once; failing rows are collected with their values as text and the first
    rule they break; the returned ``valid`` frame re-reads ``frame`` and drops those rows by position.

    Raises:
        ValidationFailed: a column the rules name is not in the frame, the frame uses a name the quarantine
            needs (``_rule``, ``_reason``, ``_row``), or a rule cannot apply to the column's data type.
    """
    import polars as pl

    schema = frame.collect_schema()
    names = list(schema.names())
    _check_columns(rules, names)
    casts: dict[str, pl.Expr] = {}
    checks: list[_Check] = []
    for column in rules.columns:
        typed, target = _typed(column, schema[column.name])
        if typed is not None:
            casts[column.name] = typed
        checks.extend(_checks(column, rules.source, target, typed, len(checks)))

    base = frame.with_row_index(_ROW, offset=1)
    if casts:
        base = base.with_columns(expr.alias(_typed_name(name)) for name, expr in casts.items())
    flagged = base.with_columns(check.fails.fill_null(False).alias(check.flag) for check in checks)
    flags = [check.flag for check in checks]
    flagged = flagged.with_columns((pl.any_horizontal(flags) if flags else pl.lit(False, dtype=pl.Boolean)).alias(_ANY))
    counts_query = flagged.select(
        pl.len().alias("rows"), pl.col(_ANY).sum().alias(_ANY), *(pl.col(f).sum() for f in flags)
    )
    failing_query = flagged.filter(pl.col(_ANY)).select(
        *(_as_text(pl.col(n), schema[n]).alias(n) for n in names),
        pl.col(_ROW).cast(pl.Int64),
        *flags,
        *(check.value.alias(check.key) for check in checks if check.key and check.value is not None),
    )
    counts, failing = pl.collect_all([counts_query, failing_query])
    failing = failing.sort(_ROW)
    for check in checks:
        if check.key is not None:
            failing = _add_first_rows(frame, failing, check, casts)

    rows = int(counts["rows"][0])
    bad = int(counts[_ANY][0])
    per_rule = {check.rule_id: int(counts[check.flag][0] or 0) for check in checks}

    quarantined = failing.select(
        *names,
        _first_of(checks, lambda c: pl.lit(c.rule_id)).alias("_rule"),
        _first_of(checks, lambda c: c.reason).alias("_reason"),
        pl.col(_ROW).alias("_row"),
    )
    rule_summary: dict[str, Any] = {}
    for check in checks:
        examples = (
            failing.filter(pl.col(check.flag))
            .head(_EXAMPLES)
            .select(pl.col(_ROW).alias("row"), pl.col(check.column).alias("value"), check.reason.alias("reason"))
            .to_dicts()
            if per_rule[check.rule_id]
            else []
        )
        rule_summary[check.rule_id] = {"failed": per_rule[check.rule_id], "examples": examples}

    valid_rows = rows - bad
    table_failures = _table_failures(rules.table, valid_rows, rows)
    summary: dict[str, Any] = {
        "rules_source": rules.source,
        "rows_checked": rows,
        "rows_valid": valid_rows,
        "rows_quarantined": bad,
        "ok": bad == 0 and not table_failures,
        "failed_rules": [rule for rule, n in per_rule.items() if n],
        "rules": rule_summary,
        "table_failures": table_failures,
    }

    valid = frame
    if bad:
        drop = failing.get_column(_ROW).cast(pl.UInt64)
        valid = (
            frame.with_row_index(_ROW, offset=1).filter(~pl.col(_ROW).cast(pl.UInt64).is_in(drop.implode())).drop(_ROW)
        )
    if casts:
        valid = valid.with_columns(expr.alias(name) for name, expr in casts.items())
    return RuleOutcome(valid=valid, quarantined=quarantined, summary=summary)


def _add_first_rows(
    frame: pl.LazyFrame, failing: pl.DataFrame, check: _Check, casts: dict[str, pl.Expr]
) -> pl.DataFrame:
    """Add, to the failing rows, the row number of the first occurrence of each duplicate ``check`` found.

    Only the duplicated values are looked up, reading the one column again: finding first rows for every value
    in the main pass (a window over the whole column) would triple the cost of ``unique`` when all is well.
    """
    import polars as pl

    assert check.key is not None and check.first is not None
    keys = failing.filter(pl.col(check.flag)).get_column(check.key).unique()
    if keys.is_empty():
        firsts = pl.DataFrame(schema={check.key: keys.dtype, check.first: pl.Int64})
    else:
        value = casts.get(check.column, pl.col(check.column))
        firsts = (
            frame.with_row_index(_ROW, offset=1)
            .select(pl.col(_ROW).cast(pl.Int64), value.alias(check.key))
            .filter(pl.col(check.key).is_in(keys.implode()))
            .group_by(check.key)
            .agg(pl.col(_ROW).min().alias(check.first))
            .collect()
        )
    return failing.join(firsts, on=check.key, how="left", maintain_order="left")


def _check_columns(rules: Rules, names: list[str]) -> None:
    clash = [n for n in names if n in QUARANTINE_COLUMNS or n.startswith("__conveyor_")]
    if clash:
        raise ValidationFailed(
            f"The data has column(s) {', '.join(repr(c) for c in clash)}, which the quarantine uses "
            f"({', '.join(QUARANTINE_COLUMNS)}); rename them before validating.",
            columns=clash,
        )
    for column in rules.columns:
        if column.name not in names:
            shown = ", ".join(names) if len(names) <= 30 else ", ".join(names[:30]) + f", … ({len(names)} in all)"
            raise ValidationFailed(
                f"{rules.source}, line {column.line}: column {column.name!r} is not in the data."
                f"{did_you_mean(column.name, names)} The data has: {shown or '(no columns)'}. "
                "Fix the name in the rules file.",
                column=column.name,
                columns=names,
                source=rules.source,
                line=column.line,
            )


def _typed_name(column: str) -> str:
    return f"__conveyor_typed_{column}"


def _typed(column: ColumnRules, dtype: pl.DataType) -> tuple[pl.Expr | None, pl.DataType]:
    """The expression reading the column as its declared type (``None`` when none is needed), and that type.

    A value that does not read as the type becomes null; ``type`` fails where the input was not null.
    """
    if column.type is None:
        return None, dtype
    return _READERS[column.type](column, dtype)


def _text_of(column: ColumnRules, dtype: pl.DataType) -> pl.Expr:
    """The column as text with surrounding spaces stripped, for parsing."""
    import polars as pl

    col = pl.col(column.name)
    return (col if dtype == pl.String else _as_text(col, dtype)).str.strip_chars()


def _read_string(column: ColumnRules, dtype: pl.DataType) -> tuple[pl.Expr | None, pl.DataType]:
    import polars as pl

    return (None if dtype == pl.String else _as_text(pl.col(column.name), dtype)), pl.String()


def _read_integer(column: ColumnRules, dtype: pl.DataType) -> tuple[pl.Expr | None, pl.DataType]:
    import polars as pl

    col = pl.col(column.name)
    if dtype.is_integer():
        return col.cast(pl.Int64, strict=False), pl.Int64()
    if dtype.is_float() or dtype.is_decimal():
        whole = col.cast(pl.Float64)
        return pl.when(whole == whole.floor()).then(col.cast(pl.Int64, strict=False)), pl.Int64()
    return _text_of(column, dtype).cast(pl.Int64, strict=False), pl.Int64()


def _read_number(column: ColumnRules, dtype: pl.DataType) -> tuple[pl.Expr | None, pl.DataType]:
    import polars as pl

    if dtype.is_numeric():
        return pl.col(column.name).cast(pl.Float64), pl.Float64()
    return _text_of(column, dtype).cast(pl.Float64, strict=False), pl.Float64()


def _read_boolean(column: ColumnRules, dtype: pl.DataType) -> tuple[pl.Expr | None, pl.DataType]:
    import polars as pl

    if dtype == pl.Boolean:
        return None, pl.Boolean()
    words = _text_of(column, dtype).str.to_lowercase()
    return words.replace_strict(_BOOL_WORDS, default=None, return_dtype=pl.Boolean), pl.Boolean()


def _read_date(column: ColumnRules, dtype: pl.DataType) -> tuple[pl.Expr | None, pl.DataType]:
    import polars as pl

    col = pl.col(column.name)
    if column.format is None and dtype == pl.Date:
        return None, pl.Date()
    if column.format is None and isinstance(dtype, pl.Datetime):
        return pl.when(col.dt.truncate("1d") == col).then(col.dt.date()), pl.Date()
    return _text_of(column, dtype).str.to_date(column.format or _DATE_FORMAT, strict=False), pl.Date()


def _read_datetime(column: ColumnRules, dtype: pl.DataType) -> tuple[pl.Expr | None, pl.DataType]:
    import polars as pl

    col = pl.col(column.name)
    if column.format is None and isinstance(dtype, pl.Datetime):
        return col.dt.cast_time_unit("us"), pl.Datetime("us", dtype.time_zone)
    if column.format is None and dtype == pl.Date:
        return col.cast(pl.Datetime("us")), pl.Datetime("us")
    text = _text_of(column, dtype)
    if column.format is not None:
        return text.str.to_datetime(column.format, strict=False, time_unit="us"), pl.Datetime("us")
    # ISO 8601 without a zone: a 'T' or a space between date and time, seconds and fractions optional.
    spaced = (
        pl.when(text.str.slice(10, 1) == "T")
        .then(pl.concat_str(text.str.slice(0, 10), pl.lit(" "), text.str.slice(11)))
        .otherwise(text)
    )
    parsed = [spaced.str.to_datetime(f, strict=False, time_unit="us") for f in _DATETIME_FORMATS]
    return pl.coalesce(parsed), pl.Datetime("us")


_READERS: Final = {
    "integer": _read_integer,
    "number": _read_number,
    "string": _read_string,
    "boolean": _read_boolean,
    "date": _read_date,
    "datetime": _read_datetime,
}


def _as_text(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """A column as text, whatever its type (nested values via Python's ``str``, bytes decoded as UTF-8)."""
    import polars as pl

    if dtype == pl.String:
        return expr
    if dtype.is_nested() or dtype in (pl.Binary, pl.Object):
        return expr.map_batches(_str_values, return_dtype=pl.String, is_elementwise=True)
    return expr.cast(pl.String)


def _str_values(series: pl.Series) -> pl.Series:
    import polars as pl

    def text(value: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, bytes):
            return value.decode("utf-8", "replace")
        return str(value)

    return pl.Series(series.name, [text(v) for v in series.to_list()], dtype=pl.String)


def _is_text(dtype: pl.DataType) -> bool:
    import polars as pl

    return dtype == pl.String or isinstance(dtype, pl.Categorical | pl.Enum)


def _checks(
    column: ColumnRules,
    source: str,
    target: pl.DataType,
    typed: pl.Expr | None,
    start: int,
) -> list[_Check]:
    import polars as pl

    name = column.name
    raw = pl.col(name)
    value = pl.col(_typed_name(name)) if typed is not None else raw
    text = pl.col(name)  # in the failing rows, every input column is text
    quoted = pl.concat_str(pl.lit("'"), text, pl.lit("'"))
    shown = quoted if _is_text(target) or target.is_nested() else text.str.strip_chars()
    out: list[_Check] = []

    def add(rule: str, fails: pl.Expr, *reason: pl.Expr | str) -> _Check:
        parts = [pl.lit(r) if isinstance(r, str) else r for r in reason]
        check = _Check(f"{name}.{rule}", name, f"__conveyor_f{start + len(out)}", fails, pl.concat_str(parts))
        out.append(check)
        return check

    def where(rule: str) -> str:
        return f"{source}, line {column.lines.get(rule, column.line)}"

    if column.type is not None and typed is not None:
        add("type", raw.is_not_null() & value.is_null(), f"{name} is ", quoted, f", not {_expected(column)}")
    if column.not_null:
        add("not_null", raw.is_null(), f"{name} is missing (null), but it must have a value")
    for rule, bound in (("min", column.min), ("max", column.max)):
        if bound is None:
            continue
        literal = _bound_literal(bound, target, f"{where(rule)}: {name}.{rule}", name)
        fails = value < literal if rule == "min" else value > literal
        side = "below the minimum" if rule == "min" else "above the maximum"
        add(rule, fails, f"{name} is ", shown, f", {side} {_show(bound)}")
    if column.allowed is not None:
        if _is_text(target):
            values: Sequence[Any] = column.allowed_text or ()
            listed = ", ".join(repr(v) for v in values)
            member = value.cast(pl.String).is_in(pl.Series(values, dtype=pl.String).implode())
        else:
            values = _allowed_values(column, target, where("allowed"))
            listed = ", ".join(_show(v) for v in values)
            member = value.is_in(pl.Series(values, dtype=target).implode())
        if len(values) > 10:
            listed = ", ".join(listed.split(", ")[:10]) + f", … ({len(values)} values)"
        add(
            "allowed",
            ~member,
            f"{name} is ",
            shown,
            f", not one of {listed}",
        )
    if column.regex is not None:
        as_text = value if target == pl.String else _as_text(value, target)
        add(
            "regex",
            ~as_text.str.contains(column.regex),
            f"{name} is ",
            quoted,
            f", which does not match the pattern {column.regex!r}",
        )
    if column.unique:
        index = start + len(out)
        first = f"__conveyor_first{index}"
        check = add(
            "unique",
            value.is_not_null() & ~value.is_first_distinct(),
            f"{name} is ",
            shown,
            ", a duplicate of ",
            pl.concat_str(pl.lit("row "), pl.col(first).cast(pl.String)).fill_null("an earlier row"),
        )
        check.key, check.value, check.first = f"__conveyor_key{index}", value, first
    return out


def _expected(column: ColumnRules) -> str:
    """What a value of the column's type looks like, for reasons: ``an integer``, ``a date (YYYY-MM-DD)``."""
    if column.type == "boolean":
        return "a boolean (true/false, 1/0, yes/no)"
    if column.type == "date":
        return f"a date ({column.format or 'YYYY-MM-DD'})"
    if column.type == "datetime":
        return f"a datetime ({column.format or 'YYYY-MM-DD HH:MM[:SS]'})"
    return _ARTICLE.get(column.type or "", f"a {column.type}")


def _bound_literal(bound: Any, target: pl.DataType, where: str, column: str) -> pl.Expr:
    import polars as pl

    numeric = isinstance(bound, int | float) and not isinstance(bound, bool)
    if target.is_numeric() and numeric:
        return pl.lit(bound)
    if target == pl.Date and isinstance(bound, dt.date) and not isinstance(bound, dt.datetime):
        return pl.lit(bound, dtype=pl.Date)
    if isinstance(target, pl.Datetime) and isinstance(bound, dt.date):
        moment = bound if isinstance(bound, dt.datetime) else dt.datetime.combine(bound, dt.time())
        return pl.lit(moment).cast(target)
    wanted = "a number" if numeric else "a date"
    raise ValidationFailed(
        f"{where} is {_show(bound)}, {wanted}, but column {column!r} holds {_describe_dtype(target)}. "
        f"Declare the column's type (e.g. 'type: {'integer' if numeric else 'date'}') so its values are read as "
        f"{'numbers' if numeric else 'dates'}, or change the bound.",
        column=column,
    )


def _allowed_values(column: ColumnRules, target: pl.DataType, where: str) -> list[Any]:
    import polars as pl

    values = list(column.allowed or ())
    if target.is_integer():
        good = all(isinstance(v, int) and not isinstance(v, bool) for v in values)
    elif target.is_float():
        good = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    elif target == pl.Boolean:
        good = all(isinstance(v, bool) for v in values)
    elif target == pl.Date:
        good = all(isinstance(v, dt.date) and not isinstance(v, dt.datetime) for v in values)
    elif isinstance(target, pl.Datetime):
        values = [dt.datetime.combine(v, dt.time()) if type(v) is dt.date else v for v in values]
        good = all(isinstance(v, dt.datetime) for v in values)
    else:
        good = False
    if not good:
        raise ValidationFailed(
            f"{where}: {column.name}.allowed lists {', '.join(_show(v) for v in values)}, but column "
            f"{column.name!r} holds {_describe_dtype(target)}. List values of that kind, or declare the type the "
            "values are (type: string, integer, number, boolean, date or datetime) to read the column as that.",
            column=column.name,
        )
    return values


def _describe_dtype(dtype: pl.DataType) -> str:
    if _is_text(dtype):
        return f"text ({dtype})"
    if dtype.is_integer():
        return f"integers ({dtype})"
    if dtype.is_float():
        return f"numbers ({dtype})"
    if dtype.is_temporal():
        return f"dates/times ({dtype})"
    return f"{dtype} values"


def _first_of(checks: list[_Check], pick: Any) -> pl.Expr:
    """``pick(check)`` of the first check each row fails (rows here fail at least one)."""
    import polars as pl

    if not checks:
        return pl.lit(None, dtype=pl.String)
    chain: Any = pl.when(pl.col(checks[0].flag)).then(pick(checks[0]))
    for check in checks[1:]:
        chain = chain.when(pl.col(check.flag)).then(pick(check))
    result: pl.Expr = chain.otherwise(pl.lit(None, dtype=pl.String))
    return result


def _table_failures(table: TableRules, valid_rows: int, rows: int) -> list[dict[str, Any]]:
    failures = []
    read = f" ({rows} read)" if rows != valid_rows else ""
    if table.min_rows is not None and valid_rows < table.min_rows:
        failures.append(
            {
                "rule": "table.rows.min",
                "limit": table.min_rows,
                "actual": valid_rows,
                "reason": f"{valid_rows} rows pass the column rules{read}, fewer than the minimum {table.min_rows}",
            }
        )
    if table.max_rows is not None and valid_rows > table.max_rows:
        failures.append(
            {
                "rule": "table.rows.max",
                "limit": table.max_rows,
                "actual": valid_rows,
                "reason": f"{valid_rows} rows pass the column rules{read}, more than the maximum {table.max_rows}",
            }
        )
    return failures
