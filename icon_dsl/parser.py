"""Parser: spec text -> surface syntax (syntax.py), with labelled syntax errors.

Takes: a Source. Guarantees: either a syntax.Spec whose every node carries its span, or a
SpecError whose diagnostics point at the offending token (code `syntax`, or the code of the limit
exceeded: limits.py), never a Lark traceback; the work is bounded before the parser runs (bytes
and tokens), and the tree is no deeper than limits.MAX_DEPTH when it is converted.
syntax_errors.py words the syntax errors.
"""

from __future__ import annotations

import io
import json
import re
import sys
from collections.abc import Iterator
from functools import cache
from importlib import resources

from lark import Lark, Token, Tree, UnexpectedInput
from lark import __version__ as lark_version

from . import disk_cache, limits
from . import syntax as s
from .diagnostics import Diagnostics
from .source import Source, Span
from .syntax_errors import blank_statement, error_pos, syntax_diagnostic

#: Syntax errors reported at most, per spec.
_MAX_SYNTAX_ERRORS = 20


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
    """The LALR parser. Building its tables costs every command about 0.03 s (loading 0.004 s),
    so they are kept on disk. Lark saves a parser as a pickle, and unpickling can run code: the file
    is read only from the owner-only folder of `disk_cache.private_folder` (docs/security.md,
    "The disk cache"), under the fingerprint of the sources (this file and the grammar included)
    and the versions of lark and Python. The pickle holds the postlex as a reference to
    `_ParenPostLex`, so it still applies after loading. A missing, corrupt or truncated file
    means building afresh and rewriting it (atomically: a temporary file renamed)."""
    folder = disk_cache.private_folder("parser")
    version = f"lark{lark_version}-py{sys.version_info[0]}.{sys.version_info[1]}"
    path = None if folder is None else folder / f"lalr-{disk_cache.fingerprint()}-{version}.pickle"
    if path is not None:
        try:
            with path.open("rb") as fh:
                loaded = Lark.load(fh)
            if isinstance(loaded.options.postlex, _ParenPostLex):
                return loaded
        except Exception:  # unpickling damaged bytes can raise anything: build instead
            pass
    parser = Lark(
        grammar_text(),
        parser="lalr",
        propagate_positions=True,
        maybe_placeholders=True,
        postlex=_ParenPostLex(),
    )
    if path is not None:  # an unwritable cache is an empty one
        saved = io.BytesIO()
        parser.save(saved)
        disk_cache.replace_file(path, saved.getvalue())
    return parser


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
            syntax_diagnostic(current, err, diags)
            current = blank_statement(current, error_pos(current, err))
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
