"""Run search: a filter expression and an ordering, translated to indexed SQL.

Filter grammar (keywords in any case)::

    expr       := term (OR term)*
    term       := factor (AND factor)*
    factor     := NOT factor | '(' expr ')' | comparison
    comparison := field op value | field [NOT] IN '(' value, ... ')' | field IS [NOT] NULL
    field      := metrics.KEY | params.KEY | tags.KEY | attributes.NAME | NAME
    op         := = | == | != | <> | < | <= | > | >= | [NOT] LIKE | [NOT] ILIKE

``KEY`` is letters, digits and ``_ - . / :``, or any text in backticks or double quotes
(``metrics.`f1 score```). Attributes: ``status``, ``name``, ``run_id``, ``experiment``, ``created_by``,
``parent_run_id``, ``started_at``, ``ended_at`` (times as ISO text). Values: numbers or quoted text.
``metrics.KEY`` is the metric's latest value (highest step) and compares numerically; ``params.KEY``
compares as text, or numerically against a number with ``<``/``>``; ``metrics.auc IS NULL`` means never
logged.

Each condition on a metric, parameter or tag becomes an ``EXISTS`` on its table's primary key (run, key),
and ordering by a metric joins the ``(key, value)`` index of ``run_latest_metrics``, so a search over
100,000 runs reads only the rows it returns.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import aliased

from conveyor.errors import BadInput
from conveyor.store._schema import (
    ExperimentRow,
    RunLatestMetricRow,
    RunParamRow,
    RunRow,
    RunTagRow,
)

__all__ = ["ATTRIBUTES", "Ordering", "PageToken", "parse_filter", "parse_order_by"]

ATTRIBUTES: dict[str, Any] = {
    "status": RunRow.status,
    "name": RunRow.name,
    "run_id": RunRow.id,
    "id": RunRow.id,
    "experiment": ExperimentRow.name,
    "created_by": RunRow.created_by,
    "user": RunRow.created_by,
    "parent_run_id": RunRow.parent_run_id,
    "started_at": RunRow.started_at,
    "start_time": RunRow.started_at,
    "ended_at": RunRow.ended_at,
    "end_time": RunRow.ended_at,
}
_TIMES = {"started_at", "start_time", "ended_at", "end_time"}
_PREFIXES = {
    "metrics": "metric",
    "metric": "metric",
    "params": "param",
    "param": "param",
    "parameters": "param",
    "tags": "tag",
    "tag": "tag",
    "attributes": "attribute",
    "attribute": "attribute",
    "attr": "attribute",
    "run": "attribute",
}
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<number>[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?))(?![\w.])
      | (?P<string>'(?:[^'\\]|\\.|'')*')
      | (?P<quoted>"(?:[^"\\]|\\.)*"|`[^`]*`)
      | (?P<op>==|!=|<>|<=|>=|=|<|>|\(|\)|,)
      | (?P<word>[A-Za-z_][\w\-/:]*(?:\.(?:[\w\-/:]+|"(?:[^"\\]|\\.)*"|`[^`]*`))*)
    )""",
    re.VERBOSE,
)
_COMPARE = {"=", "==", "!=", "<>", "<", "<=", ">", ">="}


