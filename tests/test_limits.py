"""Hostile specs: every limit has its located diagnostic, the worst inputs end fast, no exception
but SpecError leaves `check` or `compile`, and rendering diagnostics takes linear time.

Times are CPU seconds of this process (time.process_time), so a busy machine does not make
them fail; the bounds are the promises of docs/security.md: `check` and `compile` end within
5 s on any input up to the size limit, and a spec at the size limit renders all its errors
within 1 s.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

import icon_dsl
from icon_dsl import limits
from icon_dsl.diagnostics import Diagnostics, SpecError
from icon_dsl.source import Source, Span

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = {p.stem: p.read_text(encoding="utf-8") for p in sorted((ROOT / "specs").glob("*.icon"))}
QM = "q = gaussian(f(x))\nmapper = table\n"


def _cpu(function: Callable[[], object]) -> tuple[float, object]:
    start = time.process_time()
    try:
        result: object = function()
    except SpecError as err:
        result = err
    return time.process_time() - start, result


# -- every limit: its own code, located ------------------------------------------------------

LIMIT_CASES = {
    "bytes": ("p = gaussian(x)\n" + QM + "#" * limits.MAX_SPEC_BYTES, "spec-too-large"),
    "tokens": ("p = x\n" + "x + " * limits.MAX_TOKENS, "spec-too-large"),
    "statements": ("p = x\n" * (limits.MAX_STATEMENTS + 1), "too-many-statements"),
    "depth": ("p = " + "normalize(" * 70 + "x" + ")" * 70 + "\n" + QM, "too-deep"),
    "negations": ("p = gaussian(x, sigma=" + "-" * 70 + "1)\n" + QM, "too-deep"),
    "mixture": ("p = " + " + ".join(["0.05 * knn(x, 3)"] * 20) + "\n" + QM, "too-many-terms"),
    "union": ("p = union(" + ", ".join(["knn(x, 3)"] * 20) + ")\n" + QM, "too-many-terms"),
    "literal_chars": ("p = knn(x, " + "1" * 70 + ")\n" + QM, "number-size"),
    "literal_large": ("p = gaussian(x, sigma=1e301)\n" + QM, "number-size"),
    "literal_small": ("p = gaussian(x, sigma=1e-99999999)\n" + QM, "number-size"),
    "tower": ("p = gaussian(x, sigma=10^10^10)\n" + QM, "number-size"),
    "product": ("param s = 1e300 * 1e300\np = gaussian(x, sigma=s)\n" + QM, "number-size"),
    "kernel_degree": (
        "kernel k(d2) = (((((d2 + 1)^2 + 1)^2 + 1)^2 + 1)^2 + 1)^2\n"
        "p = gaussian(x)\nq = normalize(k(f(x)))\nmapper = table",
        "number-size",
    ),
    "kernel_power_tower": (
        "kernel k(d2) = d2^2^2^2^2^2\np = gaussian(x)\nq = normalize(k(f(x)))\nmapper = table",
        "number-size",
    ),
    "formula_operations": (
        "".join(f"kernel k{i}(d2) = exp(-d2" + " - d2" * 10 + ")\n" for i in range(9))
        + "p = gaussian(x)\nq = normalize(k0(f(x)))\nmapper = table",
        "formula-too-large",
    ),
    "formula_depth": (
        "kernel k(d2) = " + "exp(-" * 7 + "d2" + ")" * 7 + "\n"
        "p = gaussian(x)\nq = normalize(k(f(x)))\nmapper = table",
        "formula-too-large",
    ),
    "weight_depth": (
        "param a in [0, 1] = 0.5\np = "
        + "(" * 13
        + "a"
        + " * 1)" * 13
        + " * knn(x, 3) + (1 - a) * knn(x, 4)\n"
        + QM,
        "formula-too-large",
    ),
}


@pytest.mark.parametrize("name", list(LIMIT_CASES))
def test_each_limit_has_its_located_diagnostic(name: str) -> None:
    text, code = LIMIT_CASES[name]
    with pytest.raises(SpecError) as err:
        icon_dsl.check(text)
    assert code in err.value.codes, str(err.value)[:2000]
    for diag in err.value.diagnostics:
        assert diag.span is not None and 0 <= diag.span.start <= len(text), diag
    assert f"[{code}]" in str(err.value)


# Numbers sympy cannot turn into finite reals: a located `domain` error wherever a number goes.
NOT_FINITE = ["0/0", "1/0", "(-1)^0.5", "(-8)^(1/3)", "0^(-1)", "(1 - 1)^(-2)"]
PLACES = {
    "argument": "p = gaussian(x, sigma={v})\n" + QM,
    "default": "param s = {v}\np = gaussian(x, sigma=s)\n" + QM,
    "interval_low": "param s in [{v}, 2] = 1\np = gaussian(x, sigma=s)\n" + QM,
    "interval_high": "param s in [0, {v}] = 1\np = gaussian(x, sigma=s)\n" + QM,
    "weight": "p = {v} * knn(x, 3) + 0.5 * gaussian(x)\n" + QM,
    "kernel_argument": "kernel k(d2, a) = exp(-d2 / a)\np = gaussian(x)\n"
    "q = normalize(k(f(x), {v}))\nmapper = table",
    "kernel_body": "kernel k(d2) = exp(-d2 * {v})\np = gaussian(x)\n"
    "q = normalize(k(f(x)))\nmapper = table",
}


@pytest.mark.parametrize("value", NOT_FINITE)
@pytest.mark.parametrize("place", list(PLACES))
def test_numbers_that_are_not_finite_reals_are_domain_errors(place: str, value: str) -> None:
    text = PLACES[place].format(v=value)
    with pytest.raises(SpecError) as err:
        icon_dsl.compile(text)
    assert "domain" in err.value.codes, str(err.value)
    diag = next(d for d in err.value.diagnostics if d.code == "domain")
    at = text.index(value)  # the span covers the culprit
    assert diag.span is not None and diag.span.start <= at < at + len(value) <= diag.span.end


# -- the worst inputs end fast ---------------------------------------------------------------

WORST = {
    "1 MB of duplicate p": "p = x\n" * 166_667,
    "a million unknown names": "\n".join(f"a{i}" for i in range(1_000_000)),
    "duplicate p at the statement limit": "p = x\n" * limits.MAX_STATEMENTS,
    "unknown statements at the limit": "".join(
        f"a{i} = b{i}\n" for i in range(limits.MAX_STATEMENTS)
    ),
    "unknown distributions at the token limit": "".join(
        f"p = gausian{i}(x)\n" for i in range(limits.MAX_TOKENS // 7)
    ),
    "syntax errors everywhere": "p = = x\n" * limits.MAX_STATEMENTS,
    "10,000 nested debias": "p = " + "debias(" * 10_000 + "x" + ", 0.1)" * 10_000,
    "10,000 negations": "p = gaussian(x, sigma=" + "-" * 10_000 + "1)",
    "10,000 nested normalize": "p = " + "normalize(" * 10_000 + "x" + ")" * 10_000,
    "5,000-term mixture": "p = " + " + ".join(["0.0002 * gaussian(x)"] * 5_000) + "\n" + QM,
    "10,000-operand union": "p = union(" + ", ".join(["knn(x, 3)"] * 10_000) + ")\n" + QM,
    "nesting at the depth limit": "p = "
    + "debias(" * (limits.MAX_DEPTH - 3)
    + "gaussian(x)"
    + ", 0.1)" * (limits.MAX_DEPTH - 3)
    + "\n"
    + QM,
    "huge numbers": "".join(f"param a{i} = 1e299 * 9.99 / 1e-299\n" for i in range(400))
    + "p = gaussian(x)\n"
    + QM,
    "exponent towers": "p = gaussian(x, sigma=" + "^".join(["1.0000001"] * 60) + ")\n" + QM,
    "1e-99999999": "p = gaussian(x, sigma=1e-99999999)\n" + QM,
    "10^10^10": "p = gaussian(x, sigma=10^10^10)\n" + QM,
    "kernels at the operation limit": "".join(
        f"kernel k{i}(d2, a, b) = exp(-d2 / a) / (1 + d2 / b^2)^3 * (a * d2 + b)^(1/3)\n"
        for i in range(12)
    )
    + "p = gaussian(x)\nq = normalize(k0(f(x), 1, 2))\nmapper = table",
    "kernel at the degree limit": "kernel k(d2) = ((((d2 + 1)^2 + 1)^2 + 1)^2 + 1)^2\n"
    "p = gaussian(x)\nq = normalize(k(f(x)))\nmapper = table",
    "kernel at the depth limit": "kernel k(d2) = "
    + "exp(-" * 6
    + "d2"
    + ")" * 6
    + "\np = gaussian(x)\nq = normalize(k(f(x)))\nmapper = table",
    "mixture at the term limit": "".join(f"param w{i} in [0, 1] = 0.01\n" for i in range(15))
    + "p = "
    + " + ".join(f"w{i} * knn(x, 3)" for i in range(15))
    + " + (1 - "
    + " - ".join(f"w{i}" for i in range(15))
    + ") * knn(x, 2)\n"
    + QM,
}


@pytest.mark.parametrize("name", list(WORST))
def test_the_worst_inputs_end_within_five_seconds(name: str) -> None:
    text = WORST[name]
    icon_dsl.check("p = gaussian(x)\n" + QM)  # imports and caches are not the spec's cost
    for stage in (icon_dsl.check, icon_dsl.compile):
        seconds, result = _cpu(lambda: stage(text))  # noqa: B023
        assert seconds < 5.0, f"{stage.__name__} took {seconds:.1f} s of CPU"
        if isinstance(result, SpecError):
            assert result.codes
            unplaced = ("file", "missing-statement")  # about the whole spec
            assert all(d.span is not None for d in result.diagnostics if d.code not in unplaced)


# -- linear-time diagnostics -----------------------------------------------------------------


def test_a_spec_at_the_size_limit_renders_all_its_errors_within_a_second() -> None:
    # one error per statement, statements up to the limit, lines as long as the bytes allow
    line = "p = x  # " + "x" * 89 + "\n"  # 3 tokens, 99 bytes
    text = line * limits.MAX_STATEMENTS
    assert len(text.encode()) <= limits.MAX_SPEC_BYTES
    with pytest.raises(SpecError) as err:
        icon_dsl.check(text)
    diagnostics = err.value.diagnostics
    assert len(diagnostics) >= limits.MAX_STATEMENTS - 1
    source = Source(text, "big.icon")
    seconds, rendered = _cpu(lambda: Diagnostics(source, list(diagnostics)).render())
    assert seconds < 1.0
    assert isinstance(rendered, str)
    heads = [line for line in rendered.splitlines() if line.startswith("big.icon")]
    assert len(heads) == len(diagnostics)
    assert f"big.icon:{limits.MAX_STATEMENTS}:1:" in rendered


def test_rendering_builds_the_line_table_once() -> None:
    text = "p = x\n" * 500
    source = Source(text, "s.icon")
    diagnostics = Diagnostics(source)
    for i in range(0, len(text), 6):
        diagnostics.error("syntax", "x", Span(i, i + 1))
    diagnostics.render()
    table = source.__dict__["_line_starts"]
    diagnostics.render()
    assert source.__dict__["_line_starts"] is table and len(table) == 501


def test_long_lines_are_cut_around_the_span() -> None:
    text = "p = " + "a + " * 200 + "BAD + " + "b + " * 200 + "c\n"
    at = text.index("BAD")
    caret = Source(text).render_caret(Span(at, at + 3))
    source_line, carets = caret.split("\n")
    assert source_line.startswith("   1 | ...") and source_line.endswith("...")
    assert len(source_line) < 120
    assert source_line[carets.index("^") : carets.index("^") + 3] == "BAD"


def test_line_text_and_columns() -> None:
    source = Source("ab\n\ncde\nf")
    assert [source.line_text(n) for n in range(0, 6)] == ["", "ab", "", "cde", "f", ""]
    assert source.line_col(0) == (1, 1)
    assert source.line_col(4) == (3, 1)
    assert source.line_col(9) == (4, 2)


# -- checker gaps ----------------------------------------------------------------------------


def test_a_byte_order_mark_is_accepted_and_columns_stay_right() -> None:
    text = "\ufeffp = gaussian(x)\n" + QM
    icon_dsl.compile(text)
    with pytest.raises(SpecError) as err:
        icon_dsl.check("\ufeffp = gausian(x)\n" + QM)
    assert str(err.value).startswith("<string>:1:6: error: unknown distribution `gausian`")


def test_a_byte_order_mark_in_a_file_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.icon"
    path.write_bytes(b"\xef\xbb\xbf" + BUNDLED["simclr"].encode())
    assert icon_dsl.compile(path).class_name == icon_dsl.compile(BUNDLED["simclr"]).class_name


@pytest.mark.parametrize(
    "text",
    [
        "p = gaussian(sigma=1, x)\n" + QM,
        "p = knn(k=3, x)\n" + QM,
        "kernel c(d2, g) = 1 / (1 + d2 / g)\np = gaussian(x)\n"
        "q = normalize(c(metric=cosine, f(x), 1))\nmapper = table",
        "p = gaussian(x)\nq = gaussian(f(x))\nmapper = table(dim=2, 3)",
    ],
)
def test_a_positional_argument_after_a_keyword_is_refused(text: str) -> None:
    with pytest.raises(SpecError) as err:
        icon_dsl.check(text)
    assert err.value.codes == ["argument-order"]


@pytest.mark.parametrize(
    "text",
    [
        "param a in [0, 1] = 2\np = debias(gaussian(x), a)\n" + QM,
        "param a in [0.5, 1] = 0.25\np = debias(gaussian(x), a)\n" + QM,
        "param t = 0\np = gaussian(x, temperature=t)\n" + QM,
        "param k = 3.5\np = knn(x, k)\n" + QM,
        "param alpha = 1.5\np = debias(gaussian(x), alpha)\n" + QM,
    ],
)
def test_a_default_outside_its_domain_is_refused_at_check(text: str) -> None:
    with pytest.raises(SpecError) as err:
        icon_dsl.check(text)
    assert err.value.codes == ["domain"]
    diag = err.value.diagnostics[0]
    assert diag.span is not None and text[diag.span.start : diag.span.end].strip("()")


def test_defaults_inside_their_domain_compile_and_construct() -> None:
    text = "param a in [0, 1] = 1\nparam k = 3\np = debias(knn(x, k), a)\n" + QM
    icon_dsl.compile(text).load()()


# -- unused parameters -----------------------------------------------------------------------


def test_a_misspelt_param_warns_and_suggests_the_declared_one() -> None:
    checked = icon_dsl.check("param sigma = 0.3\np = gaussian(x, sigma=sigam)\n" + QM)
    warnings = [d for d in checked.notes if d.severity == "warning"]
    assert [d.code for d in warnings] == ["unused-param", "unused-param"]
    assert "`sigma` is declared but never used" in warnings[0].message
    assert warnings[1].help == "did you mean `sigma`?"


def test_an_unused_param_without_a_near_name_still_warns() -> None:
    checked = icon_dsl.check("param tau = 0.3\np = gaussian(x)\n" + QM)
    assert [d.code for d in checked.notes if d.severity == "warning"] == ["unused-param"]


@pytest.mark.parametrize("stem", list(BUNDLED))
def test_no_bundled_spec_has_an_unused_param(stem: str) -> None:
    assert not [d for d in icon_dsl.check(BUNDLED[stem]).notes if d.code == "unused-param"]


# -- no exception but SpecError ----------------------------------------------------------------

HOSTILE = [
    "0/0", "1/0", "(-1)^0.5", "10^10^10", "1e-99999999", "1e308*10", "^", "**", "(", ")",
    "[", "]", ",", "=", ";", "\n", "#", '"', '"\\"', "\ufeff", "\x00", "x", "f(x)", "y",
    "debias(", "normalize(", "union(", "-", "--", "p =", "q =", "param a =", "kernel k(d2) =",
    "kernel k(d2, a, a) = a", "method m", "sigma=", "1e300", "99999999999999999999",
    "d2^2^2^2^2^2", "exp(exp(exp(", "gaussian(sigma=1, x)", "in [0/0, 1]", "0.5 * ", " + ",
]  # fmt: skip

_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _check_and_compile(text: str) -> None:
    note(repr(text))
    try:
        icon_dsl.compile(text)
    except SpecError as err:
        assert err.codes
        str(err)


@_SETTINGS
@given(st.lists(st.sampled_from(HOSTILE), max_size=40).map(" ".join))
def test_random_hostile_token_sequences_give_spec_errors(text: str) -> None:
    _check_and_compile(text)


@_SETTINGS
@given(st.sampled_from(sorted(BUNDLED)), st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1),
       st.sampled_from(HOSTILE)), min_size=1, max_size=4))  # fmt: skip
def test_mutated_bundled_specs_give_modules_or_spec_errors(
    stem: str, edits: list[tuple[float, float, str]]
) -> None:
    """Each edit replaces up to 8 characters at a random place with a hostile token."""
    text = BUNDLED[stem]
    for where, length, token in edits:
        at = int(where * len(text))
        text = text[:at] + token + text[at + int(length * 8) :]
    _check_and_compile(text)


def test_the_limits_are_documented() -> None:
    text = (ROOT / "docs" / "security.md").read_text(encoding="utf-8")
    for value in (
        f"{limits.MAX_SPEC_BYTES:,} bytes",
        f"| {limits.MAX_TOKENS:,} |",
        f"| {limits.MAX_STATEMENTS:,} |",
        f"| {limits.MAX_DEPTH} |",
        f"| {limits.MAX_TERMS} |",
        f"| {limits.MAX_NUMBER_CHARS} |",
        f"{limits.MIN_MAGNITUDE:g} to {limits.MAX_MAGNITUDE:g}".replace("e-", "e-").replace(
            "+", ""
        ),
        f"| {limits.MAX_DEGREE} |",
        f"| {limits.MAX_FORMULA_OPERATIONS} |",
        f"| {limits.MAX_FORMULA_DEPTH} |",
    ):
        assert value in text, value
    for code in ("spec-too-large", "too-many-statements", "too-deep", "too-many-terms",
                 "number-size", "formula-too-large"):  # fmt: skip
        assert f"`{code}`" in text


def test_a_spec_file_over_the_limit_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "huge.icon"
    path.write_bytes(b"p = x\n" * 1_000_000)
    seconds, result = _cpu(lambda: icon_dsl.check(path))
    assert isinstance(result, SpecError) and result.codes == ["spec-too-large"]
    assert str(result) == (
        f"{path}: error: spec file {path} has 6,000,000 bytes, more than the limit of "
        f"{limits.MAX_SPEC_BYTES:,}  [spec-too-large]"
    )
    assert seconds < 0.5
