"""docs/errors.md: every diagnostic code with an example spec, run through the checker so that the
message shown is exactly what a user sees, and the command line's exit statuses."""

from __future__ import annotations

from pathlib import Path

from .. import limits
from ..api import compile as compile_spec
from ..diagnostics import CODES, SpecError
from ..pipeline import check
from ..source import Source
from ..usage import EXIT_CODES
from .common import GENERATED, GENERATED_END, table_cell

_M = "mapper = table\n"
_P = "p = gaussian(x)\n"
_Q = "q = gaussian(f(x))\n"

#: Codes that a compiler option raises, not `check`: the options their example compiles with.
COMPILE_OPTIONS: dict[str, dict[str, str]] = {"normaliser": {"normaliser": "exact"}}

#: One small spec per diagnostic code, run through the checker to show its exact message.
EXAMPLES: dict[str, str] = {
    "syntax": "p = gaussian(x, sigma=1\n" + _Q + _M,
    "duplicate-statement": _P + "p = knn(x, 5)\n" + _Q + _M,
    "missing-statement": _P + _M,
    "unknown-name": "p = gausian(x)\n" + _Q + _M,
    "unknown-statement": _P + _Q + _M + "lose = kl(p, q)\n",
    "arity": "p = knn(x)\n" + _Q + _M,
    "unknown-keyword": "p = gaussian(x, sigam=1)\n" + _Q + _M,
    "duplicate-argument": "p = gaussian(x, 1, sigma=2)\n" + _Q + _M,
    "bad-argument": "p = gaussian(x, metric=manhattan)\n" + _Q + _M,
    "domain": "p = debias(gaussian(x), 1.5)\n" + _Q + _M,
    "conflicting-arguments": "p = gaussian(x, sigma=1, temperature=0.5)\n" + _Q + _M,
    "shape-mismatch": "p = classes(y, 10)\n" + _Q + _M,
    "diagonal-mismatch": "p = gaussian(x, diagonal=true)\n" + _Q + _M,
    "joint-mismatch": "p = joint(gaussian(x))\n" + _Q + _M,
    "infinite-divergence": "p = knn(x, 5)\n" + _Q + _M + "loss = reverse_kl(p, q)\n",
    "not-row-stochastic": "kernel cauchy(d2, gamma) = 1 / (1 + d2 / gamma^2)\n"
    + _P
    + "q = cauchy(f(x), 1.0)\n"
    + _M,
    "mixture-weights": "p = a * gaussian(x) + (1 - a) * knn(x, 5)\n" + _Q + _M,
    "kernel-not-nonnegative": "kernel bad(d2, a) = a - d2\n"
    + _P
    + "q = normalize(bad(f(x), 1))\n"
    + _M,
    "kernel-not-positive": "kernel ramp(d2, a) = a * d2\n"
    + _P
    + "q = normalize(ramp(f(x), 1))\n"
    + _M,
    "kernel-definition": "kernel heat(t, d2) = exp(-d2 / t)\n" + _P + _Q + _M,
    "not-learnable": _P + "q = gaussian(x)\n" + _M,
    "p-depends-on-f": "p = gaussian(f(x))\n" + _Q + _M,
    "not-differentiable": _P + "q = knn(f(x), 5)\n" + _M,
    "wrong-role": "p = table\n" + _Q + _M,
    "empty-rows": "p = label(y)\n" + _Q + _M,
    "degenerate": "p = uniform()\n" + _Q + _M,
    "file": "",  # the example is a path that does not exist, below
    "normaliser": "p = joint(gaussian(x, perplexity=5))\nq = joint(student_t(f(x)))\n" + _M,
    "argument-order": "p = gaussian(sigma=1, x)\n" + _Q + _M,
    "unused-param": "param sigma = 0.3\np = gaussian(x, sigma=sigam)\n" + _Q + _M,
    "spec-too-large": "",  # LONG_EXAMPLES
    "too-many-statements": "",  # LONG_EXAMPLES
    "too-deep": "",  # LONG_EXAMPLES
    "too-many-terms": "p = union("
    + ", ".join(f"knn(x, {k})" for k in range(2, 19))
    + ")\n"
    + _Q
    + _M,
    "number-size": "p = gaussian(x, sigma=1e-400)\n" + _Q + _M,
    "formula-too-large": "",  # LONG_EXAMPLES
}

_BIG_KERNELS = limits.MAX_FORMULA_OPERATIONS // 12 + 1

#: Examples too long to show, as (what the spec is, the spec).
LONG_EXAMPLES: dict[str, tuple[str, str]] = {
    "spec-too-large": (
        f"a spec whose last line is a comment of {limits.MAX_SPEC_BYTES:,} characters",
        _P + _Q + _M + "# " + "x" * limits.MAX_SPEC_BYTES,
    ),
    "too-many-statements": (
        f"{limits.MAX_STATEMENTS + 1:,} lines of `p = x`",
        "p = x\n" * (limits.MAX_STATEMENTS + 1),
    ),
    "too-deep": (
        f"`p = normalize(normalize(...(x)...))`, {limits.MAX_DEPTH} calls deep",
        "p = " + "normalize(" * limits.MAX_DEPTH + "x" + ")" * limits.MAX_DEPTH + "\n" + _Q + _M,
    ),
    "formula-too-large": (
        f"{_BIG_KERNELS} kernels whose formulas have 12 operations each",
        "".join(f"kernel k{i}(d2) = exp(-d2" + " - d2" * 10 + ")\n" for i in range(_BIG_KERNELS))
        + _P
        + _M
        + "q = normalize(k0(f(x)))\n",
    ),
}

