"""`-k EXPR`: pytest's keyword expressions over case names and tags. Pure.

`EXPR` is words joined by `and`, `or`, `not` and parentheses; a word is
true for a case when it is found, ignoring case, in the case's name or is
one of its tags (`-k "login and not slow"`). The grammar is pytest's, so a
pytest user's habits carry over; an expression is read here into a tree of
tuples and never evaluated as Python.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

# The characters pytest allows in a word, plus `#` (a repeated test's
# `name#2`) and `@`.
_TOKEN = re.compile(r"\s*(?:(\()|(\))|([\w:+\-.\[\]\\/#@]+)|(\S))")
_OPERATORS = {"and", "or", "not"}


class KeywordError(ValueError):
    """An expression that cannot be read; the message names the column."""


@dataclass(frozen=True)
class Word:
    text: str


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class And:
    left: Node
    right: Node


@dataclass(frozen=True)
class Or:
    left: Node
    right: Node


Node = Word | Not | And | Or


def _tokens(expression: str) -> list[tuple[str, int]]:
    found: list[tuple[str, int]] = []
    position = 0
    while position < len(expression):
        match = _TOKEN.match(expression, position)
        if match is None:  # only blanks were left
            break
        if match.group(4) is not None:
            raise KeywordError(
                f"-k {expression!r}: unexpected {match.group(4)!r} at column {match.start(4) + 1}"
            )
        index = next(i for i in (1, 2, 3) if match.group(i) is not None)
        found.append((match.group(index), match.start(index) + 1))
        position = match.end()
    return found


class _Reader:
    def __init__(self, expression: str) -> None:
        self.expression = expression
        self.tokens = _tokens(expression)
        self.at = 0

    def error(self, expected: str) -> KeywordError:
        if self.at < len(self.tokens):
            text, column = self.tokens[self.at]
            return KeywordError(
                f"-k {self.expression!r}: expected {expected} at column {column}, found {text!r}"
            )
        return KeywordError(f"-k {self.expression!r}: expected {expected} at the end")

    def peek(self) -> str | None:
        return self.tokens[self.at][0] if self.at < len(self.tokens) else None

    def take(self) -> str:
        text = self.tokens[self.at][0]
        self.at += 1
        return text

    def expression_(self) -> Node:
        node = self.conjunction()
        while self.peek() == "or":
            self.take()
            node = Or(node, self.conjunction())
        return node

    def conjunction(self) -> Node:
        node = self.negation()
        while self.peek() == "and":
            self.take()
            node = And(node, self.negation())
        return node

    def negation(self) -> Node:
        if self.peek() == "not":
            self.take()
            return Not(self.negation())
        return self.atom()

    def atom(self) -> Node:
        token = self.peek()
        if token == "(":
            self.take()
            node = self.expression_()
            if self.peek() != ")":
                raise self.error("')'")
            self.take()
            return node
        if token is None or token == ")" or token in _OPERATORS:
            raise self.error("a name")
        return Word(self.take())


def parse(expression: str) -> Node:
    """The expression's tree; KeywordError names what is wrong and where."""
    reader = _Reader(expression)
    if reader.peek() is None:
        raise KeywordError("-k '': give a name or an expression (as `-k 'login and not slow'`)")
    node = reader.expression_()
    if reader.peek() is not None:
        raise reader.error("'and', 'or' or the end")
    return node


def matches(node: Node, name: str, tags: Iterable[str]) -> bool:
    lowered_tags = {t.lower() for t in tags}
    lowered_name = name.lower()

    def value(n: Node) -> bool:
        if isinstance(n, Word):
            word = n.text.lower()
            return word in lowered_name or word in lowered_tags
        if isinstance(n, Not):
            return not value(n.operand)
        if isinstance(n, And):
            return value(n.left) and value(n.right)
        return value(n.left) or value(n.right)

    return value(node)