@dataclass(frozen=True)
class _Field:
    kind: str  # metric | param | tag | attribute
    key: str

    def __str__(self) -> str:
        return f"{self.kind}s.{self.key}" if self.kind != "attribute" else self.key


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    value: Any
    at: int


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    at = 0
    while at < len(text):
        if text[at:].strip() == "":
            break
        match = _TOKEN.match(text, at)
        if match is None or match.end() == at:
            snippet = text[at:].strip()[:20]
            where = at + len(text[at:]) - len(text[at:].lstrip()) + 1
            raise BadInput(f"Cannot read the filter at character {where}: {snippet!r}.", filter=text)
        kind = match.lastgroup or ""
        raw = match.group(kind)
        start = match.start(kind)
        if kind == "number":
            tokens.append(_Token("value", raw, float(raw) if re.search(r"[.eE]", raw) else int(raw), start))
        elif kind == "string":
            tokens.append(_Token("value", raw, raw[1:-1].replace("''", "'").replace("\\'", "'"), start))
        elif kind == "quoted":
            tokens.append(_Token("quoted", raw, raw[1:-1], start))
        elif kind == "op":
            tokens.append(_Token("op", raw, raw, start))
        else:
            tokens.append(_Token("word", raw, raw, start))
        at = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.pos = 0
        #: fields with a condition every matching run must meet (not under OR or NOT, not IS NULL)
        self.required: set[_Field] = set()
        self._optional = 0

    # helpers
    def peek(self, offset: int = 0) -> _Token | None:
        index = self.pos + offset
        return self.tokens[index] if index < len(self.tokens) else None

    def keyword(self, *words: str) -> bool:
        token = self.peek()
        if token is not None and token.kind == "word" and token.text.lower() in words:
            self.pos += 1
            return True
        return False

    def expect_op(self, op: str) -> None:
        token = self.peek()
        if token is None or token.kind != "op" or token.text != op:
            self.fail(f"expected {op!r}", token)
        self.pos += 1

    def fail(self, what: str, token: _Token | None) -> None:
        where = "at the end" if token is None else f"at character {token.at + 1} ({token.text!r})"
        raise BadInput(
            f"Cannot read the filter {self.text!r}: {what} {where}. Example: "
            "\"metrics.auc > 0.8 and params.learner = 'lgbm'\".",
            filter=self.text,
        )

    # grammar
    def parse(self) -> sa.ColumnElement[bool]:
        if not self.tokens:
            return sa.true()
        expr = self.expr()
        if self.peek() is not None:
            self.fail("expected AND, OR or the end", self.peek())
        return expr

    def expr(self) -> sa.ColumnElement[bool]:
        before = set(self.required)
        parts = [self.term()]
        while self.keyword("or"):
            self._optional += 1
            parts.append(self.term())
            self._optional -= 1
        if len(parts) > 1:
            self.required = before  # a condition under OR is not required of every run
        return parts[0] if len(parts) == 1 else sa.or_(*parts)

    def term(self) -> sa.ColumnElement[bool]:
        parts = [self.factor()]
        while self.keyword("and"):
            parts.append(self.factor())
        return parts[0] if len(parts) == 1 else sa.and_(*parts)

    def factor(self) -> sa.ColumnElement[bool]:
        if self.keyword("not"):
            self._optional += 1
            inner = self.factor()
            self._optional -= 1
            return sa.not_(inner)
        token = self.peek()
        if token is not None and token.kind == "op" and token.text == "(":
            self.pos += 1
            inner = self.expr()
            self.expect_op(")")
            return inner
        return self.comparison()

    def comparison(self) -> sa.ColumnElement[bool]:
        token = self.peek()
        if token is None or token.kind != "word":
            self.fail("expected a field such as metrics.auc, params.lr, tags.team or status", token)
        assert token is not None
        self.pos += 1
        field = parse_field(token.text, self.text)
        if self._optional == 0 and not ((t := self.peek()) is not None and t.kind == "word" and t.text.lower() == "is"):
            self.required.add(field)
        if self.keyword("is"):
            negate = self.keyword("not")
            if not self.keyword("null"):
                self.fail("expected NULL", self.peek())
            return _null_check(field, negate)
        negate = self.keyword("not")
        if self.keyword("in"):
            self.expect_op("(")
            values = [self.value()]
            while (t := self.peek()) is not None and t.kind == "op" and t.text == ",":
                self.pos += 1
                values.append(self.value())
            self.expect_op(")")
            return _condition(field, "not in" if negate else "in", values, self.text)
        if self.keyword("like", "ilike"):
            op = self.tokens[self.pos - 1].text.lower()
            return _condition(field, f"not {op}" if negate else op, self.value(), self.text)
        if negate:
            self.fail("expected IN, LIKE or ILIKE after NOT", self.peek())
        op_token = self.peek()
        if op_token is None or op_token.kind != "op" or op_token.text not in _COMPARE:
            self.fail("expected a comparison (=, !=, <, <=, >, >=, LIKE, IN, IS NULL)", op_token)
        assert op_token is not None
        self.pos += 1
        return _condition(field, op_token.text, self.value(), self.text)

    def value(self) -> Any:
        token = self.peek()
        if token is None or token.kind not in ("value", "quoted"):
            self.fail("expected a number or a quoted value", token)
        assert token is not None
        self.pos += 1
        return token.value