#: More examples of a code, each a case the checker once missed, shown after the first.
MORE_EXAMPLES: dict[str, tuple[str, ...]] = {
    "domain": (
        "param a in [0/0, 1] = 0.5\np = debias(gaussian(x), a)\n" + _Q + _M,
        "param a in [0, 1] = 2\np = debias(gaussian(x), a)\n" + _Q + _M,
        "p = gaussian(x, sigma=(-1)^0.5)\n" + _Q + _M,
    ),
    "duplicate-argument": (
        "kernel k(d2, a, a) = exp(-d2 / a)\n" + _P + "q = normalize(k(f(x), 1, 2))\n" + _M,
    ),
    "number-size": ("p = gaussian(x, sigma=10^10^10)\n" + _Q + _M,),
}

_ERRORS_INTRO = """\
# icon-dsl diagnostics

Every problem in a spec is reported at once, each with a stable code in brackets. Errors stop
compilation (`icon-dsl check` exits 1); notes do not. Each message shows `file:line:col` (1-based),
the source line with the culprit underlined, and a help line where a fix is known. The examples
below are run through the checker whenever the docs are built, so their messages are exact."""

#: The spec file name examples are shown under.
EXAMPLE_NAME = "example.icon"
MISSING_FILE = "specs/missing.icon"


def example_report(code: str, text: str | None = None) -> tuple[str, str, str]:
    """The example spec for `code` (or `text`), the report the checker gives for it, and its
    severity."""
    if text is None:
        text = LONG_EXAMPLES[code][1] if code in LONG_EXAMPLES else EXAMPLES[code]
    spec: Source | Path = Path(MISSING_FILE) if code == "file" else Source(text, EXAMPLE_NAME)
    try:
        if code in COMPILE_OPTIONS:
            compile_spec(spec, **COMPILE_OPTIONS[code])
        checked = check(spec)
    except SpecError as err:
        diagnostics, report = err.diagnostics, str(err)
    else:
        diagnostics = checked.notes
        report = "\n".join(d.render(checked.ir.source) for d in checked.notes)
    severities = [d.severity for d in diagnostics if d.code == code]
    if not severities:
        raise ValueError(f"the example for {code!r} does not produce it:\n{report}")
    return text, report, severities[0]


def errors_markdown() -> str:
    """docs/errors.md: every diagnostic code, what it means, an example and its exact message."""
    missing = sorted(set(CODES) - set(EXAMPLES))
    if missing:
        raise ValueError(f"docs.EXAMPLES has no example for {', '.join(missing)}")
    out = [
        GENERATED + GENERATED_END,
        "",
        _ERRORS_INTRO,
        "",
        "| code | meaning |",
        "|---|---|",
    ]
    out += [f"| [`{code}`](#{code}) | {table_cell(text)} |" for code, text in CODES.items()]
    for code, meaning in CODES.items():
        text, report, severity = example_report(code)
        out += ["", f"## {code}", "", f"{severity.capitalize()}: {meaning}.", ""]
        if code == "file":
            out += [f"`icon-dsl check {MISSING_FILE}`, where the file does not exist:", ""]
        elif code in COMPILE_OPTIONS:
            command = " ".join(f"--{k} {v}" for k, v in COMPILE_OPTIONS[code].items())
            out += [f"`icon-dsl compile {command} {EXAMPLE_NAME}`, where `{EXAMPLE_NAME}` is:", ""]
            out += ["```", text.rstrip("\n"), "```", ""]
        elif code in LONG_EXAMPLES:
            out += [f"`{EXAMPLE_NAME}`, {LONG_EXAMPLES[code][0]}:", ""]
        else:
            out += [f"`{EXAMPLE_NAME}`:", "", "```", text.rstrip("\n"), "```", ""]
        out += ["```", report, "```"]
        for more in MORE_EXAMPLES.get(code, ()):
            _, report, _ = example_report(code, more)
            out += ["", f"`{EXAMPLE_NAME}`:", "", "```", more.rstrip("\n"), "```", ""]
            out += ["```", report, "```"]
    out += ["", *_exit_codes()]
    return "\n".join(out) + "\n"


_EXIT_INTRO = """\
Every command ends in a message and one of these exit statuses; a traceback is shown only for a
bug in icon-dsl itself. `icon-dsl train`'s messages name the file, the argument or the parameter
at fault (docs/training.md)."""


def _exit_codes() -> list[str]:
    """The exit statuses of the command line, from ``usage.EXIT_CODES``."""
    rows = [f"| {code} | {table_cell(meaning)} |" for code, meaning in EXIT_CODES.items()]
    return ["## Exit statuses", "", _EXIT_INTRO, "", "| status | meaning |", "|---|---|", *rows]
