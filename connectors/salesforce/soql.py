"""SOQL text: quoting values for the connector, and a small parser for the sandbox.

The connector only ever builds queries from validated field names and quoted literals
(`quote`, `datetime_literal`). The sandbox parses the subset of SOQL the connector sends
(plus a little more: LIMIT, NOT IN, !=, null) with a tokenizer, never `eval`.

Escapes follow "Quoted String Escape Sequences" in the SOQL and SOSL Reference:
https://developer.salesforce.com/docs/atlas.en-us.soql_sosl.meta/soql_sosl/sforce_api_calls_soql_select_quotedstringescapes.htm
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

# API names: letters, digits and underscores (custom fields end in __c).
FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,79}$")
SALESFORCE_ID = re.compile(r"^[A-Za-z0-9]{15}([A-Za-z0-9]{3})?$")

_ESCAPES = {
    "\\": "\\\\",
    "'": "\\'",
    '"': '\\"',
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
}
_UNESCAPES = {
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "b": "\b",
    "f": "\f",
    '"': '"',
    "'": "'",
    "\\": "\\",
}


def quote(value: str) -> str:
    """A SOQL string literal for `value`: reserved characters are backslash-escaped."""
    return "'" + "".join(_ESCAPES.get(char, char) for char in value) + "'"


def datetime_literal(moment: datetime) -> str:
    """A SOQL dateTime literal (unquoted, UTC), e.g. 2024-01-01T00:00:00.000Z."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def is_field_name(name: str) -> bool:
    return bool(FIELD_NAME.match(name))


# ---------------------------------------------------------------- parsing (sandbox)


class SoqlError(ValueError):
    """The query is not valid SOQL (or not in the subset the sandbox understands)."""


@dataclass(frozen=True)
class Token:
    kind: str  # ident, string, number, datetime, date, op, punct
    value: Any
    text: str


@dataclass
class Condition:
    field: str
    operator: str  # =, !=, <, <=, >, >=, IN, NOT IN
    values: list[Any]


@dataclass
class Query:
    fields: list[str]
    sobject: str
    conditions: list[Condition] = field(default_factory=list)
    order_by: list[tuple[str, bool]] = field(default_factory=list)  # (field, descending)
    limit: int | None = None


_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,3})?(Z|[+-]\d{2}:?\d{2})")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}(?![\dT])")
_NUMBER = re.compile(r"-?\d+(\.\d+)?")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_OPERATORS = ("<=", ">=", "!=", "<>", "=", "<", ">")


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    while position < len(text):
        char = text[position]
        if char.isspace():
            position += 1
            continue
        if char == "'":
            string, position = _read_string(text, position)
            tokens.append(Token("string", string, "'...'"))
            continue
        if char in ",()":
            tokens.append(Token("punct", char, char))
            position += 1
            continue
        operator = next((op for op in _OPERATORS if text.startswith(op, position)), None)
        if operator is not None:
            tokens.append(Token("op", "!=" if operator == "<>" else operator, operator))
            position += len(operator)
            continue
        match = _DATETIME.match(text, position) or _DATE.match(text, position)
        if match:
            literal = match.group(0)
            try:
                moment: date = (
                    datetime.fromisoformat(literal)
                    if "T" in literal
                    else date.fromisoformat(literal)
                )
            except ValueError:
                raise SoqlError(f"invalid date or dateTime literal {literal}") from None
            tokens.append(Token("datetime" if "T" in literal else "date", moment, literal))
            position = match.end()
            continue
        match = _NUMBER.match(text, position)
        if match:
            number = float(match.group(0)) if "." in match.group(0) else int(match.group(0))
            tokens.append(Token("number", number, match.group(0)))
            position = match.end()
            continue
        match = _IDENT.match(text, position)
        if match:
            tokens.append(Token("ident", match.group(0), match.group(0)))
            position = match.end()
            continue
        raise SoqlError(f"unexpected character at position {position}")
    return tokens


