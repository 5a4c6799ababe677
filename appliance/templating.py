"""The email template language: variables with fallbacks, and spintax.

    Hi {{first_name|there}},                 a variable, with a fallback when the lead has none
    {Hi|Hello|Hey} {{first_name}}            spintax: one option picked per message
    {Quick|Short {question|note}}            nested spintax
    \\{ and \\}                                literal braces

It is our own small parser, not a general template engine: a template can name values and
choose between texts, nothing else, so it cannot reach configuration, the environment or
Python objects (it is "sandboxed" by construction). Mistakes are found when a campaign is
saved, each with its line and column, never as a surprise at send time.
"""

from __future__ import annotations

import html
import random
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Mapping, Sequence, Union

_NAME = re.compile(r"[a-z_][a-z0-9_]{0,63}\Z")
MAX_TEMPLATE = 100_000
MAX_DEPTH = 10


@dataclass(frozen=True)
class Var:
    name: str
    fallback: str | None
    pos: int


@dataclass(frozen=True)
class Spin:
    options: tuple[tuple["Node", ...], ...]
    pos: int


Node = Union[str, Var, Spin]


@dataclass
class TemplateError:
    message: str
    pos: int
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column}: {self.message}"


class TemplateSyntaxError(ValueError):
    def __init__(self, errors: list[TemplateError]):
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = errors


class MissingValue(KeyError):
    """A variable without a fallback has no value for this lead."""

    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


def _locate(text: str, pos: int) -> tuple[int, int]:
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return line, column


@dataclass
class _Parser:
    text: str
    i: int = 0
    errors: list[TemplateError] = field(default_factory=list)

    def error(self, message: str, pos: int) -> None:
        self.errors.append(TemplateError(message, pos))

    def parse(self, depth: int = 0, in_spin: bool = False) -> tuple[list[Node], str]:
        """Nodes up to the end, or (inside spintax) up to a '|' or '}' which is returned."""
        nodes: list[Node] = []
        buf: list[str] = []
        text = self.text
        while self.i < len(text):
            ch = text[self.i]
            if ch == "\\" and self.i + 1 < len(text) and text[self.i + 1] in "{}|\\":
                buf.append(text[self.i + 1])
                self.i += 2
            elif text.startswith("{{", self.i):
                self._flush(buf, nodes)
                nodes.append(self._variable())
            elif ch == "{":
                self._flush(buf, nodes)
                nodes.append(self._spin(depth))
            elif ch == "}" and text.startswith("}}", self.i) and not in_spin:
                self.error("'}}' without a matching '{{'", self.i)
                self.i += 2
            elif ch == "}":
                if in_spin:
                    self._flush(buf, nodes)
                    self.i += 1
                    return nodes, "}"
                self.error("'}' without a matching '{' (write \\} for a literal brace)", self.i)
                self.i += 1
            elif ch == "|" and in_spin:
                self._flush(buf, nodes)
                self.i += 1
                return nodes, "|"
            else:
                buf.append(ch)
                self.i += 1
        self._flush(buf, nodes)
        return nodes, ""

    @staticmethod
    def _flush(buf: list[str], nodes: list[Node]) -> None:
        if buf:
            nodes.append("".join(buf))
            buf.clear()

    def _variable(self) -> Node:
        start = self.i
        end = self.text.find("}}", start + 2)
        newline = self.text.find("\n", start + 2)
        if end < 0 or (0 <= newline < end):
            self.error("'{{' is not closed by '}}'", start)
            self.i = len(self.text) if end < 0 else end + 2
            return ""
        inner = self.text[start + 2:end]
        self.i = end + 2
        name, bar, fallback = inner.partition("|")
        name = name.strip()
        if not _NAME.match(name):
            self.error(f"{{{{{inner}}}}} is not a variable name (letters, digits and _ only)", start)
            return ""
        if "{" in fallback or "}" in fallback:
            self.error(f"the fallback of {{{{{name}}}}} cannot contain braces", start)
            return ""
        return Var(name, fallback.strip() if bar else None, start)

    def _spin(self, depth: int) -> Node:
        start = self.i
        if depth >= MAX_DEPTH:
            self.error(f"spintax nested more than {MAX_DEPTH} deep", start)
        self.i += 1
        options: list[tuple[Node, ...]] = []
        while True:
            nodes, stop = self.parse(depth + 1, in_spin=True)
            options.append(tuple(nodes))
            if stop == "}":
                break
            if stop == "":
                self.error("'{' is not closed by '}' (spintax looks like {Hi|Hello}; write \\{ for a literal brace)",
                           start)
                return ""
        if len(options) < 2:
            self.error("spintax needs at least two options separated by '|', like {Hi|Hello}", start)
            return ""
        return Spin(tuple(options), start)


def parse(text: str) -> list[Node]:
    if len(text) > MAX_TEMPLATE:
        raise TemplateSyntaxError([TemplateError(f"longer than {MAX_TEMPLATE} characters", 0, 1, 1)])
    parser = _Parser(text)
    nodes, _ = parser.parse()
    if parser.errors:
        for e in parser.errors:
            e.line, e.column = _locate(text, e.pos)
        raise TemplateSyntaxError(parser.errors)
    return nodes


@lru_cache(maxsize=512)
def parsed(text: str) -> tuple[Node, ...]:
    """parse(), remembered by the template's text: the sending engine renders the same few
    templates for thousands of leads. Keyed by the text itself, so an edited template can never
    be served stale; the nodes are immutable, so sharing them is safe."""
    return tuple(parse(text))


def variables(nodes: list[Node]) -> list[Var]:
    found: list[Var] = []
    for node in nodes:
        if isinstance(node, Var):
            found.append(node)
        elif isinstance(node, Spin):
            for option in node.options:
                found.extend(variables(list(option)))
    return found


def check(text: str, known: set[str]) -> list[TemplateError]:
    """Every problem of a template: syntax, and variables that no lead or sender can fill."""
    try:
        nodes = parse(text)
    except TemplateSyntaxError as exc:
        return exc.errors
    problems = []
    for var in variables(nodes):
        if var.name not in known:
            line, column = _locate(text, var.pos)
            problems.append(TemplateError(f"unknown variable {{{{{var.name}}}}}", var.pos, line, column))
    return problems


def render(nodes: Sequence[Node], values: Mapping[str, str], rng: random.Random, *,
           escape_html: bool = False) -> str:
    """Fill in values (raising MissingValue for an empty one without fallback) and pick spintax
    options with `rng` (seed it per message so a preview and the send agree)."""
    out: list[str] = []
    for node in nodes:
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, Var):
            value = str(values.get(node.name) or "").strip()
            if not value:
                if node.fallback is None:
                    raise MissingValue(node.name)
                value = node.fallback
            out.append(html.escape(value) if escape_html else value)
        else:
            out.append(render(rng.choice(node.options), values, rng, escape_html=escape_html))
    return "".join(out)


def missing_values(nodes: list[Node], values: Mapping[str, str]) -> list[str]:
    """Variables without a fallback that this lead cannot fill (for the launch check)."""
    return sorted({v.name for v in variables(nodes) if v.fallback is None and not str(values.get(v.name) or "").strip()})