def parse_field(text: str, context: str) -> _Field:
    """``metrics.auc`` → _Field("metric", "auc"); a bare ``status`` is an attribute."""
    prefix, dot, rest = text.partition(".")
    if dot and prefix.lower() in _PREFIXES:
        kind = _PREFIXES[prefix.lower()]
        key = rest[1:-1] if rest[:1] in ('"', "`") and rest[-1:] == rest[:1] else rest
        if not key:
            raise BadInput(f"{text!r} names no key; write e.g. {prefix}.auc.", filter=context)
    elif not dot:
        kind, key = "attribute", text
    else:
        raise BadInput(
            f"Unknown field {text!r} in {context!r}: fields start with metrics., params., tags. or attributes.",
            filter=context,
        )
    if kind == "attribute":
        key = key.lower()
        if key not in ATTRIBUTES:
            from conveyor.errors import did_you_mean

            raise BadInput(
                f"Unknown run attribute {key!r}.{did_you_mean(key, ATTRIBUTES)} "
                f"Known: {', '.join(sorted(ATTRIBUTES))}; "
                "metrics, parameters and tags are written metrics.KEY, params.KEY, tags.KEY.",
                filter=context,
            )
    return _Field(kind, key)


_TABLES: dict[str, Any] = {"metric": RunLatestMetricRow, "param": RunParamRow, "tag": RunTagRow}


def _null_check(field: _Field, negate: bool) -> sa.ColumnElement[bool]:
    if field.kind == "attribute":
        column = ATTRIBUTES[field.key]
        check: sa.ColumnElement[bool] = column.is_not(None) if negate else column.is_(None)
        return check
    present = _keyed_exists(field, lambda _column: None)
    return present if negate else sa.not_(present)


def _keyed_exists(field: _Field, build: Any) -> sa.ColumnElement[bool]:
    table = aliased(_TABLES[field.kind])
    where = [table.run_id == RunRow.id, table.key == field.key]
    condition = build(table.value)
    if condition is not None:
        where.append(condition)
    return sa.exists().where(*where)


def _condition(field: _Field, op: str, value: Any, context: str) -> sa.ColumnElement[bool]:
    if field.kind == "attribute":
        column = ATTRIBUTES[field.key]
        return _compare(column, op, _attribute_value(field.key, value, context), field, context)
    if field.kind == "metric":
        values = value if isinstance(value, list) else [value]
        if op in ("like", "ilike", "not like", "not ilike") or any(isinstance(v, str | bool) for v in values):
            raise BadInput(
                f"{field} is a number; compare it with a number (e.g. {field} > 0.8), not {value!r} with {op}.",
                filter=context,
            )
        return _keyed_exists(field, lambda column: _compare(column, op, value, field, context))

    # params and tags are text; a number on the right of <, <=, >, >= compares numerically
    def build(column: Any) -> sa.ColumnElement[bool]:
        if op in ("<", "<=", ">", ">=") and isinstance(value, int | float):
            return _compare(sa.cast(column, sa.Float), op, float(value), field, context)
        return _compare(column, op, _as_text(value), field, context)

    return _keyed_exists(field, build)


def _as_text(value: Any) -> Any:
    if isinstance(value, list):
        return [_as_text(v) for v in value]
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _attribute_value(key: str, value: Any, context: str) -> Any:
    if key not in _TIMES:
        return _as_text(value)
    values = value if isinstance(value, list) else [value]
    parsed = []
    for v in values:
        try:
            when = datetime.fromtimestamp(v / 1000, UTC) if isinstance(v, int | float) else datetime.fromisoformat(v)
        except (TypeError, ValueError) as exc:
            raise BadInput(
                f"{key} compares with a time such as '2026-11-01' or '2026-11-01T12:00:00+00:00', not {v!r}.",
                filter=context,
            ) from exc
        parsed.append(when if when.tzinfo else when.replace(tzinfo=UTC))
    return parsed if isinstance(value, list) else parsed[0]


def _compare(column: Any, op: str, value: Any, field: _Field, context: str) -> sa.ColumnElement[bool]:
    if op in ("in", "not in"):
        if not isinstance(value, list):
            value = [value]
        membership: sa.ColumnElement[bool] = column.in_(value) if op == "in" else column.not_in(value)
        return membership
    if isinstance(value, list):
        raise BadInput(f"Use IN (...) to compare {field} with several values.", filter=context)
    if op in ("like", "not like", "ilike", "not ilike"):
        if not isinstance(value, str):
            raise BadInput(f"LIKE needs a quoted pattern such as '%lgbm%', not {value!r}.", filter=context)
        expr: sa.ColumnElement[bool] = column.ilike(value) if "ilike" in op else column.like(value)
        return sa.not_(expr) if op.startswith("not") else expr
    comparisons: dict[str, sa.ColumnElement[bool]] = {
        "=": column == value,
        "==": column == value,
        "!=": column != value,
        "<>": column != value,
        "<": column < value,
        "<=": column <= value,
        ">": column > value,
        ">=": column >= value,
    }
    return comparisons[op]


