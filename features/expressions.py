"""A small, safe expression language for derived event columns (never `eval`).

    total     = "Quantity * UnitPrice"
    is_cancel = 'InvoiceNo starts with "C"'
    refund    = "Quantity < 0 and not (InvoiceNo starts with \"C\")"

Vocabulary: numbers, "strings", column names (`back-quoted` when they hold spaces), + - * /,
unary minus, parentheses, == != < <= > >=, `starts with`, `ends with`, `contains`, `is missing`,
and / or / not, and the functions abs(x) and log1p(x). Division by zero gives a missing value, and
so does a text operator on a missing text. A comparison gives 1 or 0 (so its mean is a share). Text
is parsed into a tree here; the tree is compiled into a Polars expression by `to_polars`; nothing is
ever executed as Python.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Polars is imported only when expressions are compiled (the config loads without it)
    import polars as pl

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<number>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<quoted>`[^`]+`)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|[-+*/()<>,])
""",
    re.VERBOSE,
)
KEYWORDS = {"and", "or", "not", "starts", "ends", "with", "contains", "is", "missing"}
FUNCTIONS = ("abs", "log1p")
COMPARISONS = ("==", "!=", "<", "<=", ">", ">=")
# Bounds that keep parsing and compiling (both recursive) far from Python's recursion limit.
MAX_TOKENS = 500
MAX_DEPTH = 40


class ExpressionError(ValueError):
    """The expression text breaks the grammar; the message shows where."""


@dataclass(frozen=True)
class Node:
    """One node of the parsed tree: op is 'num', 'str', 'col', a function, or an operator."""

    op: str
    args: tuple = ()
    value: object = None


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    pos: int


def tokenize(text: str) -> list[Token]:
    tokens, pos = [], 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise ExpressionError(f"unexpected character {text[pos]!r} at position {pos} in {text!r}")
        kind = match.lastgroup
        if kind != "space":
            word = match.group()
            tokens.append(Token("kw" if kind == "name" and word in KEYWORDS else kind, word, pos))
        pos = match.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


