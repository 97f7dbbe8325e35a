"""The parser: every statement form, separators, comments, operators, spans.

Syntax nodes compare equal regardless of spans, so most tests compare a parsed spec against the
nodes written out by hand; span tests go through `Source.line_col` and `Source.snippet`, so they
check what a user would see.
"""

from __future__ import annotations

import inspect

import pytest
import torch

import icon_dsl
from icon_dsl import syntax as s
from icon_dsl.diagnostics import SpecError
from icon_dsl.parser import grammar_text
from icon_dsl.source import Source, Span


def N(value: float) -> s.Number:
    return s.Number(float(value))


def V(name: str) -> s.Name:
    return s.Name(name)


def call(func: str, *args: s.Expr, **keywords: s.Expr) -> s.Call:
    kws = tuple(s.Keyword(V(k), v) for k, v in keywords.items())
    return s.Call(V(func), tuple(args), kws)


def op(left: s.Expr, symbol: str, right: s.Expr) -> s.BinOp:
    return s.BinOp(symbol, left, right)


def statements(text: str) -> tuple[s.Statement, ...]:
    return icon_dsl.parse(text).statements


def expr(text: str) -> s.Expr:
    (stmt,) = statements(f"p = {text}")
    assert isinstance(stmt, s.Assign)
    return stmt.value


# -- statements -------------------------------------------------------------------------------


def test_method_with_title() -> None:
    assert statements('method tsne "t-SNE (van der Maaten and Hinton, 2008)"') == (
        s.Method(V("tsne"), s.String("t-SNE (van der Maaten and Hinton, 2008)")),
    )


def test_method_without_title() -> None:
    assert statements("method simclr") == (s.Method(V("simclr"), None),)


def test_title_escapes() -> None:
    (stmt,) = statements(r'method m "say \"hi\" \\ \t \u00e9 # not a comment"')
    assert isinstance(stmt, s.Method) and stmt.title is not None
    assert stmt.title.value == 'say "hi" \\ \t \u00e9 # not a comment'


@pytest.mark.parametrize(
    ("text", "default", "interval"),
    [
        ("param a", None, None),
        ("param a = 0.5", N(0.5), None),
        ("param a in [0, 1]", None, (N(0), N(1))),
        ("param a in [0, 1] = 0.25", N(0.25), (N(0), N(1))),
        ("param a in [-1, 2 * 3] = -0.5", s.Neg(N(0.5)), (s.Neg(N(1)), op(N(2), "*", N(3)))),
    ],
)
def test_param(text: str, default: s.Expr | None, interval: tuple[s.Expr, s.Expr] | None) -> None:
    assert statements(text) == (s.Param(V("a"), default, interval),)


def test_kernel() -> None:
    body = op(N(1), "/", op(N(1), "+", op(V("d2"), "/", op(V("gamma"), "^", N(2)))))
    assert statements("kernel cauchy(d2, gamma) = 1 / (1 + d2 / gamma^2)") == (
        s.KernelDef(V("cauchy"), (V("d2"), V("gamma")), body),
    )


def test_kernel_with_one_argument_and_a_function() -> None:
    assert statements("kernel heat(d2) = exp(-d2)") == (
        s.KernelDef(V("heat"), (V("d2"),), call("exp", s.Neg(V("d2")))),
    )


def test_assign_every_target() -> None:
    text = "mapper = table(dim=2)\np = gaussian(x)\nq = student_t(f(x))\nloss = kl(p, q)\n"
    assert statements(text) == (
        s.Assign(V("mapper"), call("table", dim=N(2))),
        s.Assign(V("p"), call("gaussian", V("x"))),
        s.Assign(V("q"), call("student_t", call("f", V("x")))),
        s.Assign(V("loss"), call("kl", V("p"), V("q"))),
    )


def test_bare_name_value() -> None:
    assert statements("mapper = table") == (s.Assign(V("mapper"), V("table")),)


# -- separators, comments, line structure ---------------------------------------------------


ONE_LINER = "p = gaussian(x, sigma) ; q = student_t(f(x)) ; mapper = table"


def test_semicolons_and_newlines_separate_alike() -> None:
    expected = statements("p = gaussian(x, sigma)\nq = student_t(f(x))\nmapper = table\n")
    assert statements(ONE_LINER) == expected
    assert statements("p = gaussian(x, sigma);q = student_t(f(x));mapper = table;") == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n\n",
        ";;",
        "# only a comment",
        "# one\n\n# two\n",
        "  \t \n",
    ],
)
def test_empty_specs_parse(text: str) -> None:
    assert statements(text) == ()


