"""Parser: spec text -> surface syntax (syntax.py), with labelled syntax errors.

Takes: a Source. Guarantees: either a syntax.Spec whose every node carries its span, or a
SpecError whose diagnostics point at the offending token (code `syntax`, or the code of the limit
exceeded: limits.py), never a Lark traceback; the work is bounded before the parser runs (bytes
and tokens), and the tree is no deeper than limits.MAX_DEPTH when it is converted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import cache
from importlib import resources

from lark import Lark, Token, Tree, UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from . import limits
from . import syntax as s
from .diagnostics import Diagnostics
from .source import Source, Span

#: Syntax errors reported at most, per spec.
_MAX_SYNTAX_ERRORS = 20

# Friendly names for the terminals Lark reports as expected, in the order they are listed.
_TERMINAL_NAMES = {
    "RPAR": "')'",
    "RSQB": "']'",
    "COMMA": "','",
    "EQUAL": "'='",
    "SEMICOLON": "';'",
    "NEWLINE": "a new line",
    "$END": "the end of the spec",
    "_EXPRESSION": "an expression",
    "NAME": "a name",
    "NUMBER": "a number",
    "STRING": 'a "string"',
    "PLUS": "'+'",
    "MINUS": "'-'",
    "STAR": "'*'",
    "SLASH": "'/'",
    "CIRCUMFLEX": "'^'",
    "__ANON_0": "'**'",
    "LPAR": "'('",
    "LSQB": "'['",
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


def _token_problem(kind: str, tok: str) -> tuple[str, str, str | None] | None:
    """Why a STRING or NUMBER token the grammar accepts still has no value: (code, message,
    help)."""
    if kind == "STRING":
        try:
            json.loads(tok)
        except json.JSONDecodeError as err:
            reason = err.msg.removesuffix(" at")
            reason = reason[:1].lower() + reason[1:]
            return (
                "syntax",
                f"invalid string {tok}: {reason}",
                'strings take the escapes \\" \\\\ \\n \\t \\uXXXX',
            )
    if kind == "NUMBER":
        problem = number_problem(tok)
        if problem is not None:
            return "number-size", problem, limits.NUMBER_HELP
    return None


def number_problem(text: str) -> str | None:
    """Why a number literal is out of bounds (too long, too large, too small), or None. The
    text is measured before it is converted, so `1e-99999999` costs nothing."""
    shown = text if len(text) <= 24 else text[:20] + "..."
    if len(text) > limits.MAX_NUMBER_CHARS:
        return f"the number {shown} has {len(text)} characters, more than {limits.MAX_NUMBER_CHARS}"
    value = abs(float(text))  # at most MAX_NUMBER_CHARS characters: cheap
    if value > limits.MAX_MAGNITUDE:
        return f"the number {shown} is too large"
    if value < limits.MIN_MAGNITUDE and any(ch in "123456789" for ch in _mantissa(text)):
        return f"the number {shown} is too small (it is not 0)"
    return None


def _mantissa(text: str) -> str:
    return text.lower().split("e")[0]


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


#: Terminals that together mean "an expression goes here".
_EXPRESSION = {"NAME", "NUMBER", "STRING", "LPAR", "MINUS"}


def _expected_text(expected: set[str]) -> str:
    """What the parser expected, most telling first: closing brackets and separators, then
    values, then operators; at most six."""
    if _EXPRESSION <= expected:
        expected = (expected - _EXPRESSION) | {"_EXPRESSION"}
    shown = [t for t in expected if t in _TERMINAL_NAMES or not t.startswith("_")]
    order = list(_TERMINAL_NAMES)
    shown.sort(key=lambda t: (order.index(t) if t in order else len(order), t))
    names = [_TERMINAL_NAMES.get(t, f"'{t.lower()}'") for t in shown]
    if len(names) > 6:
        return ", ".join(names[:6]) + ", ..."
    return ", ".join(names)


def _syntax_diagnostic(text: str, err: UnexpectedInput, diags: Diagnostics) -> None:
    """One `syntax` error for `err`; `text` is the spec with earlier bad statements blanked."""
    pos = _error_pos(text, err)
    if isinstance(err, UnexpectedCharacters):
        ch = text[pos] if pos < len(text) else ""
        if ch == '"':
            end = text.find("\n", pos)
            end = len(text) if end < 0 else end
            diags.error("syntax", "unterminated string", Span(pos, end), 'close it with "')
        else:
            diags.error("syntax", f"unexpected character {ch!r}", Span(pos, pos + 1))
        return
    if isinstance(err, UnexpectedToken):
        tok = err.token
        if tok.type == "$END":
            # the caret goes just after the last character, where the missing text belongs
            end = len(text.rstrip())
            span = Span(end, end + 1)
            what = "end of the spec"
        else:
            span = Span(tok.start_pos or 0, tok.end_pos or (tok.start_pos or 0) + 1)
            what = "end of line" if tok.type == "NEWLINE" else repr(str(tok))
        expected = _exact_expected(err)
        opened, _ = _scan(text, span.start)
        bracket = text[opened[-1]] if opened else None
        help_text = _unclosed_help(diags.source, text, span.start) or _help_for(
            err, expected, bracket
        )
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


def _skip_string(text: str, i: int, limit: int) -> int:
    """The offset just after the string starting at `i`, or of the new line (or `limit`) where
    an unterminated one stops."""
    i += 1
    while i < limit and text[i] not in '"\n':
        i += 2 if text[i] == "\\" else 1
    return i + 1 if i < limit and text[i] == '"' else min(i, limit)


def _scan(text: str, pos: int) -> tuple[list[int], int]:
    """Brackets still open at `pos` (their offsets) and where the statement holding `pos` starts.

    Strings and comments are skipped; a statement starts after a newline or ';' outside brackets.
    """
    opened: list[int] = []
    # the statements before the one that failed last are blanked: skip them at C speed
    start = i = min(pos, len(text) - len(text.lstrip(" ")))
    while i < pos:
        ch = text[i]
        if ch == "#":
            newline = text.find("\n", i)
            i = pos if newline < 0 else newline
            continue
        if ch == '"':
            i = _skip_string(text, i, pos)
            continue
        if ch in "([":
            opened.append(i)
        elif ch in ")]" and opened:
            opened.pop()
        elif ch in "\n;" and not opened:
            start = i + 1
        i += 1
    return opened, start


def _unclosed_help(src: Source, text: str, pos: int) -> str | None:
    """A bracket left open on an earlier line swallows the newlines after it: say where it is."""
    opened, _ = _scan(text, pos)
    if not opened or "\n" not in text[opened[-1] : pos] or text[pos : pos + 1] in (")", "]"):
        return None
    start = opened[-1]
    line, col = src.line_col(start)
    close = ")" if text[start] == "(" else "]"
    return f"the '{text[start]}' at line {line}, column {col} is never closed: add '{close}'"


def _error_pos(text: str, err: UnexpectedInput) -> int:
    if isinstance(err, UnexpectedToken) and err.token.type == "$END":
        return len(text)
    return err.pos_in_stream if err.pos_in_stream is not None else len(text)


#: A line that starts a statement: `method`, `param`, `kernel` or `NAME =`, at column 1.
_STATEMENT_START = re.compile(r"(method|param|kernel)\b|[A-Za-z_]\w*[ \t]*=(?!=)")


def _statement_end(text: str, pos: int, depth: int) -> int:
    """Where the statement holding `pos` ends: a ';' or new line outside brackets, or a new line
    before a line that starts a statement (an unclosed bracket stops there)."""
    i = pos
    while i < len(text):
        ch = text[i]
        if ch == "#":
            newline = text.find("\n", i)
            i = len(text) if newline < 0 else newline
            continue
        if ch == '"':
            i = _skip_string(text, i, len(text))
            continue
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth = max(0, depth - 1)
        elif ch == ";" and not depth:
            return i
        elif ch == "\n" and (not depth or _STATEMENT_START.match(text, i + 1)):
            return i
        i += 1
    return len(text)


def _blank_statement(text: str, pos: int) -> str | None:
    """The text with the statement that failed at `pos` blanked (offsets kept), to find the next
    error; None when nothing is left to blank."""
    opened, start = _scan(text, pos)
    end = max(_statement_end(text, pos, len(opened)), pos + 1)
    if opened:
        # an unclosed bracket that ran into the next statement: keep that statement
        line = text.find("\n", opened[-1], pos)
        while line >= 0:
            if _STATEMENT_START.match(text, line + 1):
                end = line + 1
                break
            line = text.find("\n", line + 1, pos)
    if not text[start:end].strip():
        return None
    # everything up to the next statement is blanked (offsets kept): the next parse starts
    # there, so each statement is parsed about once however many errors the spec has
    return " " * end + text[end:]


_VALUES = ("NAME", "NUMBER", "STRING", "LPAR")


def _help_for(err: UnexpectedToken, expected: set[str], bracket: str | None) -> str | None:
    """A fix for the common mistakes, recognised by the token, what the parser expected and the
    innermost open bracket."""
    tok = err.token.type
    if "RPAR" in expected and tok in ("NEWLINE", "$END", "SEMICOLON"):
        return "close the call with ')'"
    if tok == "EQUAL" and "RPAR" not in expected:
        return "statements look like `p = gaussian(x, sigma=1)`"
    if tok in _VALUES and "COMMA" in expected:
        if bracket == "[":
            return "write the interval as `in [LO, HI]`"
        return "separate arguments with ','"
    if tok == "NAME" and "NEWLINE" in expected:
        return "one statement at a time: end the statement with a new line or ';'"
    return None


def parse(source: Source | str) -> s.Spec:
    """Parse spec text. Raises SpecError with every syntax error found (after an error, the
    failing statement is blanked and the rest parsed again) or with the first limit exceeded
    (limits.py): the work done on any text is bounded."""
    src = source if isinstance(source, Source) else Source(source)
    diags = Diagnostics(src)
    # a byte order mark, which many editors write, is white space (offsets kept)
    text = " " + src.text[1:] if src.text.startswith("\ufeff") else src.text
    _check_tokens(text, diags)
    if any(d.code == "spec-too-large" for d in diags.errors):
        diags.raise_if_errors()
    tree = _parse_tree(text, diags)
    if tree is not None:
        _check_tree(tree, diags)
    diags.raise_if_errors()
    assert tree is not None
    spec = _convert(tree)
    assert isinstance(spec, s.Spec)
    return spec


def _parse_tree(text: str, diags: Diagnostics) -> Tree | None:
    """The Lark tree of `text` (after a syntax error, of the statements that follow it, still
    worth checking), or None when nothing could be parsed."""
    current: str | None = text
    for _ in range(_MAX_SYNTAX_ERRORS):
        assert current is not None
        try:
            tree = _lark().parse(current)
        except UnexpectedInput as err:
            _syntax_diagnostic(current, err, diags)
            current = _blank_statement(current, _error_pos(current, err))
            if current is None:
                return None
            continue
        return tree
    return None


#: The tokens of the language as one C-speed regular expression (the grammar's NAME, NUMBER,
#: STRING and COMMENT; anything else one character): counting them bounds the parser's work
#: before it starts, and numbers and strings are checked here, also in statements with errors.
_TOKENS = re.compile(
    r'(?P<comment>#[^\n]*)|(?P<string>"(?:[^"\\\n]|\\.)*")|[A-Za-z_]\w*'
    r"|(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)|\S"
)


def _check_tokens(text: str, diags: Diagnostics) -> None:
    """`spec-too-large` when the text has more bytes or tokens than the limits allow; a
    located error for each number or string that has no value."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > limits.MAX_SPEC_BYTES:
        head = text.encode("utf-8", "surrogatepass")[: limits.MAX_SPEC_BYTES]
        at = len(head.decode("utf-8", "ignore"))
        diags.error(
            "spec-too-large",
            f"the spec has {size:,} bytes, more than the limit of {limits.MAX_SPEC_BYTES:,}",
            Span(at, at + 1),
            "split it: a spec describes one objective",
        )
        return
    count = 0
    for match in _TOKENS.finditer(text):
        if match.lastgroup == "comment":
            continue
        count += 1
        if count > limits.MAX_TOKENS:
            diags.error(
                "spec-too-large",
                f"the spec has more than {limits.MAX_TOKENS:,} tokens (names, numbers, "
                "operators and brackets)",
                Span(match.start(), match.end()),
                "split it: a spec describes one objective",
            )
            return
        if match.lastgroup in ("string", "number"):
            kind = "STRING" if match.lastgroup == "string" else "NUMBER"
            problem = _token_problem(kind, match.group())
            if problem is not None:
                diags.error(problem[0], problem[1], Span(match.start(), match.end()), problem[2])