def _read_string(text: str, start: int) -> tuple[str, int]:
    chars: list[str] = []
    position = start + 1
    while position < len(text):
        char = text[position]
        if char == "'":
            return "".join(chars), position + 1
        if char == "\\":
            if position + 1 >= len(text):
                break
            escaped = text[position + 1]
            if escaped in ("u", "U"):
                digits = text[position + 2 : position + 6]
                if len(digits) != 4 or not all(c in "0123456789abcdefABCDEF" for c in digits):
                    raise SoqlError("invalid unicode escape in string literal")
                chars.append(chr(int(digits, 16)))
                position += 6
                continue
            lowered = escaped if escaped in "\"'\\" else escaped.lower()
            if lowered not in _UNESCAPES:
                raise SoqlError(
                    "invalid escape sequence in string literal; only \\n \\r \\t \\b \\f "
                    "\\\" \\' \\\\ and \\uXXXX are allowed"
                )
            chars.append(_UNESCAPES[lowered])
            position += 2
            continue
        chars.append(char)
        position += 1
    raise SoqlError("unterminated string literal")


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.position = 0

    def peek(self) -> Token | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def next(self) -> Token:
        token = self.peek()
        if token is None:
            raise SoqlError("unexpected end of query")
        self.position += 1
        return token

    def keyword(self, *words: str) -> bool:
        """Consume the keyword sequence if it is next."""
        for offset, word in enumerate(words):
            index = self.position + offset
            if index >= len(self.tokens):
                return False
            token = self.tokens[index]
            if token.kind != "ident" or token.value.upper() != word:
                return False
        self.position += len(words)
        return True

    def expect_keyword(self, word: str) -> None:
        if not self.keyword(word):
            raise SoqlError(f"expected {word}")

    def expect_punct(self, char: str) -> None:
        token = self.next()
        if token.kind != "punct" or token.value != char:
            raise SoqlError(f"expected '{char}'")

    def identifier(self) -> str:
        token = self.next()
        if token.kind != "ident":
            raise SoqlError(f"expected a field name, found {token.text!r}")
        return str(token.value)

    def literal(self) -> Any:
        token = self.next()
        if token.kind in ("string", "number", "datetime", "date"):
            return token.value
        if token.kind == "ident" and token.value.lower() in ("null", "true", "false"):
            return {"null": None, "true": True, "false": False}[token.value.lower()]
        raise SoqlError(f"expected a value, found {token.text!r}")

    def parse(self) -> Query:
        self.expect_keyword("SELECT")
        fields = [self.identifier()]
        while self._punct(","):
            fields.append(self.identifier())
        self.expect_keyword("FROM")
        query = Query(fields=fields, sobject=self.identifier())
        if self.keyword("WHERE"):
            query.conditions.append(self.condition())
            while self.keyword("AND"):
                query.conditions.append(self.condition())
        if self.keyword("ORDER", "BY"):
            query.order_by.append(self.order_item())
            while self._punct(","):
                query.order_by.append(self.order_item())
        if self.keyword("LIMIT"):
            token = self.next()
            if token.kind != "number" or not isinstance(token.value, int) or token.value < 0:
                raise SoqlError("LIMIT needs a non-negative integer")
            query.limit = token.value
        if self.peek() is not None:
            raise SoqlError(f"unexpected token {self.next().text!r}")
        return query

    def _punct(self, char: str) -> bool:
        token = self.peek()
        if token is not None and token.kind == "punct" and token.value == char:
            self.position += 1
            return True
        return False

    def condition(self) -> Condition:
        name = self.identifier()
        if self.keyword("NOT", "IN"):
            return Condition(name, "NOT IN", self.value_list())
        if self.keyword("IN"):
            return Condition(name, "IN", self.value_list())
        token = self.next()
        if token.kind != "op":
            raise SoqlError(f"expected a comparison operator after {name}")
        return Condition(name, str(token.value), [self.literal()])

    def value_list(self) -> list[Any]:
        self.expect_punct("(")
        values = [self.literal()]
        while self._punct(","):
            values.append(self.literal())
        self.expect_punct(")")
        return values

    def order_item(self) -> tuple[str, bool]:
        name = self.identifier()
        descending = False
        if self.keyword("DESC"):
            descending = True
        else:
            self.keyword("ASC")
        return name, descending


def parse(text: str) -> Query:
    return _Parser(tokenize(text)).parse()