def test_blank_lines_and_empty_statements_are_skipped() -> None:
    assert statements("\n\np = x ;; ;\n\n\nq = y\n;\n") == (
        s.Assign(V("p"), V("x")),
        s.Assign(V("q"), V("y")),
    )


def test_comments() -> None:
    text = "# a spec\np = gaussian(x)  # the supervision ; q = nothing\n# q = y\nq = y # end"
    assert statements(text) == (
        s.Assign(V("p"), call("gaussian", V("x"))),
        s.Assign(V("q"), V("y")),
    )


def test_newlines_inside_parentheses_and_brackets() -> None:
    text = """\
param a in [
    0,
    1
] = 0.5
p = gaussian(
    x,          # the features
    sigma=(1 +
           a)
)
"""
    assert statements(text) == (
        s.Param(V("a"), N(0.5), (N(0), N(1))),
        s.Assign(V("p"), call("gaussian", V("x"), sigma=op(N(1), "+", V("a")))),
    )


def test_backslash_continues_a_line() -> None:
    assert statements("p = 0.5 * gaussian(x) \\\n    + 0.5 * knn(x, 5)") == statements(
        "p = 0.5 * gaussian(x) + 0.5 * knn(x, 5)"
    )


def test_crlf_line_endings() -> None:
    assert statements("p = x\r\nq = y\r\n") == statements("p = x\nq = y\n")


# -- expressions ------------------------------------------------------------------------------


def test_caret_and_double_star_are_both_powers() -> None:
    assert expr("a ^ b") == expr("a ** b") == op(V("a"), "^", V("b"))
    assert expr("2^3**4") == op(N(2), "^", op(N(3), "^", N(4)))


def test_power_is_right_associative_and_binds_tighter_than_minus() -> None:
    assert expr("a ^ b ^ c") == op(V("a"), "^", op(V("b"), "^", V("c")))
    assert expr("-a ^ 2") == s.Neg(op(V("a"), "^", N(2)))
    assert expr("(-a) ^ 2") == op(s.Neg(V("a")), "^", N(2))
    assert expr("a ^ -b") == op(V("a"), "^", s.Neg(V("b")))


def test_unary_minus() -> None:
    assert expr("-x") == s.Neg(V("x"))
    assert expr("--x") == s.Neg(s.Neg(V("x")))
    assert expr("a * -b") == op(V("a"), "*", s.Neg(V("b")))
    assert expr("-a * b") == op(s.Neg(V("a")), "*", V("b"))
    assert expr("gaussian(x, sigma=-1)") == call("gaussian", V("x"), sigma=s.Neg(N(1)))


def test_precedence_and_associativity() -> None:
    assert expr("a + b * c") == op(V("a"), "+", op(V("b"), "*", V("c")))
    assert expr("(a + b) * c") == op(op(V("a"), "+", V("b")), "*", V("c"))
    assert expr("a - b - c") == op(op(V("a"), "-", V("b")), "-", V("c"))
    assert expr("a / b / c") == op(op(V("a"), "/", V("b")), "/", V("c"))
    assert expr("a - b + c") == op(op(V("a"), "-", V("b")), "+", V("c"))


def test_mixture_expression() -> None:
    assert expr("a * gaussian(x) + (1 - a) * knn(x, 5)") == op(
        op(V("a"), "*", call("gaussian", V("x"))),
        "+",
        op(op(N(1), "-", V("a")), "*", call("knn", V("x"), N(5))),
    )


def test_keyword_arguments() -> None:
    assert expr("gaussian(f(x), prototypes(10), metric=dot, temperature=0.5)") == call(
        "gaussian",
        call("f", V("x")),
        call("prototypes", N(10)),
        metric=V("dot"),
        temperature=N(0.5),
    )
    assert expr("uniform()") == call("uniform")
    assert expr("mlp(dim=64, hidden=256, depth=2, sphere=true)") == call(
        "mlp", dim=N(64), hidden=N(256), depth=N(2), sphere=V("true")
    )


def test_keyword_values_are_expressions() -> None:
    assert expr("gaussian(x, sigma=2 * s ^ 2)") == call(
        "gaussian", V("x"), sigma=op(N(2), "*", op(V("s"), "^", N(2)))
    )


@pytest.mark.parametrize(
    ("text", "value"),
    [("1", 1.0), ("1.", 1.0), ("0.5", 0.5), (".5", 0.5), ("1e-3", 1e-3), ("2.5E+2", 250.0)],
)
def test_numbers_keep_their_text(text: str, value: float) -> None:
    number = expr(text)
    assert isinstance(number, s.Number)
    assert number.value == value
    assert number.text == text