def _node_span(node: Tree | Token) -> Span:
    if isinstance(node, Token):
        return _span(node)
    return Span(node.meta.start_pos, node.meta.end_pos) if not node.meta.empty else s.NO_SPAN


def _check_tree(tree: Tree, diags: Diagnostics) -> None:
    """The limits on statements, depth and arguments, and the order of arguments, checked on
    the parse tree without recursion (nothing after this recurses deeper than the limit)."""
    statements = [c for c in tree.children if isinstance(c, Tree)]
    if len(statements) > limits.MAX_STATEMENTS:
        extra = statements[limits.MAX_STATEMENTS]
        diags.error(
            "too-many-statements",
            f"the spec has {len(statements):,} statements, more than the limit of "
            f"{limits.MAX_STATEMENTS:,}",
            _node_span(extra),
            "a spec describes one objective: p, q, mapper, loss and their params and kernels",
        )
        return
    for statement in statements:
        _check_statement(statement, diags)


def _check_statement(statement: Tree, diags: Diagnostics) -> None:
    stack: list[tuple[Tree, int]] = [(statement, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limits.MAX_DEPTH:
            diags.error(
                "too-deep",
                f"expressions are nested more than {limits.MAX_DEPTH} deep here",
                _node_span(node),
                "write the expression flatter, or split a long sum into a mixture of fewer terms",
            )
            return  # one report per statement
        if node.data == "call":
            _check_call(node, diags)
        stack.extend((child, depth + 1) for child in node.children if isinstance(child, Tree))


def _check_call(call: Tree, diags: Diagnostics) -> None:
    """At most MAX_TERMS arguments, positional ones first."""
    args = [c for c in call.children[1:] if c is not None]
    if len(args) > limits.MAX_TERMS:
        diags.error(
            "too-many-terms",
            f"{call.children[0]}() has {len(args):,} arguments, more than the limit of "
            f"{limits.MAX_TERMS}",
            _node_span(args[limits.MAX_TERMS]),
        )
    keyword = None
    for arg in args:
        if isinstance(arg, Tree) and arg.data == "keyword":
            keyword = keyword or arg
        elif keyword is not None:
            diags.error(
                "argument-order",
                f"a positional argument after the keyword argument `{keyword.children[0]}`",
                _node_span(arg),
                "give positional arguments first, or name this one too",
            )
            return


__all__ = ["parse", "grammar_text"]