def parse_filter(text: str | None) -> tuple[sa.ColumnElement[bool], set[str]]:
    """The SQL condition on ``runs`` (joined to ``experiments``) for a filter expression, and the metric
    keys every matching run must have (ordering by one of them can then walk the metric index).

    Raises:
        BadInput: the expression cannot be read; the message says where and shows an example.
    """
    parser = _Parser(text or "")
    condition = parser.parse()
    return condition, {f.key for f in parser.required if f.kind == "metric"}


@dataclass(frozen=True)
class Ordering:
    field: _Field
    descending: bool


def parse_order_by(items: list[str] | str | None) -> list[Ordering]:
    """``["metrics.auc desc", "started_at"]`` (or one comma-separated text) → orderings.

    Raises:
        BadInput: an unknown field or direction.
    """
    if items is None:
        return []
    text = ", ".join([items] if isinstance(items, str) else items)
    example = "write e.g. 'metrics.auc desc, started_at'"
    try:
        tokens = _tokenize(text)
    except BadInput as exc:
        raise BadInput(f"Cannot read the ordering {text!r}: {example}.") from exc
    result = []
    at = 0
    while at < len(tokens):
        token = tokens[at]
        if token.kind != "word":
            raise BadInput(f"Cannot read the ordering {text!r} at {token.text!r}: {example}.")
        field = parse_field(token.text, text)
        at += 1
        descending = False
        if at < len(tokens) and tokens[at].kind == "word":
            direction = tokens[at].text.lower()
            if direction not in ("asc", "desc"):
                raise BadInput(f"Cannot read the ordering {text!r}: {direction!r} is not asc or desc; {example}.")
            descending = direction == "desc"
            at += 1
        if at < len(tokens):
            if tokens[at].kind != "op" or tokens[at].text != ",":
                raise BadInput(f"Cannot read the ordering {text!r} at {tokens[at].text!r}: {example}.")
            at += 1
        result.append(Ordering(field, descending))
    return result


def order_clauses(
    query: sa.Select[Any], orderings: list[Ordering], required_metrics: set[str] | None = None
) -> sa.Select[Any]:
    """Apply orderings (runs missing a metric/param/tag sort last), then a stable tie-breaker.

    Ordering by a metric the filter requires joins it (every run has it), so the database can walk the
    ``(key, value)`` index in order and stop after one page instead of sorting every run.
    """
    clauses: list[Any] = []
    for index, ordering in enumerate(orderings):
        if ordering.field.kind == "attribute":
            column: Any = ATTRIBUTES[ordering.field.key]
        else:
            table = aliased(_TABLES[ordering.field.kind], name=f"order_{index}")
            on = sa.and_(table.run_id == RunRow.id, table.key == ordering.field.key)
            if ordering.field.kind == "metric" and ordering.field.key in (required_metrics or set()):
                query = query.join(table, on)
                clauses.append(table.value.desc() if ordering.descending else table.value.asc())
                continue
            query = query.outerjoin(table, on)
            column = table.value
        if column is not RunRow.id and column is not RunRow.started_at:
            clauses.append(column.is_(None))  # missing values last, in both directions and on every backend
        clauses.append(column.desc() if ordering.descending else column.asc())
    if not orderings:
        clauses += [RunRow.started_at.desc(), RunRow.id.desc()]
    else:
        clauses.append(RunRow.id.desc())
    return query.order_by(*clauses)


class PageToken:
    """Opaque page tokens: the offset of the next page, bound to the query it came from."""

    @staticmethod
    def fingerprint(*parts: Any) -> str:
        return hashlib.sha256(orjson.dumps(parts, default=str)).hexdigest()[:16]

    @staticmethod
    def encode(offset: int, fingerprint: str) -> str:
        return base64.urlsafe_b64encode(orjson.dumps({"o": offset, "q": fingerprint})).decode().rstrip("=")

    @staticmethod
    def decode(token: str | None, fingerprint: str) -> int:
        """The offset in ``token``.

        Raises:
            BadInput: the token is malformed or belongs to another search.
        """
        if not token:
            return 0
        try:
            data = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            offset, query = int(data["o"]), str(data["q"])
        except (ValueError, KeyError, TypeError) as exc:
            raise BadInput(f"The page token {token!r} is not one this server gave out.") from exc
        if query != fingerprint or offset < 0:
            raise BadInput("That page token belongs to another search; repeat the same filter and ordering.")
        return offset