def test_keywords_of_the_language_are_not_names() -> None:
    with pytest.raises(SpecError):
        statements("param = 1")
    # but names that merely start with one are
    assert statements("p = methods + params") == (
        s.Assign(V("p"), op(V("methods"), "+", V("params"))),
    )


# -- equality and printing ------------------------------------------------------------------


def test_equality_ignores_spans_and_number_text() -> None:
    assert statements("p=gaussian(x,sigma=1.0)") == statements(
        "\n\n  p   =   gaussian( x , sigma = 1 )  # spaced"
    )
    assert statements("p = a") != statements("p = b")


def test_print_spec_is_canonical() -> None:
    text = (
        'method  m  "a \\"t\\""\nparam a in [0,1]=0.5\nkernel k(d2,g)=1/(1+d2/g**2)\n'
        "p=-a^2*gaussian(x,sigma=(1+a))+b;q=(a-b)-c\n"
    )
    assert s.print_spec(icon_dsl.parse(text)) == (
        'method m "a \\"t\\""\n'
        "param a in [0, 1] = 0.5\n"
        "kernel k(d2, g) = 1 / (1 + d2 / g ^ 2)\n"
        "p = -a ^ 2 * gaussian(x, sigma=1 + a) + b\n"
        "q = a - b - c\n"
    )


@pytest.mark.parametrize(
    "text",
    ["a - (b - c)", "a / (b * c)", "(a ^ b) ^ c", "(-a) ^ b", "a ^ (-b)", "-(-a)", "-(a + b)"],
)
def test_print_keeps_needed_parentheses(text: str) -> None:
    spec = icon_dsl.parse(f"p = {text}")
    assert s.print_spec(spec) == f"p = {text}\n"
    assert icon_dsl.parse(s.print_spec(spec)) == spec


# -- the one-liner, end to end ---------------------------------------------------------------


