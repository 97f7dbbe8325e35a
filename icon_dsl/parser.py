"""Parser: spec text -> surface syntax (syntax.py), with labelled syntax errors.

Takes: a Source. Guarantees: either a syntax.Spec whose every node carries its span, or a
SpecError whose diagnostics point at the offending token (code `syntax`), never a Lark traceback.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from functools import cache
from importlib import resources

from lark import Lark, Token, Tree, UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from . import syntax as s
from .diagnostics import Diagnostics
from .source import Source, Span

# Friendly names for the terminals Lark reports as expected.
_TERMINAL_NAMES = {
    "NAME": "a name",
    "NUMBER": "a number",
    "STRING": 'a "string"',
    "NEWLINE": "a new line",
    "SEMICOLON": "';'",
    "LPAR": "'('",
    "RPAR": "')'",
    "LSQB": "'['",
    "RSQB": "']'",
    "COMMA": "','",
    "EQUAL": "'='",
    "PLUS": "'+'",
    "MINUS": "'-'",
    "STAR": "'*'",
    "SLASH": "'/'",
    "CIRCUMFLEX": "'^'",
    "__ANON_0": "'**'",
    "$END": "the end of the spec",
}


class _ParenPostLex:
    """Drops newlines inside () and [] so long calls may span lines."""

    always_accept = ("NEWLINE",)

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        depth = 0
        for tok in stream:
            if tok.type in ("LPAR", "LSQB"):
                depth += 1
            elif tok.type in ("RPAR", "RSQB"):
                depth = max(0, depth - 1)
            elif tok.type == "NEWLINE" and depth:
                continue
            yield tok


@cache
def _lark() -> Lark:
    return Lark(
        grammar_text(),
        parser="lalr",
        propagate_positions=True,
        maybe_placeholders=True,
        postlex=_ParenPostLex(),
    )


def grammar_text() -> str:
    """The grammar file, which is the language reference."""
    return resources.files("icon_dsl").joinpath("grammar.lark").read_text()


def _span(meta_or_tok: object) -> Span:
    start = getattr(meta_or_tok, "start_pos", 0)
    end = getattr(meta_or_tok, "end_pos", start)
    return Span(start, end)


def _name(tok: Token) -> s.Name:
    return s.Name(str(tok), _span(tok))


def _string(tok: Token) -> s.String:
    # JSON's string escapes are a safe decoder: nothing in the text is ever evaluated.
    # `_token_problem` has already rejected what JSON cannot decode.
    return s.String(json.loads(str(tok)), _span(tok))


def _token_problem(tok: Token) -> tuple[str, str | None] | None:
    """Why a STRING or NUMBER token the grammar accepts still has no value: (message, help)."""
    if tok.type == "STRING":
        try:
            json.loads(str(tok))
        except json.JSONDecodeError as err:
            reason = err.msg.removesuffix(" at")
            reason = reason[:1].lower() + reason[1:]
            return (
                f"invalid string {tok}: {reason}",
                'strings take the escapes \\" \\\\ \\n \\t \\uXXXX',
            )
    if tok.type == "NUMBER" and not math.isfinite(float(tok)):
        return f"the number {tok} is too large", None
    return None


def _convert(tree: object) -> object:
    """Recursively turn a Lark tree (or token) into syntax nodes."""
    if isinstance(tree, Token):
        if tree.type == "NAME":
            return _name(tree)
        if tree.type == "NUMBER":
            return s.Number(float(tree), str(tree), _span(tree))
        if tree.type == "STRING":
            return _string(tree)
        raise AssertionError(f"unexpected token {tree.type}")
    assert isinstance(tree, Tree)
    span = Span(tree.meta.start_pos, tree.meta.end_pos) if not tree.meta.empty else s.NO_SPAN
    kept = [c for c in tree.children if not (isinstance(c, Token) and c.type == "NEWLINE")]
    kids = [_convert(c) if c is not None else None for c in kept]
    rule = tree.data
    if rule == "start":
        return s.Spec(tuple(k for k in kids if k is not None))  # type: ignore[misc]
    if rule == "number" or rule == "name" or rule == "string":
        return kids[0]
    if rule in ("add", "sub", "mul", "div", "pow"):
        op = {"add": "+", "sub": "-", "mul": "*", "div": "/", "pow": "^"}[rule]
        return s.BinOp(op, kids[0], kids[-1], span)  # type: ignore[arg-type]
    if rule == "neg":
        return s.Neg(kids[0], span)  # type: ignore[arg-type]
    if rule == "keyword":
        return s.Keyword(kids[0], kids[1], span)  # type: ignore[arg-type]
    if rule == "call":
        func, *rest = kids
        rest = [k for k in rest if k is not None]
        args = tuple(k for k in rest if not isinstance(k, s.Keyword))
        keywords = tuple(k for k in rest if isinstance(k, s.Keyword))
        return s.Call(func, args, keywords, span)  # type: ignore[arg-type]
    if rule == "method_stmt":
        return s.Method(kids[0], kids[1], span)  # type: ignore[arg-type]
    if rule == "interval":
        return (kids[0], kids[1])
    if rule == "param_stmt":
        return s.Param(kids[0], kids[2], kids[1], span)  # type: ignore[arg-type]
    if rule == "kernel_stmt":
        name, *params, body = kids
        return s.KernelDef(name, tuple(params), body, span)  # type: ignore[arg-type]
    if rule == "assign":
        return s.Assign(kids[0], kids[1], span)  # type: ignore[arg-type]
    raise AssertionError(f"unexpected rule {rule}")


def _expected_text(expected: set[str]) -> str:
    names = sorted(
        {
            _TERMINAL_NAMES.get(t, f"'{t.lower()}'")
            for t in expected
            if t in _TERMINAL_NAMES or not t.startswith("_")
        }
    )
    if len(names) > 6:
        return ", ".join(names[:6]) + ", ..."
    return ", ".join(names)


def _syntax_diagnostic(src: Source, err: UnexpectedInput, diags: Diagnostics) -> None:
    pos = err.pos_in_stream if err.pos_in_stream is not None else len(src.text)
    if isinstance(err, UnexpectedCharacters):
        ch = src.text[pos] if pos < len(src.text) else ""
        diags.error("syntax", f"unexpected character {ch!r}", Span(pos, pos + 1))
        return
    if isinstance(err, UnexpectedToken):
        tok = err.token
        if tok.type == "$END":
            # the caret goes just after the last character, where the missing text belongs
            end = len(src.text.rstrip())
            span = Span(end, end + 1)
            what = "end of the spec"
        else:
            span = Span(tok.start_pos or 0, tok.end_pos or (tok.start_pos or 0) + 1)
            what = "a new line" if tok.type == "NEWLINE" else repr(str(tok))
        expected = _exact_expected(err)
        help_text = _unclosed_help(src, span.start) or _help_for(err, expected)
        diags.error(
            "syntax", f"unexpected {what}; expected {_expected_text(expected)}", span, help_text
        )
        return
    diags.error("syntax", "the spec is not valid", Span(pos, pos + 1))


def _exact_expected(err: UnexpectedToken) -> set[str]:
    # LALR's reported set is merged across states; asking the parser state is exact.
    try:
        expected = set(err.interactive_parser.accepts())
    except Exception:  # pragma: no cover - older lark
        expected = set(err.expected)
    if "NEWLINE" in expected:
        expected.add("SEMICOLON")
    return expected


def _unclosed_bracket(text: str, pos: int) -> int | None:
    """The offset of the innermost '(' or '[' still open at `pos` (strings and comments skipped)."""
    opened: list[int] = []
    i = 0
    while i < pos:
        ch = text[i]
        if ch == "#":
            newline = text.find("\n", i)
            i = pos if newline < 0 else newline
            continue
        if ch == '"':
            i += 1
            while i < pos and text[i] not in '"\n':
                i += 2 if text[i] == "\\" else 1
        elif ch in "([":
            opened.append(i)
        elif ch in ")]" and opened:
            opened.pop()
        i += 1
    return opened[-1] if opened else None


def _unclosed_help(src: Source, pos: int) -> str | None:
    """A bracket left open on an earlier line swallows the newlines after it: say where it is."""
    start = _unclosed_bracket(src.text, pos)
    if start is None or "\n" not in src.text[start:pos]:
        return None
    line, col = src.line_col(start)
    close = ")" if src.text[start] == "(" else "]"
    return f"the '{src.text[start]}' at line {line}, column {col} is never closed: add '{close}'"


def _help_for(err: UnexpectedToken, expected: set[str]) -> str | None:
    if "RPAR" in expected and err.token.type in ("NEWLINE", "$END", "SEMICOLON"):
        return "close the call with ')'"
    if err.token.type == "EQUAL" and "RPAR" not in expected:
        return "statements look like `p = gaussian(x, sigma=1)`"
    return None


def parse(source: Source | str) -> s.Spec:
    """Parse spec text. Raises SpecError (code `syntax`) on malformed text."""
    src = source if isinstance(source, Source) else Source(source)
    diags = Diagnostics(src)
    try:
        tree = _lark().parse(src.text)
    except UnexpectedInput as err:
        _syntax_diagnostic(src, err, diags)
        diags.raise_if_errors()
        raise  # unreachable: raise_if_errors raised
    for tok in tree.scan_values(lambda v: isinstance(v, Token)):
        problem = _token_problem(tok)
        if problem is not None:
            diags.error("syntax", problem[0], _span(tok), problem[1])
    diags.raise_if_errors()
    spec = _convert(tree)
    assert isinstance(spec, s.Spec)
    return spec


__all__ = ["parse", "grammar_text"]
