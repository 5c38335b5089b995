"""Just enough GraphQL for a simulator: the root fields of one operation, their arguments (literals
or ``$variables``) and nested selections, so a response carries exactly the fields a client asked for.
Fragments, aliases and directives are out of scope; a query using them is rejected as a syntax error."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

_TOKEN = re.compile(r'\s*(?:(\$?[A-Za-z_]\w*)|("(?:[^"\\]|\\.)*")|(-?\d+(?:\.\d+)?)|([{}():,!\[\]=])|#[^\n]*)')


class GraphQLSyntaxError(ValueError):
    pass


@dataclass
class Selection:
    name: str
    args: dict[str, Any] = field(default_factory=dict)
    fields: dict[str, Selection] | None = None  # None: a leaf


def _tokens(query: str) -> list[str]:
    out, pos = [], 0
    query = query.rstrip()
    while pos < len(query):
        m = _TOKEN.match(query, pos)
        if m is None or m.end() == pos:
            raise GraphQLSyntaxError(f"Syntax Error: Unexpected character {query[pos]!r}")
        pos = m.end()
        token = next((g for g in m.groups() if g is not None), None)
        if token is not None:
            out.append(token)
    return out


class _Parser:
    def __init__(self, tokens: list[str], variables: dict[str, Any]):
        self.t, self.i, self.variables = tokens, 0, variables

    def peek(self) -> str | None:
        return self.t[self.i] if self.i < len(self.t) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None or (expected is not None and token != expected):
            raise GraphQLSyntaxError(f"Syntax Error: Expected {expected or 'a token'}, found {token or '<EOF>'}")
        self.i += 1
        return token

    def document(self) -> dict[str, Selection]:
        if self.peek() in ("query", "mutation"):
            self.take()
            if self.peek() not in ("(", "{"):
                self.take()  # the operation name
            if self.peek() == "(":  # variable definitions: their types do not matter here
                depth = 0
                while True:
                    token = self.take()
                    depth += token == "("
                    depth -= token == ")"
                    if depth == 0:
                        break
        fields = self.selection_set()
        if self.peek() is not None:
            raise GraphQLSyntaxError(f"Syntax Error: Unexpected {self.peek()}")
        return fields

    def selection_set(self) -> dict[str, Selection]:
        self.take("{")
        fields: dict[str, Selection] = {}
        while self.peek() != "}":
            name = self.take()
            if not re.fullmatch(r"[A-Za-z_]\w*", name):
                raise GraphQLSyntaxError(f"Syntax Error: Unexpected {name}")
            node = Selection(name)
            if self.peek() == "(":
                node.args = self.arguments()
            if self.peek() == "{":
                node.fields = self.selection_set()
            fields[name] = node
        self.take("}")
        return fields

    def arguments(self) -> dict[str, Any]:
        self.take("(")
        args: dict[str, Any] = {}
        while self.peek() != ")":
            name = self.take()
            self.take(":")
            args[name] = self.value()
            if self.peek() == ",":
                self.take()
        self.take(")")
        return args

    def value(self) -> Any:
        token = self.take()
        if token.startswith("$"):
            return self.variables.get(token[1:])
        if token.startswith('"'):
            return json.loads(token)
        if token in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[token]
        if re.fullmatch(r"-?\d+(\.\d+)?", token):
            return float(token) if "." in token else int(token)
        if token == "[":
            items = []
            while self.peek() != "]":
                items.append(self.value())
                if self.peek() == ",":
                    self.take()
            self.take("]")
            return items
        return token  # an enum value


def parse(query: str, variables: dict[str, Any] | None) -> dict[str, Selection]:
    """The root fields of the operation, with arguments resolved against ``variables``."""
    return _Parser(_tokens(query), variables or {}).document()


def project(value: Any, fields: dict[str, Selection] | None, type_name: str) -> Any:
    """Keep the selected fields of a record (recursively); unknown fields raise KeyError."""
    if fields is None or value is None:
        return value
    if isinstance(value, list):
        return [project(v, fields, type_name) for v in value]
    out = {}
    for name, node in fields.items():
        if name not in value:
            raise KeyError(f'Cannot query field "{name}" on type "{type_name}".')
        out[name] = project(value[name], node.fields, type_name)
    return out