def test_one_liner_compiles_end_to_end() -> None:
    module = icon_dsl.compile(ONE_LINER)
    assert module.ir.method == "method"
    cls = module.load()
    # sigma has no default: a required keyword argument of the constructor
    sigma = inspect.signature(cls).parameters["sigma"]
    assert sigma.kind is inspect.Parameter.KEYWORD_ONLY
    assert sigma.default is inspect.Parameter.empty
    loss = cls(sigma=1.5).double()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 4, generator=gen, dtype=torch.float64)
    z = torch.randn(6, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    value = loss(z, x=x)
    assert value.ndim == 0 and torch.isfinite(value)
    value.backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()
    p, q = loss.distributions(z, x=x)
    assert torch.allclose(p.sum(1), torch.ones(6, dtype=torch.float64))
    assert torch.allclose(q.sum(1), torch.ones(6, dtype=torch.float64))


def test_one_liner_equals_the_spec_file_on_disk() -> None:
    from pathlib import Path

    card = Path(__file__).parent.parent / "specs" / "card.icon"
    if card.is_file():
        assert icon_dsl.parse(card) == icon_dsl.parse(ONE_LINER)


# -- spans ----------------------------------------------------------------------------------

SPANNED = """\
method tsne "t-SNE"
# a comment line
param a in [0, 1] = 0.5
kernel c(d2, g) = 1 / (1 + d2 / g^2)
p = gaussian(x,
             sigma=2)  # trailing
q = a * student_t(f(x), dof=1) ; mapper = table(dim=2)
"""


def where(src: Source, span: Span) -> tuple[int, int, str]:
    line, col = src.line_col(span.start)
    return line, col, src.snippet(span)


def test_statement_spans() -> None:
    src = Source(SPANNED, "tsne.icon")
    spans = [where(src, stmt.span) for stmt in icon_dsl.parse(src).statements]
    assert spans == [
        (1, 1, 'method tsne "t-SNE"'),
        (3, 1, "param a in [0, 1] = 0.5"),
        (4, 1, "kernel c(d2, g) = 1 / (1 + d2 / g^2)"),
        (5, 1, "p = gaussian(x,\n             sigma=2)"),
        (7, 1, "q = a * student_t(f(x), dof=1)"),
        (7, 34, "mapper = table(dim=2)"),
    ]


def test_node_spans() -> None:
    src = Source(SPANNED)
    method, param, kernel, p, q, mapper = icon_dsl.parse(src).statements
    assert isinstance(method, s.Method) and method.title is not None
    assert where(src, method.name.span) == (1, 8, "tsne")
    assert where(src, method.title.span) == (1, 13, '"t-SNE"')
    assert isinstance(param, s.Param) and param.interval and param.default
    assert where(src, param.name.span) == (3, 7, "a")
    assert where(src, param.interval[1].span) == (3, 16, "1")
    assert where(src, param.default.span) == (3, 21, "0.5")
    assert isinstance(kernel, s.KernelDef)
    assert [where(src, n.span) for n in kernel.params] == [(4, 10, "d2"), (4, 14, "g")]
    assert where(src, kernel.body.span) == (4, 19, "1 / (1 + d2 / g^2)")
    assert isinstance(p, s.Assign) and isinstance(p.value, s.Call)
    gaussian = p.value
    assert where(src, gaussian.func.span) == (5, 5, "gaussian")
    assert where(src, gaussian.args[0].span) == (5, 14, "x")
    (sigma,) = gaussian.keywords
    assert where(src, sigma.span) == (6, 14, "sigma=2")
    assert where(src, sigma.name.span) == (6, 14, "sigma")
    assert where(src, sigma.value.span) == (6, 20, "2")
    assert isinstance(q, s.Assign) and isinstance(q.value, s.BinOp)
    assert where(src, q.target.span) == (7, 1, "q")
    assert where(src, q.value.span) == (7, 5, "a * student_t(f(x), dof=1)")
    student = q.value.right
    assert isinstance(student, s.Call)
    assert where(src, student.span) == (7, 9, "student_t(f(x), dof=1)")
    assert where(src, student.args[0].span) == (7, 19, "f(x)")
    assert isinstance(mapper, s.Assign)
    assert where(src, mapper.value.span) == (7, 43, "table(dim=2)")


def test_unary_and_power_spans() -> None:
    src = Source("p = -a ^ 2")
    (stmt,) = icon_dsl.parse(src).statements
    assert isinstance(stmt, s.Assign) and isinstance(stmt.value, s.Neg)
    assert where(src, stmt.value.span) == (1, 5, "-a ^ 2")
    assert where(src, stmt.value.operand.span) == (1, 6, "a ^ 2")


# -- Source --------------------------------------------------------------------------------


def test_line_col_is_one_based() -> None:
    src = Source("ab\ncd\n\nef")
    assert [src.line_col(i) for i in (0, 1, 2, 3, 5, 6, 7, 8)] == [
        (1, 1),
        (1, 2),
        (1, 3),
        (2, 1),
        (2, 3),
        (3, 1),
        (4, 1),
        (4, 2),
    ]
    assert src.line_text(2) == "cd"
    assert src.line_text(3) == ""
    assert src.line_text(99) == ""


def test_render_caret() -> None:
    src = Source("p = x\nq = gaussian(f(x))\n")
    assert src.render_caret(Span(10, 24)) == (
        "   2 | q = gaussian(f(x))\n     |     ^^^^^^^^^^^^^^"
    )
    # an empty span still gets one caret; a span over several lines is underlined to the end
    # of its first line
    assert src.render_caret(Span(4, 4)) == "   1 | p = x\n     |     ^"
    assert src.render_caret(Span(4, 12)) == "   1 | p = x\n     |     ^"


def test_render_caret_keeps_tabs() -> None:
    src = Source("p =\tgaussian(x,\tsigam=1)")
    assert src.render_caret(Span(16, 21)) == (
        "   1 | p =\tgaussian(x,\tsigam=1)\n     |    \t           \t^^^^^"
    )


# -- robustness -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "p = ",
        "p = gaussian(x",
        "p = gaussian(x))",
        "= x",
        "p q = x",
        "method",
        "method 1",
        'method m "unterminated',
        'method m "\\z"',
        "param a in [0 1]",
        "kernel k d2 = 1",
        "p = x $ y",
        "p = f(x) (y)",
        "p = a ^^ b",
        "p = gaussian(sigma=1=2)",
        "\x00",
    ],
)
def test_syntax_errors_are_spec_errors(text: str) -> None:
    with pytest.raises(SpecError) as info:
        icon_dsl.parse(text)
    assert set(info.value.codes) == {"syntax"}
    for diag in info.value.diagnostics:
        assert diag.span is not None
        assert 0 <= diag.span.start <= len(text)


def test_grammar_text_is_the_packaged_grammar() -> None:
    grammar = grammar_text()
    assert grammar.startswith("// icon-dsl: the language reference.")
    assert "kernel_stmt" in grammar and "param_stmt" in grammar
