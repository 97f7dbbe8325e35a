"""Parser: spec text -> surface syntax (syntax.py), with labelled syntax errors.

Takes: a Source. Guarantees: either a syntax.Spec whose every node carries its span, or a
SpecError whose diagnostics point at the offending token (code `syntax`), never a Lark traceback.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from importlib import resources

from lark import Lark, Token, Transformer, UnexpectedCharacters, UnexpectedInput, UnexpectedToken
from lark.lexer import Lexer

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
    grammar = resources.files("icon_dsl").joinpath("grammar.lark").read_text()
    return Lark(
        grammar,
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


class _ToSyntax(Transformer):  # type: ignore[type-arg]
    """Lark tree -> syntax dataclasses."""

    def __init__(self) -> None:
        super().__init__(visit_tokens=False)

    def _meta(self, children: list, meta: object) -> Span:  # noqa: ARG002
        return _span(meta)

    # -- atoms ---------------------------------------------------------------------------
    def number(self, children: list[Token]) -> s.Number:
        tok = children[0]
        return s.Number(float(tok), str(tok), _span(tok))

    def name(self, children: list[Token]) -> s.Name:
        return _name(children[0])

    def string(self, children: list[Token]) -> s.String:
        return _string(children[0])


def _name(tok: Token) -> s.Name:
    return s.Name(str(tok), _span(tok))


def _string(tok: Token) -> s.String:
    # JSON's string escapes are a safe decoder: nothing in the text is ever evaluated.
    return s.String(json.loads(str(tok)), _span(tok))


def _convert(tree: object) -> object:
    """Recursively turn a Lark tree (or token) into syntax nodes."""
    from lark import Tree

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
    names = sorted({_TERMINAL_NAMES.get(t, t.lower()) for t in expected if not t.startswith("_")})
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
            end = len(src.text.rstrip())
            span = Span(max(0, end - 1), max(1, end))
            what = "end of the spec"
        else:
            span = Span(tok.start_pos or 0, tok.end_pos or (tok.start_pos or 0) + 1)
            what = "a new line" if tok.type == "NEWLINE" else repr(str(tok))
        expected = _exact_expected(err)
        help_text = _help_for(err, expected)
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
    spec = _convert(tree)
    assert isinstance(spec, s.Spec)
    return spec


__all__ = ["parse", "grammar_text", "Lexer"]
