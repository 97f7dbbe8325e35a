"""Lines laid out as `ruff format` lays them out, so that generated modules need no formatter.

Takes: statements as code (an assignment, a call, a `def`, a chain of one operator). Guarantees:
the lines ruff format writes for them at the given indentation, within LINE_LENGTH columns;
deterministic. Only the shapes code generation emits are covered, not ruff's whole layout.
"""

from __future__ import annotations

import io
import tokenize

#: The generated modules' line length: ruff's default (generated/ruff.toml), not this
#: repository's own setting, since a generated module stands alone.
LINE_LENGTH = 88


def fits(line: str, indent: int = 0) -> bool:
    """Does `line`, indented by `indent` columns, fit in LINE_LENGTH?"""
    return indent + len(line) <= LINE_LENGTH


def assignment_lines(target: str, code: str, indent: int) -> list[str]:
    """`target = code` laid out as ruff format lays out an assignment at column ``indent``:
    one line; else the value in parentheses on its own line; else one operand a line, split at
    the top-level operators of the lowest precedence (`+ -`, else `* /`). The lines are
    returned without the indentation."""
    one_line = f"{target} = {code}"
    if fits(one_line, indent):
        return [one_line]
    if fits(code, indent + 4):
        return [f"{target} = (", f"    {code}", ")"]
    return [f"{target} = (", *(f"    {part}" for part in operands(code)), ")"]


_BINARY_OPERATORS = ({"+", "-"}, {"*", "/", "//", "%", "@"})


def operands(code: str) -> list[str]:
    """``code`` cut before each top-level binary operator of its lowest precedence, each piece
    starting with its operator (`a`, `- b`, `+ c`); the whole code when there is none."""
    tokens = list(tokenize.generate_tokens(io.StringIO(code).readline))
    depth, previous = 0, None
    cuts: list[list[int]] = [[] for _ in _BINARY_OPERATORS]
    for token in tokens:
        if token.type == tokenize.OP and token.string in ("(", "[", "{"):
            depth += 1
        elif token.type == tokenize.OP and token.string in (")", "]", "}"):
            depth -= 1
        elif depth == 0 and token.type == tokenize.OP and previous is not None:
            # binary, not unary: it follows an operand
            closes = previous.string in (")", "]", "}")
            if previous.type in (tokenize.NAME, tokenize.NUMBER) or closes:
                for level, operators in enumerate(_BINARY_OPERATORS):
                    if token.string in operators:
                        cuts[level].append(token.start[1])
        if token.type not in (tokenize.NEWLINE, tokenize.ENDMARKER):
            previous = token
    positions = next((found for found in cuts if found), [])
    bounds = [0, *positions, len(code)]
    return [code[a:b].strip() for a, b in zip(bounds, bounds[1:], strict=False)]


def fold(target: str, parts: list[str], op: str, indent: int = 8) -> list[str]:
    """`target = a op b op ...` over as many lines as LINE_LENGTH needs, each line adding to
    the last (`target = target op ...`): no expression nests deeper than a line's operands,
    so thousands of operands compile (Python's parser recurses once per operator)."""
    lines: list[str] = []
    current = ""
    for part in parts:
        candidate = f"{current} {op} {part}" if current else part
        if current and not fits(f"{target} = {candidate}", indent):
            lines.append(f"{target} = {current}")
            candidate = f"{target} {op} {part}"
        current = candidate
    lines.append(f"{target} = {current}")
    return lines


def define(name: str, params: list[str], returns: str, indent: int = 4) -> str:
    """A `def` line laid out as ruff format lays it out."""
    return _bracketed(f"def {name}", params, f" -> {returns}:", indent)


def assign(target: str, code: str, indent: int = 8) -> str:
    """An assignment statement laid out as ruff format lays it out (see assignment_lines)."""
    pad = " " * indent
    return "\n".join(pad + line for line in assignment_lines(target, code, indent))


def returns(values: list[str], keep: str | None, tail: str, indent: int = 8) -> str:
    """`return VALUES, KEEP, TAIL`: the kept rows inline where they are None or a name and the
    line fits; otherwise computed on a line of their own first."""
    pad = " " * indent
    line = "return " + ", ".join([*values, keep or "None", tail])
    if (keep is None or keep.isidentifier()) and fits(line, indent):
        return pad + line
    kept = "return " + ", ".join([*values, "keep", tail])
    return f"{assign('keep', keep or 'None', indent)}\n{pad}{kept}"


def call(name: str, args: list[str], indent: int = 8, target: str = "") -> str:
    """A call statement laid out as ruff format lays it out."""
    return _bracketed(f"{target} = {name}" if target else name, args, "", indent)


def call_lines(name: str, args: list[str], target: str, indent: int = 8) -> list[str]:
    """``call`` as a body's lines (without the indentation they will be written at)."""
    return [
        line.removeprefix(" " * indent) for line in call(name, args, indent, target).splitlines()
    ]


def _bracketed(head: str, items: list[str], tail: str, indent: int) -> str:
    """`head(items)tail` on one line if it fits; else the items on one line of their own;
    else one item a line, each with a trailing comma (ruff format's three layouts)."""
    pad = " " * indent
    one_line = f"{pad}{head}({', '.join(items)}){tail}"
    if fits(one_line):
        return one_line
    inner = f"{pad}    {', '.join(items)}"
    if fits(inner):
        return f"{pad}{head}(\n{inner}\n{pad}){tail}"
    body = "".join(f"{pad}    {item},\n" for item in items)
    return f"{pad}{head}(\n{body}{pad}){tail}"