class _Parser:
    """Recursive descent, one method per precedence level (lowest first)."""

    def __init__(self, text: str):
        self.text, self.tokens, self.i, self.depth = text, tokenize(text), 0, 0
        if len(self.tokens) > MAX_TOKENS:
            raise ExpressionError(
                f"expression of {len(self.tokens) - 1} tokens is longer than the {MAX_TOKENS - 1} allowed: "
                f"{self.text[:60]!r}...; derive it in steps (one derived column can use another)"
            )

    def nested(self, parse_inner) -> Node:
        """Parse a nested part (parentheses, a function's argument, `not`, unary minus) within MAX_DEPTH."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self.fail(f"nesting deeper than {MAX_DEPTH} levels (parentheses, not, unary minus)")
        node = parse_inner()
        self.depth -= 1
        return node

    def peek(self) -> Token:
        return self.tokens[self.i]

    def take(self, text: str | None = None) -> Token:
        token = self.peek()
        if text is not None and token.text != text:
            self.fail(f"expected {text!r}")
        self.i += 1
        return token

    def accept(self, *texts: str) -> str | None:
        if self.peek().text in texts and self.peek().kind in ("op", "kw"):
            return self.take().text
        return None

    def fail(self, what: str):
        token = self.peek()
        found = repr(token.text) if token.kind != "end" else "the end"
        shown = self.text if len(self.text) <= 80 else self.text[:77] + "..."
        raise ExpressionError(f"{what} at position {token.pos} of {shown!r}, found {found}")

    def parse(self) -> Node:
        node = self.or_()
        if self.peek().kind != "end":
            self.fail("expected an operator or the end")
        return node

    def or_(self) -> Node:
        node = self.and_()
        while self.accept("or"):
            node = Node("or", (node, self.and_()))
        return node

    def and_(self) -> Node:
        node = self.not_()
        while self.accept("and"):
            node = Node("and", (node, self.not_()))
        return node

    def not_(self) -> Node:
        if self.accept("not"):
            return Node("not", (self.nested(self.not_),))
        return self.comparison()

    def comparison(self) -> Node:
        left = self.sum_()
        op = self.accept(*COMPARISONS)
        if op:
            return Node(op, (left, self.sum_()))
        for word in ("starts", "ends"):
            if self.accept(word):
                self.take("with")
                return Node(f"{word}_with", (left, self.string()))
        if self.accept("contains"):
            return Node("contains", (left, self.string()))
        if self.accept("is"):
            self.take("missing")
            return Node("is_missing", (left,))
        return left

    def string(self) -> Node:
        if self.peek().kind != "string":
            self.fail("expected a quoted text")
        raw = self.take().text
        return Node("str", value=re.sub(r"\\(.)", r"\1", raw[1:-1]))

    def sum_(self) -> Node:
        node = self.product()
        while op := self.accept("+", "-"):
            node = Node(op, (node, self.product()))
        return node

    def product(self) -> Node:
        node = self.unary()
        while op := self.accept("*", "/"):
            node = Node(op, (node, self.unary()))
        return node

    def unary(self) -> Node:
        if self.accept("-"):
            return Node("neg", (self.nested(self.unary),))
        return self.atom()

    def atom(self) -> Node:
        token = self.peek()
        if token.kind == "number":
            self.take()
            return Node("num", value=float(token.text))
        if token.kind == "string":
            return self.string()
        if token.kind == "quoted":
            self.take()
            return Node("col", value=token.text[1:-1])
        if token.kind == "name":
            self.take()
            if self.peek().text == "(":
                if token.text not in FUNCTIONS:
                    raise ExpressionError(
                        f"unknown function {token.text!r} at position {token.pos} of "
                        f"{self.text!r}; available: {', '.join(FUNCTIONS)}"
                    )
                self.take("(")
                arg = self.nested(self.or_)
                self.take(")")
                return Node(token.text, (arg,))
            return Node("col", value=token.text)
        if self.accept("("):
            node = self.nested(self.or_)
            self.take(")")
            return node
        self.fail("expected a number, a text, a column or '('")


def parse(text: str) -> Node:
    """Parse expression text into a tree; ExpressionError names the position of a mistake."""
    return _Parser(text).parse()


def columns_of(node: Node) -> list[str]:
    """The column names an expression reads, in order of first use."""
    if node.op == "col":
        return [str(node.value)]
    seen: list[str] = []
    for arg in node.args:
        seen += [c for c in columns_of(arg) if c not in seen]
    return seen


_ARITHMETIC = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}
_COMPARE = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}
_TEXT = {
    "starts_with": lambda a, s: a.str.starts_with(s),
    "ends_with": lambda a, s: a.str.ends_with(s),
    "contains": lambda a, s: a.str.contains(s, literal=True),
}


def to_polars(node: Node) -> pl.Expr:
    """Compile a parsed tree into a Polars expression (booleans stay booleans here)."""
    import polars as pl

    op, args = node.op, node.args
    if op == "num":
        return pl.lit(node.value, dtype=pl.Float64)
    if op == "str":
        return pl.lit(node.value, dtype=pl.String)
    if op == "col":
        return pl.col(str(node.value))
    if op in _TEXT:
        return _TEXT[op](to_polars(args[0]).cast(pl.String), str(args[1].value))
    compiled = [to_polars(a) for a in args]
    if op in _ARITHMETIC:
        return _ARITHMETIC[op](*compiled)
    if op == "/":
        num, den = compiled
        return pl.when(den != 0).then(num / den).otherwise(None)
    if op in _COMPARE:
        return _COMPARE[op](*compiled)
    return _unary(op, compiled)


def _unary(op: str, compiled: list[pl.Expr]) -> pl.Expr:
    import polars as pl

    (arg, *rest) = compiled
    if op == "and":
        return arg & rest[0]
    if op == "or":
        return arg | rest[0]
    if op == "not":
        return ~arg
    if op == "neg":
        return -arg
    if op == "is_missing":
        return arg.is_null()
    if op == "abs":
        return arg.abs()
    if op == "log1p":
        return pl.when(arg > -1).then(arg.log1p()).otherwise(None)
    raise ExpressionError(f"unknown operator {op!r}")
