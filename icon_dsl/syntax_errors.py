"""Syntax errors worded for people: what the parser expected, where a bracket was left open,
the fix for the common mistakes, and where the failing statement ends so that parsing can go on
after it and report the next error too."""

from __future__ import annotations

import re

from lark import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from .diagnostics import Diagnostics
from .source import Source, Span

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


def syntax_diagnostic(text: str, err: UnexpectedInput, diags: Diagnostics) -> None:
    """One `syntax` error for `err`; `text` is the spec with earlier bad statements blanked."""
    pos = error_pos(text, err)
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


def error_pos(text: str, err: UnexpectedInput) -> int:
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


def blank_statement(text: str, pos: int) -> str | None:
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
