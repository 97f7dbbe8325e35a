"""Golden error messages: every diagnostic code, its full rendered text pinned exactly.

Each case is a small bad spec and the complete `str(SpecError)` (or, for notes, the rendered note)
it must produce: the file:line:col head, the source line, the carets and the help line. A test
below fails when `diagnostics.CODES` gains a code without a golden case here. The CLI tests check
the exit statuses (0 ok, 1 errors, 2 usage) and that no user mistake shows a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pytest

import icon_dsl
from icon_dsl.cli import main
from icon_dsl.diagnostics import CODES, SpecError
from icon_dsl.source import Source

_QM = "q = gaussian(f(x))\nmapper = table\n"


class Case(NamedTuple):
    id: str
    code: str
    spec: str
    expected: str


def rendered(spec: str | Path | Source) -> tuple[list[str], str]:
    """The codes and the full report of a spec: its errors, or its notes when it is accepted."""
    try:
        checked = icon_dsl.check(spec)
    except SpecError as err:
        return err.codes, str(err) + "\n"
    source = checked.ir.source
    notes = [n.render(source) for n in checked.notes]
    return [n.code for n in checked.notes], "".join(n + "\n" for n in notes)


CASES: list[Case] = [
    Case(
        "syntax",
        "syntax",
        """\
p = gaussian(x, sigma=1
q = gaussian(f(x))
mapper = table
""",
        """\
bad.icon:2:1: error: unexpected 'q'; expected ')', ',', '+', '-', '*', '/', ...  [syntax]
   2 | q = gaussian(f(x))
     | ^
  help: the '(' at line 1, column 13 is never closed: add ')'
""",
    ),
    Case(
        "syntax-character",
        "syntax",
        """\
p = gaussian(x) @ 2
q = gaussian(f(x))
mapper = table
""",
        """\
bad.icon:1:17: error: unexpected character '@'  [syntax]
   1 | p = gaussian(x) @ 2
     |                 ^
""",
    ),
    Case(
        "syntax-statement",
        "syntax",
        """\
p gaussian(x)
q = gaussian(f(x))
mapper = table
""",
        """\
bad.icon:1:3: error: unexpected 'gaussian'; expected '='  [syntax]
   1 | p gaussian(x)
     |   ^^^^^^^^
""",
    ),
    Case(
        "syntax-string",
        "syntax",
        'method m "a \\q"\np = gaussian(x)\nq = gaussian(f(x))\nmapper = table\n',
        'bad.icon:1:10: error: invalid string "a \\q": invalid \\escape  [syntax]\n   1 | method m "a \\q"\n     |          ^^^^^^\n  help: strings take the escapes \\" \\\\ \\n \\t \\uXXXX\n',
    ),
    Case(
        "number-size-literal",
        "number-size",
        """\
p = gaussian(x, sigma=1e999)
q = gaussian(f(x))
mapper = table
""",
        """\
bad.icon:1:23: error: the number 1e999 is too large  [number-size]
   1 | p = gaussian(x, sigma=1e999)
     |                       ^^^^^
  help: numbers are 0 or between 1e-300 and 1e+300 in size, written in at most 64 characters
""",
    ),
    Case(
        "syntax-end",
        "syntax",
        """\
p = gaussian(x)
q = gaussian(f(x))
mapper = table(dim=2,""",
        """\
bad.icon:3:22: error: unexpected end of the spec; expected an expression  [syntax]
   3 | mapper = table(dim=2,
     |                      ^
""",
    ),
    Case(
        "syntax-comma",
        "syntax",
        """\
p = gaussian(x sigma=1)
q = gaussian(f(x))
mapper = table
""",
        """\
bad.icon:1:16: error: unexpected 'sigma'; expected ')', ',', '=', '+', '-', '*', ...  [syntax]
   1 | p = gaussian(x sigma=1)
     |                ^^^^^
  help: separate arguments with ','
""",
    ),
    Case(
        "syntax-separator",
        "syntax",
        """\
p = gaussian(x) q = gaussian(f(x))
mapper = table
""",
        """\
bad.icon:1:17: error: unexpected 'q'; expected ';', a new line, the end of the spec, '+', '-', '*', ...  [syntax]
   1 | p = gaussian(x) q = gaussian(f(x))
     |                 ^
  help: one statement at a time: end the statement with a new line or ';'
""",
    ),
    Case(
        "syntax-interval",
        "syntax",
        """\
param a in [0 1]
p = gaussian(x, sigma=a)
q = gaussian(f(x))
mapper = table
""",
        """\
bad.icon:1:15: error: unexpected '1'; expected ',', '+', '-', '*', '/', '^', ...  [syntax]
   1 | param a in [0 1]
     |               ^
  help: write the interval as `in [LO, HI]`
""",
    ),
    Case(
        "syntax-several",
        "syntax",
        """\
p = gaussian(x,, 1)
q = gaussian(f(x)) +
mapper = table(dim 2)
""",
        """\
bad.icon:1:16: error: unexpected ','; expected an expression  [syntax]
   1 | p = gaussian(x,, 1)
     |                ^
bad.icon:2:21: error: unexpected end of line; expected an expression  [syntax]
   2 | q = gaussian(f(x)) +
     |                     ^
bad.icon:3:20: error: unexpected '2'; expected ')', ',', '=', '+', '-', '*', ...  [syntax]
   3 | mapper = table(dim 2)
     |                    ^
  help: separate arguments with ','
""",
    ),
    Case(
        "duplicate-statement",
        "duplicate-statement",
        """\
p = gaussian(x)
p = knn(x, 5)
q = gaussian(f(x))
mapper = table
""",
        """\
bad.icon:2:1: error: `p` is assigned twice  [duplicate-statement]
   2 | p = knn(x, 5)
     | ^^^^^^^^^^^^^
""",
    ),
    Case(
        "duplicate-method",
        "duplicate-statement",
        """\
method a
method b
p = gaussian(x)
q = gaussian(f(x))
mapper = table
""",
        """\
bad.icon:2:1: error: `method` is given twice  [duplicate-statement]
   2 | method b
     | ^^^^^^^^
""",
    ),
    Case(
        "duplicate-param",
        "duplicate-statement",
        """\
param s = 1
param s = 2
p = gaussian(x, sigma=s)
q = gaussian(f(x))
mapper = table
""",
        """\
bad.icon:2:1: error: param `s` is declared twice  [duplicate-statement]
   2 | param s = 2
     | ^^^^^^^^^^^
""",
    ),
    Case(
        "duplicate-kernel",
        "duplicate-statement",
        """\
kernel k(d2) = exp(-d2)
kernel k(d2) = 1 / (1 + d2)
p = gaussian(x)
q = normalize(k(f(x)))
mapper = table
""",
        """\
bad.icon:2:1: error: kernel `k` is defined twice  [duplicate-statement]
   2 | kernel k(d2) = 1 / (1 + d2)
     | ^^^^^^^^^^^^^^^^^^^^^^^^^^^
""",
    ),
    Case(
        "missing-statement",
        "missing-statement",
        """\
p = gaussian(x)
mapper = table
""",
        """\
bad.icon: error: the spec has no q (the learned distribution)  [missing-statement]
  help: add `q = gaussian(f(x), sigma=1)`
""",
    ),
    Case(
        "missing-all",
        "missing-statement",
        """\
# nothing here
""",
        """\
bad.icon: error: the spec has no mapper  [missing-statement]
  help: add `mapper = table(dim=2)`
bad.icon: error: the spec has no p (the supervisory distribution)  [missing-statement]
  help: add `p = gaussian(x, sigma=1)`
bad.icon: error: the spec has no q (the learned distribution)  [missing-statement]
  help: add `q = gaussian(f(x), sigma=1)`
""",
    ),
    Case(
        "unknown-name",
        "unknown-name",
        """\
p = gausian(x)
q = gaussian(f(x))
mapper = table
""",
        """\
bad.icon:1:5: error: unknown distribution `gausian`  [unknown-name]
   1 | p = gausian(x)
     |     ^^^^^^^
  help: did you mean `gaussian`?
""",
    ),
    Case(
        "unknown-mapper",
        "unknown-name",
        """\
p = gaussian(x)
q = gaussian(f(x))
mapper = mlpp(dim=2)
""",
        """\
bad.icon:3:10: error: unknown mapper `mlpp`  [unknown-name]
   3 | mapper = mlpp(dim=2)
     |          ^^^^
  help: did you mean `mlp`?
""",
    ),
    Case(
        "unknown-divergence",
        "unknown-name",
        """\
p = gaussian(x)
q = gaussian(f(x))
mapper = table
loss = kld(p, q)
""",
        """\
bad.icon:4:8: error: unknown divergence `kld`; loss is one of kl, reverse_kl, js  [unknown-name]
   4 | loss = kld(p, q)
     |        ^^^
  help: did you mean `kl`?
""",
    ),
    Case(
        "unknown-statement",
        "unknown-statement",
        """\
p = gaussian(x)
q = gaussian(f(x))
maper = table
mapper = table
""",
        """\
bad.icon:3:1: error: cannot assign to `maper`: a spec assigns p, q, mapper and loss  [unknown-statement]
   3 | maper = table
     | ^^^^^
  help: did you mean `mapper`?
""",
    ),
    Case(
        "arity",
        "arity",
        """\
p = knn(x)
q = gaussian(f(x))
mapper = table
""",
        """\
bad.icon:1:5: error: knn() is missing its argument `k`  [arity]
   1 | p = knn(x)
     |     ^^^^^^
""",
    ),
    Case(
        "arity-too-many",
        "arity",
        """\
p = label(y, 3)
q = gaussian(f(x))
mapper = table
""",
        """\
bad.icon:1:14: error: label() takes at most 1 positional argument(s), got 2  [arity]
   1 | p = label(y, 3)
     |              ^
""",
    ),
    Case(
        "unknown-keyword",
        "unknown-keyword",
        """\
p = gaussian(x, sigam=1)
q = gaussian(f(x))
mapper = table
""",
        """\
bad.icon:1:17: error: gaussian() has no argument `sigam`  [unknown-keyword]
   1 | p = gaussian(x, sigam=1)
     |                 ^^^^^
  help: did you mean `sigma`?
""",
    ),
    Case(
        "unknown-keyword-nohint",
        "unknown-keyword",
        """\
p = knn(x, 5, width=1)
q = gaussian(f(x))
mapper = table
""",
        """\
bad.icon:1:15: error: knn() has no argument `width`  [unknown-keyword]
   1 | p = knn(x, 5, width=1)
     |               ^^^^^
  help: its arguments: v, k, metric
""",
    ),
    Case(
        "duplicate-argument",
        "duplicate-argument",
        """\
p = gaussian(x, 1, sigma=2)
q = gaussian(f(x))
mapper = table
""",
        """\
bad.icon:1:20: error: argument `sigma` is given twice  [duplicate-argument]
   1 | p = gaussian(x, 1, sigma=2)
     |                    ^^^^^^^
""",
    ),
    Case(
        "bad-argument",
        "bad-argument",
        """\
p = gaussian(x, metric=manhattan)
q = gaussian(f(x))
mapper = table
""",
        """\
bad.icon:1:17: error: metric must be one of euclidean, cosine, dot; got `manhattan`  [bad-argument]
   1 | p = gaussian(x, metric=manhattan)
     |                 ^^^^^^^^^^^^^^^^
""",
    ),
    Case(
        "bad-argument-bool",
        "bad-argument",
        """\
p = gaussian(x, diagonal=yes)
q = gaussian(f(x))
mapper = table
""",
        """\
bad.icon:1:17: error: diagonal must be true or false  [bad-argument]
   1 | p = gaussian(x, diagonal=yes)
     |                 ^^^^^^^^^^^^
""",
    ),
    Case(
        "bad-argument-input",
        "bad-argument",
        """\
p = label(x)
q = gaussian(f(x))
mapper = table
""",
        """\
bad.icon:1:11: error: label() needs y as `y`, got `x`  [bad-argument]
   1 | p = label(x)
     |           ^
""",
    ),
    Case(
        "bad-argument-mapper-input",
        "bad-argument",
        """\
p = gaussian(x)
q = gaussian(f(y))
mapper = table
""",
        """\
bad.icon:2:14: error: the mapper is applied to the features: write f(x)  [bad-argument]
   2 | q = gaussian(f(y))
     |              ^^^^
""",
    ),
    Case(
        "bad-argument-perplexity",
        "bad-argument",
        """\
p = gaussian(x)
q = gaussian(f(x), perplexity=30)
mapper = table
""",
        """\
bad.icon:2:5: error: perplexity calibrates sigma_i on inputs; it cannot apply to f(x) or prototypes  [bad-argument]
   2 | q = gaussian(f(x), perplexity=30)
     |     ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  help: give a fixed width: sigma=... or temperature=...
""",
    ),
    Case(
        "bad-argument-reserved",
        "bad-argument",
        """\
param sigma = 1
param knn = 2
p = gaussian(x)
q = gaussian(f(x))
mapper = table
""",
        """\
bad.icon:2:7: error: `knn` is a name of the language and cannot be redefined  [bad-argument]
   2 | param knn = 2
     |       ^^^
""",
    ),
    Case(
        "bad-argument-loss",
        "bad-argument",
        """\
p = gaussian(x)
q = gaussian(f(x))
mapper = table
loss = kl(q, p)
""",
        """\
bad.icon:4:8: error: the divergence compares the spec's p and q: write kl(p, q)  [bad-argument]
   4 | loss = kl(q, p)
     |        ^^^^^^^^
""",
    ),
    Case(
        "bad-argument-number",
        "bad-argument",
        """\
p = gaussian(x, sigma=knn)
q = gaussian(f(x))
mapper = table
""",
        """\
bad.icon:1:23: error: expected a number or a hyperparameter, got `knn`  [bad-argument]
   1 | p = gaussian(x, sigma=knn)
     |                       ^^^
""",
    ),
    Case(
        "domain",
        "domain",
        """\
p = gaussian(x, sigma=0)
q = gaussian(f(x))
mapper = table
""",
        """\
bad.icon:1:17: error: sigma = 0 is outside its domain: 1e-15 <= sigma <= 1e15  [domain]
   1 | p = gaussian(x, sigma=0)
     |                 ^^^^^^^
""",
    ),
    Case(
        "domain-alpha",
        "domain",
        """\
p = debias(gaussian(x), 1.5)
q = gaussian(f(x))
mapper = table
""",
        """\
bad.icon:1:25: error: alpha = 1.5 is outside its domain: 0 <= alpha <= 1  [domain]
   1 | p = debias(gaussian(x), 1.5)
     |                         ^^^
""",
    ),
    Case(
        "domain-integer",
        "domain",
        """\
p = knn(x, 2.5)
q = gaussian(f(x))
mapper = table
""",
        """\
bad.icon:1:12: error: k = 2.5 is outside its domain: k an integer from 1 to 1048576  [domain]
   1 | p = knn(x, 2.5)
     |            ^^^
""",
    ),
    Case(
        "domain-interval",
        "domain",
        """\
param a in [1, 0]
p = gaussian(x, sigma=a)
q = gaussian(f(x))
mapper = table
""",
        """\
bad.icon:1:1: error: empty interval [1.0, 0.0] for `a`  [domain]
   1 | param a in [1, 0]
     | ^^^^^^^^^^^^^^^^^
""",
    ),
    Case(
        "conflicting-arguments",
        "conflicting-arguments",
        """\
p = gaussian(x, sigma=1, temperature=0.5)
q = gaussian(f(x))
mapper = table
""",
        """\
bad.icon:1:5: error: gaussian() takes one of sigma, temperature, perplexity; got sigma and temperature  [conflicting-arguments]
   1 | p = gaussian(x, sigma=1, temperature=0.5)
     |     ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
""",
    ),
    Case(
        "shape-mismatch",
        "shape-mismatch",
        """\
p = classes(y, 10)
q = gaussian(f(x))
mapper = table
""",
        """\
bad.icon:2:5: error: p is N x 10 (columns) but q is N x N, j != i: they must be distributions over the same support  [shape-mismatch]
   2 | q = gaussian(f(x))
     |     ^^^^^^^^^^^^^^
  help: use classes(y, n) against prototypes(n) with the same n, or pairwise kernels on both sides
""",
    ),
    Case(
        "shape-mismatch-columns",
        "shape-mismatch",
        """\
p = classes(y, 10)
q = gaussian(f(x), prototypes(5))
mapper = table
""",
        """\
bad.icon:2:5: error: p is N x 10 (columns) but q is N x 5 (columns): they must be distributions over the same support  [shape-mismatch]
   2 | q = gaussian(f(x), prototypes(5))
     |     ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  help: use classes(y, n) against prototypes(n) with the same n, or pairwise kernels on both sides
""",
    ),
    Case(
        "shape-mismatch-mixture",
        "shape-mismatch",
        """\
p = 0.5 * gaussian(x) + 0.5 * gaussian(x, diagonal=true)
q = gaussian(f(x))
mapper = table
""",
        """\
bad.icon:1:31: error: mixture components have different supports: N x N, j != i and N x N, j = i included  [shape-mismatch]
   1 | p = 0.5 * gaussian(x) + 0.5 * gaussian(x, diagonal=true)
     |                               ^^^^^^^^^^^^^^^^^^^^^^^^^^
""",
    ),
    Case(
        "diagonal-mismatch",
        "diagonal-mismatch",
        """\
p = gaussian(x, diagonal=true)
q = gaussian(f(x))
mapper = table
""",
        """\
bad.icon:2:5: error: p is over N x N, j = i included but q over N x N, j != i  [diagonal-mismatch]
   2 | q = gaussian(f(x))
     |     ^^^^^^^^^^^^^^
  help: the divergence is infinite where one side has mass at j = i and the other excludes it; pass the same diagonal= to both (k-means-style specs include j = i on both sides)
""",
    ),
    Case(
        "not-row-stochastic",
        "not-row-stochastic",
        """\
kernel cauchy(d2, gamma) = 1 / (1 + d2 / gamma^2)
p = gaussian(x)
q = cauchy(f(x), 1.0)
mapper = table
""",
        """\
bad.icon:3:5: error: q must be row-stochastic, but cauchy(f(x), 1.0) is raw weights  [not-row-stochastic]
   3 | q = cauchy(f(x), 1.0)
     |     ^^^^^^^^^^^^^^^^^
  help: wrap it: normalize(cauchy(f(x), 1.0))
""",
    ),
    Case(
        "mixture-weights",
        "mixture-weights",
        """\
p = 0.5 * gaussian(x) + 0.6 * knn(x, 5)
q = gaussian(f(x))
mapper = table
""",
        """\
bad.icon:1:5: error: mixture weights sum to 1.1, not 1  [mixture-weights]
   1 | p = 0.5 * gaussian(x) + 0.6 * knn(x, 5)
     |     ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  help: make the weights sum to 1, e.g. a * d1 + (1 - a) * d2
""",
    ),
    Case(
        "mixture-weights-sign",
        "mixture-weights",
        """\
p = a * gaussian(x) + (1 - a) * knn(x, 5)
q = gaussian(f(x))
mapper = table
""",
        """\
bad.icon:1:5: error: cannot prove the mixture weight a nonnegative  [mixture-weights]
   1 | p = a * gaussian(x) + (1 - a) * knn(x, 5)
     |     ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  help: declare the domain: param a in [0, 1]
bad.icon:1:5: error: cannot prove the mixture weight 1 - a nonnegative  [mixture-weights]
   1 | p = a * gaussian(x) + (1 - a) * knn(x, 5)
     |     ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  help: declare the domain: param a in [0, 1]
""",
    ),
    Case(
        "mixture-weights-subtract",
        "mixture-weights",
        """\
p = gaussian(x) - knn(x, 5)
q = gaussian(f(x))
mapper = table
""",
        """\
bad.icon:1:5: error: a mixture is a sum of weighted distributions: a * d1 + b * d2  [mixture-weights]
   1 | p = gaussian(x) - knn(x, 5)
     |     ^^^^^^^^^^^^^^^^^^^^^^^
  help: weights must be numbers or hyperparameters; distributions cannot be subtracted
""",
    ),
    Case(
        "kernel-not-nonnegative",
        "kernel-not-nonnegative",
        """\
kernel bad(d2, a) = a - d2
p = gaussian(x)
q = normalize(bad(f(x), 1))
mapper = table
""",
        """\
bad.icon:1:1: error: cannot prove kernel `bad` nonnegative for d2 >= 0 and positive arguments  [kernel-not-nonnegative]
   1 | kernel bad(d2, a) = a - d2
     | ^^^^^^^^^^^^^^^^^^^^^^^^^^
  help: weights must be >= 0: use exp(...), squares or 1 / (1 + ...)
""",
    ),
    Case(
        "kernel-definition",
        "kernel-definition",
        """\
kernel bad(a, d2) = exp(-d2)
p = gaussian(x)
q = gaussian(f(x))
mapper = table
""",
        """\
bad.icon:1:12: error: the first argument of kernel `bad` must be `d2`, the squared distance  [kernel-definition]
   1 | kernel bad(a, d2) = exp(-d2)
     |            ^
  help: kernel bad(d2, ...) = ...
""",
    ),
    Case(
        "kernel-definition-formula",
        "kernel-definition",
        """\
kernel bad(d2) = tanh(d2)
p = gaussian(x)
q = gaussian(f(x))
mapper = table
""",
        """\
bad.icon:1:18: error: a kernel formula uses numbers, its arguments, + - * / ^ and exp, log, sqrt, abs  [kernel-definition]
   1 | kernel bad(d2) = tanh(d2)
     |                  ^^^^^^^^
""",
    ),
    Case(
        "kernel-not-positive",
        "kernel-not-positive",
        """\
kernel ramp(d2, a) = a * d2
p = gaussian(x)
q = debias(normalize(ramp(f(x), 2)), 0.5)
mapper = mlp(dim=4)
""",
        """\
bad.icon:3:22: error: kernel `ramp` can be 0 (sympy cannot prove a*d2 > 0 for d2 >= 0), so q can be 0 where p has mass, or 0 / 0 on a row  [kernel-not-positive]
   3 | q = debias(normalize(ramp(f(x), 2)), 0.5)
     |                      ^^^^^^^^^^^^^
  help: a kernel of f(x) needs a positive weight: exp(...), 1 / (1 + ...), or add a constant
""",
    ),
    Case(
        "infinite-divergence",
        "infinite-divergence",
        """\
p = knn(x, 5)
q = gaussian(f(x))
mapper = table
loss = reverse_kl(p, q)
""",
        """\
bad.icon:1:5: error: reverse_kl(p, q) = KL(q || p) is infinite: q puts mass where this p is zero  [infinite-divergence]
   1 | p = knn(x, 5)
     |     ^^^^^^^^^
  help: use a p with full support (a gaussian or student_t kernel, or debias(...)), or kl(p, q)
""",
    ),
    Case(
        "joint-mismatch",
        "joint-mismatch",
        """\
p = joint(gaussian(x))
q = gaussian(f(x))
mapper = table
""",
        """\
bad.icon:2:5: error: joint() normalises over the whole matrix: p and q must both be joint or both not  [joint-mismatch]
   2 | q = gaussian(f(x))
     |     ^^^^^^^^^^^^^^
  help: wrap both sides: p = joint(...), q = joint(...)
""",
    ),
    Case(
        "not-learnable",
        "not-learnable",
        """\
p = gaussian(x)
q = gaussian(x)
mapper = table
""",
        """\
bad.icon:2:5: error: q does not depend on f(x) or prototypes, so there is nothing to learn  [not-learnable]
   2 | q = gaussian(x)
     |     ^^^^^^^^^^^
  help: build q from the mapper's output, e.g. gaussian(f(x))
""",
    ),
    Case(
        "p-depends-on-f",
        "p-depends-on-f",
        """\
p = gaussian(f(x))
q = gaussian(f(x))
mapper = table
""",
        """\
bad.icon:1:5: error: p depends on f(x); the supervisory distribution must come from the data  [p-depends-on-f]
   1 | p = gaussian(f(x))
     |     ^^^^^^^^^^^^^^
  help: build p from x, y or index
""",
    ),
    Case(
        "not-differentiable",
        "not-differentiable",
        """\
p = gaussian(x)
q = knn(f(x), 5)
mapper = table
""",
        """\
bad.icon:2:5: error: knn() is not differentiable, so it cannot carry the gradient of q  [not-differentiable]
   2 | q = knn(f(x), 5)
     |     ^^^^^^^^^^^^
  help: use it in p, and a smooth kernel (gaussian, student_t) in q
""",
    ),
    Case(
        "wrong-role",
        "wrong-role",
        """\
p = table
q = gaussian(f(x))
mapper = table
""",
        """\
bad.icon:1:5: error: `table` is a mapper, but a distribution is needed here  [wrong-role]
   1 | p = table
     |     ^^^^^
""",
    ),
    Case(
        "wrong-role-data",
        "wrong-role",
        """\
p = x
q = gaussian(f(x))
mapper = table
""",
        """\
bad.icon:1:5: error: `x` is data, not a distribution  [wrong-role]
   1 | p = x
     |     ^
  help: build one from it, e.g. gaussian(x)
""",
    ),
    Case(
        "wrong-role-mapper",
        "wrong-role",
        """\
p = gaussian(x)
q = gaussian(f(x))
mapper = 2
""",
        """\
bad.icon:3:10: error: mapper must be one of table, linear, mlp  [wrong-role]
   3 | mapper = 2
     |          ^
""",
    ),
    Case(
        "wrong-role-number",
        "wrong-role",
        """\
p = 1
q = gaussian(f(x))
mapper = table
""",
        """\
bad.icon:1:5: error: expected a distribution such as gaussian(x)  [wrong-role]
   1 | p = 1
     |     ^
""",
    ),
    Case(
        "empty-rows",
        "empty-rows",
        """\
p = label(y)
q = gaussian(f(x))
mapper = table
""",
        """\
bad.icon:1:5: note: rows of p may be empty (a label or sample seen once in a batch); they are left out of the mean and counted  [empty-rows]
   1 | p = label(y)
     |     ^^^^^^^^
""",
    ),
    Case(
        "argument-order",
        "argument-order",
        """\
p = gaussian(sigma=1, x)
q = gaussian(f(x))
mapper = table
""",
        """\
bad.icon:1:23: error: a positional argument after the keyword argument `sigma`  [argument-order]
   1 | p = gaussian(sigma=1, x)
     |                       ^
  help: give positional arguments first, or name this one too
""",
    ),
    Case(
        "unused-param",
        "unused-param",
        """\
param sigma = 0.3
p = gaussian(x, sigma=sigam)
q = gaussian(f(x))
mapper = table
""",
        """\
bad.icon:1:7: warning: param `sigma` is declared but never used  [unused-param]
   1 | param sigma = 0.3
     |       ^^^^^
  help: `sigam` is used instead: did you mean `sigma` there?
bad.icon:2:23: warning: `sigam` is not declared: it becomes a hyperparameter with no default  [unused-param]
   2 | p = gaussian(x, sigma=sigam)
     |                       ^^^^^
  help: did you mean `sigma`?
""",
    ),
    Case(
        "unused-param-plain",
        "unused-param",
        """\
param tau = 0.3
p = gaussian(x)
q = gaussian(f(x))
mapper = table
""",
        """\
bad.icon:1:7: warning: param `tau` is declared but never used  [unused-param]
   1 | param tau = 0.3
     |       ^^^
  help: remove it or use it
""",
    ),
    Case(
        "number-size-power",
        "number-size",
        """\
p = gaussian(x, sigma=10^10^10)
q = gaussian(f(x))
mapper = table
""",
        """\
bad.icon:1:23: error: this power is about 10^10000000000, too large  [number-size]
   1 | p = gaussian(x, sigma=10^10^10)
     |                       ^^^^^^^^
  help: numbers are 0 or between 1e-300 and 1e+300 in size, written in at most 64 characters
""",
    ),
    Case(
        "number-size-small",
        "number-size",
        """\
p = gaussian(x, sigma=1e-99999999)
q = gaussian(f(x))
mapper = table
""",
        """\
bad.icon:1:23: error: the number 1e-99999999 is too small (it is not 0)  [number-size]
   1 | p = gaussian(x, sigma=1e-99999999)
     |                       ^^^^^^^^^^^
  help: numbers are 0 or between 1e-300 and 1e+300 in size, written in at most 64 characters
""",
    ),
    Case(
        "number-size-product",
        "number-size",
        """\
p = gaussian(x, sigma=1e300 * 1e300)
q = gaussian(f(x))
mapper = table
""",
        """\
bad.icon:1:23: error: `1e300 * 1e300` is too large (about 10^600)  [number-size]
   1 | p = gaussian(x, sigma=1e300 * 1e300)
     |                       ^^^^^^^^^^^^^
  help: numbers are 0 or between 1e-300 and 1e+300 in size, written in at most 64 characters
""",
    ),
    Case(
        "number-size-kernel-power",
        "number-size",
        """\
kernel k(d2) = 1 / (1 + d2)^1000
p = gaussian(x)
q = normalize(k(f(x)))
mapper = table
""",
        """\
bad.icon:1:20: error: the powers in this formula multiply to 1000, more than 16  [number-size]
   1 | kernel k(d2) = 1 / (1 + d2)^1000
     |                    ^^^^^^^^^^^^^
  help: symbolic proofs expand powers: use smaller exponents
""",
    ),
    Case(
        "domain-zero-by-zero-interval",
        "domain",
        """\
param a in [0/0, 1] = 0.5
p = debias(gaussian(x), a)
q = gaussian(f(x))
mapper = table
""",
        """\
bad.icon:1:13: error: `0 / 0` is not a finite real number  [domain]
   1 | param a in [0/0, 1] = 0.5
     |             ^^^
  help: it divides by zero, or takes a fractional power of a negative number
""",
    ),
    Case(
        "domain-division-by-zero",
        "domain",
        """\
p = knn(x, 1/0)
q = gaussian(f(x))
mapper = table
""",
        """\
bad.icon:1:12: error: `1 / 0` is not a finite real number  [domain]
   1 | p = knn(x, 1/0)
     |            ^^^
  help: it divides by zero, or takes a fractional power of a negative number
""",
    ),
    Case(
        "domain-complex-default",
        "domain",
        """\
param s = (-1)^0.5
p = gaussian(x, sigma=s)
q = gaussian(f(x))
mapper = table
""",
        """\
bad.icon:1:11: error: `(-1) ^ 0.5` is not a finite real number  [domain]
   1 | param s = (-1)^0.5
     |           ^^^^^^^^
  help: it divides by zero, or takes a fractional power of a negative number
""",
    ),
    Case(
        "domain-complex-weight",
        "domain",
        """\
p = (-1)^0.5 * knn(x, 3) + 0.5 * gaussian(x)
q = gaussian(f(x))
mapper = table
""",
        """\
bad.icon:1:5: error: `(-1) ^ 0.5` is not a finite real number  [domain]
   1 | p = (-1)^0.5 * knn(x, 3) + 0.5 * gaussian(x)
     |     ^^^^^^^^
  help: it divides by zero, or takes a fractional power of a negative number
""",
    ),
    Case(
        "domain-default-outside-interval",
        "domain",
        """\
param a in [0, 1] = 2
p = debias(gaussian(x), a)
q = gaussian(f(x))
mapper = table
""",
        """\
bad.icon:1:21: error: the default a = 2 is outside its domain: 0 <= a <= 1  [domain]
   1 | param a in [0, 1] = 2
     |                     ^
""",
    ),
    Case(
        "domain-default-outside-slot",
        "domain",
        """\
param t = -1
p = gaussian(x, temperature=t)
q = gaussian(f(x))
mapper = table
""",
        """\
bad.icon:1:11: error: the default t = -1 is outside its domain: 1e-30 <= t <= 1e30  [domain]
   1 | param t = -1
     |           ^^
""",
    ),
    Case(
        "domain-default-not-integer",
        "domain",
        """\
param k = 2.5
p = knn(x, k)
q = gaussian(f(x))
mapper = table
""",
        """\
bad.icon:1:11: error: the default k = 2.5 is outside its domain: k an integer from 1 to 1048576  [domain]
   1 | param k = 2.5
     |           ^^^
""",
    ),
    Case(
        "duplicate-argument-kernel",
        "duplicate-argument",
        """\
kernel k(d2, a, a) = exp(-d2 / a)
p = gaussian(x)
q = normalize(k(f(x), 1, 2))
mapper = table
""",
        """\
bad.icon:1:17: error: `a` is an argument of kernel `k` twice  [duplicate-argument]
   1 | kernel k(d2, a, a) = exp(-d2 / a)
     |                 ^
  help: give each argument its own name
""",
    ),
    Case(
        "too-many-terms-mixture",
        "too-many-terms",
        "p = " + " + ".join(["0.05 * knn(x, 3)"] * 17) + "\n" + _QM,
        """\
bad.icon:1:5: error: 17 mixture terms, more than the limit of 16  [too-many-terms]
   1 | p = 0.05 * knn(x, 3) + 0.05 * knn(x, 3) + 0.05 * knn(x, 3) + 0.05 * knn(x, 3) + 0.05 * knn(x, 3) + 0...
     |     ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  help: the checker proves the weights of each term: use fewer
""",
    ),
    Case(
        "too-many-terms-union",
        "too-many-terms",
        "p = union(" + ", ".join(["knn(x, 3)"] * 17) + ")\n" + _QM,
        """\
bad.icon:1:187: error: union() has 17 arguments, more than the limit of 16  [too-many-terms]
   1 | ..., knn(x, 3), knn(x, 3), knn(x, 3), knn(x, 3), knn(x, 3), knn(x, 3), knn(x, 3), knn(x, 3), knn(x, 3))
     |                                                                                              ^^^^^^^^^
""",
    ),
    Case(
        "spec-too-large",
        "spec-too-large",
        "p = gaussian(x)\n" + _QM + "# " + "x" * 100_000,
        """\
bad.icon:4:99951: error: the spec has 100,052 bytes, more than the limit of 100,000  [spec-too-large]
   4 | ...xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx
     |                                                    ^
  help: split it: a spec describes one objective
""",
    ),
    Case(
        "too-many-statements",
        "too-many-statements",
        "p = x\n" * 1_001,
        """\
bad.icon:1001:1: error: the spec has 1,001 statements, more than the limit of 1,000  [too-many-statements]
1001 | p = x
     | ^^^^^
  help: a spec describes one objective: p, q, mapper, loss and their params and kernels
""",
    ),
    Case(
        "too-deep",
        "too-deep",
        "p = " + "normalize(" * 64 + "x" + ")" * 64 + "\n" + _QM,
        """\
bad.icon:1:635: error: expressions are nested more than 64 deep here  [too-deep]
   1 | ...lize(normalize(normalize(normalize(x))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))
     |                             ^^^^^^^^^^^^
  help: write the expression flatter, or split a long sum into a mixture of fewer terms
""",
    ),
    Case(
        "formula-too-large",
        "formula-too-large",
        "".join(f"kernel k{i}(d2) = exp(-d2" + " - d2" * 10 + ")\n" for i in range(9))
        + "p = gaussian(x)\nq = normalize(k0(f(x)))\nmapper = table\n",
        """\
bad.icon:9:21: error: the spec's formulas (kernels and expressions of hyperparameters) have more than 100 operations in all  [formula-too-large]
   9 | kernel k8(d2) = exp(-d2 - d2 - d2 - d2 - d2 - d2 - d2 - d2 - d2 - d2 - d2)
     |                     ^^^^^^^^^^^^^^^^^^^^^^^
  help: write shorter formulas: the checker proves properties of each one
""",
    ),
    Case(
        "degenerate",
        "degenerate",
        """\
p = uniform()
q = gaussian(f(x))
mapper = table
""",
        """\
bad.icon:1:5: warning: p is constant over j for every i (uniform), so the optimum is a flat q: the embedding collapses and the data are never used  [degenerate]
   1 | p = uniform()
     |     ^^^^^^^^^
  help: give p some structure: neighbours (knn, gaussian), labels, views or a graph
""",
    ),
]

#: Codes produced outside `check(text)`, with the test that pins them.
FILE_CODES = {
    "file",
    "normaliser",
}  # test_file_missing, test_file_not_utf8, test_normaliser_refused

#: Codes with no golden test, each with the reason. Keep this empty unless a code cannot occur.
EXEMPT: dict[str, str] = {}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_golden(case: Case) -> None:
    codes, text = rendered(Source(case.spec, "bad.icon"))
    assert set(codes) == {case.code}
    assert text == case.expected


def test_every_code_has_a_golden_test() -> None:
    covered = {c.code for c in CASES} | FILE_CODES | set(EXEMPT)
    assert set(CODES) - covered == set(), "add a golden Case for each new diagnostic code"
    assert covered - set(CODES) == set(), "a golden Case names a code CODES does not have"
    assert all(reason for reason in EXEMPT.values())


class Refusal(NamedTuple):
    id: str
    normaliser: str
    spec: str
    expected: str


#: The compiler's --normaliser refusals (code `normaliser`), each with the whole report.
NORMALISER_CASES = [
    Refusal(
        "joint-p",
        "exact",
        "p = joint(gaussian(x, perplexity=5))\nq = joint(student_t(f(x)))\nmapper = table\n",
        """\
bad.icon:1:5: error: --normaliser exact does not apply to this loss: joint(...) reads every row of the batch to give one row  [normaliser]
   1 | p = joint(gaussian(x, perplexity=5))
     |     ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  help: compile it with the default --normaliser dense
""",
    ),
    Refusal(
        "contrastive-q",
        "exact",
        "p = augmentation(index)\nq = gaussian(f(x), metric=cosine)\nmapper = mlp\n",
        """\
bad.icon:2:5: error: --normaliser exact does not apply to this loss: the contrastive family's modules have row blocks of their own  [normaliser]
   2 | q = gaussian(f(x), metric=cosine)
     |     ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  help: compile it with the default --normaliser dense and pass block_size to the module
""",
    ),
    Refusal(
        "fixed-width-p",
        "sampled",
        "p = gaussian(x, sigma=1)\nq = student_t(f(x))\nmapper = table\n",
        """\
bad.icon:1:5: error: --normaliser sampled does not apply to this loss: p must keep each row's nearest neighbours (a perplexity gaussian or a knn of x): a fixed-width gaussian p has no k nearest neighbours cut  [normaliser]
   1 | p = gaussian(x, sigma=1)
     |     ^^^^^^^^^^^^^^^^^^^^
  help: compile it with the default --normaliser dense
""",
    ),
]


@pytest.mark.parametrize("case", NORMALISER_CASES, ids=[c.id for c in NORMALISER_CASES])
def test_normaliser_refused(case: Refusal) -> None:
    with pytest.raises(SpecError) as err:
        icon_dsl.compile(Source(case.spec, "bad.icon"), normaliser=case.normaliser)
    assert err.value.codes == ["normaliser"]
    assert str(err.value) + "\n" == case.expected


def test_file_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    codes, text = rendered(Path("missing.icon"))
    assert codes == ["file"]
    assert text == "missing.icon: error: spec file missing.icon does not exist  [file]\n"
    # a string ending in .icon is a path too
    assert rendered("missing.icon") == (codes, text)


def test_file_not_utf8(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("latin1.icon").write_bytes(b"method caf\xe9\n")
    codes, text = rendered(Path("latin1.icon"))
    assert codes == ["file"]
    assert text == (
        "latin1.icon: error: cannot read spec file latin1.icon: 'utf-8' codec can't decode "
        "byte 0xe9 in position 10: invalid continuation byte  [file]\n"
    )


def test_file_name_in_messages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("specs").mkdir()
    Path("specs/bad.icon").write_text(
        "kernel cauchy(d2, gamma) = 1 / (1 + d2 / gamma^2)\n"
        "p = gaussian(x)\n"
        "q = cauchy(f(x), 1.0)\n"
        "mapper = table\n"
    )
    codes, text = rendered(Path("specs/bad.icon"))
    assert codes == ["not-row-stochastic"]
    # the diagnostic format docs/errors.md describes, line for line
    assert text == (
        "specs/bad.icon:3:5: error: q must be row-stochastic, but cauchy(f(x), 1.0) is raw "
        "weights  [not-row-stochastic]\n"
        "   3 | q = cauchy(f(x), 1.0)\n"
        "     |     ^^^^^^^^^^^^^^^^^\n"
        "  help: wrap it: normalize(cauchy(f(x), 1.0))\n"
    )


# -- several errors at once -----------------------------------------------------------------


def test_all_errors_reported_at_once() -> None:
    spec = """\
p = gausian(x)
q = gaussian(f(x), sigma=-1, colour=red)
maper = table
mapper = mlp(dim=0)
"""
    with pytest.raises(SpecError) as info:
        icon_dsl.check(spec)
    assert sorted(info.value.codes) == [
        "domain",
        "domain",
        "unknown-keyword",
        "unknown-name",
        "unknown-statement",
    ]
    assert (
        str(info.value)
        == """\
<string>:1:5: error: unknown distribution `gausian`  [unknown-name]
   1 | p = gausian(x)
     |     ^^^^^^^
  help: did you mean `gaussian`?
<string>:2:20: error: sigma = -1 is outside its domain: 1e-15 <= sigma <= 1e15  [domain]
   2 | q = gaussian(f(x), sigma=-1, colour=red)
     |                    ^^^^^^^^
<string>:2:30: error: gaussian() has no argument `colour`  [unknown-keyword]
   2 | q = gaussian(f(x), sigma=-1, colour=red)
     |                              ^^^^^^
  help: its arguments: v, sigma, temperature, perplexity, metric, diagonal
<string>:3:1: error: cannot assign to `maper`: a spec assigns p, q, mapper and loss  [unknown-statement]
   3 | maper = table
     | ^^^^^
  help: did you mean `mapper`?
<string>:4:14: error: dim = 0 is outside its domain: dim an integer from 1 to 65536  [domain]
   4 | mapper = mlp(dim=0)
     |              ^^^^^"""
    )


def test_all_checks_reported_at_once() -> None:
    spec = "p = gaussian(f(x), diagonal=true)\nq = gaussian(x)\nmapper = table\n"
    with pytest.raises(SpecError) as info:
        icon_dsl.check(spec)
    assert sorted(info.value.codes) == ["diagonal-mismatch", "not-learnable", "p-depends-on-f"]


def test_all_syntax_errors_reported_at_once() -> None:
    spec = 'p = gaussian(x,, 1)\nq = @\nmethod m "open\nmapper = table(dim=2'
    with pytest.raises(SpecError) as info:
        icon_dsl.parse(spec)
    assert info.value.codes == ["syntax"] * 4
    assert (
        str(info.value)
        == """\
<string>:1:16: error: unexpected ','; expected an expression  [syntax]
   1 | p = gaussian(x,, 1)
     |                ^
<string>:2:5: error: unexpected character '@'  [syntax]
   2 | q = @
     |     ^
<string>:3:10: error: unterminated string  [syntax]
   3 | method m "open
     |          ^^^^^
  help: close it with "
<string>:4:21: error: unexpected end of the spec; expected ')', ','  [syntax]
   4 | mapper = table(dim=2
     |                     ^
  help: close the call with ')'"""
    )


def test_recovery_skips_exactly_the_broken_statement() -> None:
    # a broken call over two lines is one error; the statement after `;` is still parsed; an
    # unclosed bracket that runs into the next statement leaves that statement to be checked
    spec = "p = gaussian(x,,\n    sigma=1)\nq = 1 2 ; loss = 3 4\nmapper = table(\nmethod m @\n"
    with pytest.raises(SpecError) as info:
        icon_dsl.parse(spec)
    src = Source(spec)
    where = [src.line_col(d.span.start) for d in info.value.diagnostics if d.span]
    assert where == [(1, 16), (3, 7), (3, 20), (5, 8), (5, 10)]
    assert "the '(' at line 4, column 15 is never closed" in str(info.value)


def test_syntax_and_token_errors_together() -> None:
    spec = "p = gaussian(x, sigma=1e999)\nq = gaussian(f(x)) )\n"
    with pytest.raises(SpecError) as info:
        icon_dsl.parse(spec)
    # the statement with the syntax error is skipped, and the rest still checked
    assert sorted(d.message for d in info.value.diagnostics) == [
        "the number 1e999 is too large",
        "unexpected ')'; expected ';', a new line, the end of the spec",
    ]


def test_unclosed_bracket_in_an_interval() -> None:
    with pytest.raises(SpecError) as info:
        icon_dsl.parse("param a in [0, 1\np = x\n")
    assert (
        str(info.value)
        == """\
<string>:2:1: error: unexpected 'p'; expected ']', '+', '-', '*', '/', '^', ...  [syntax]
   2 | p = x
     | ^
  help: the '[' at line 1, column 12 is never closed: add ']'"""
    )


def test_errors_render_in_source_order() -> None:
    err = pytest.raises(SpecError, icon_dsl.check, "mapper = tabel\np = knn(x)\nq = gaussian(x)\n")
    lines = [line for line in str(err.value).splitlines() if "error:" in line]
    assert [line.split(":")[1] for line in lines] == sorted(line.split(":")[1] for line in lines)


# -- the command line -----------------------------------------------------------------------

GOOD = "p = gaussian(x, sigma) ; q = student_t(f(x)) ; mapper = table\n"
BAD = "p = gausian(x)\nq = gaussian(f(x))\nmapper = table\n"


@pytest.fixture
def specs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    Path("good.icon").write_text(GOOD)
    Path("bad.icon").write_text(BAD)
    return tmp_path


def test_cli_check_ok(specs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "good.icon"]) == 0
    out, err = capsys.readouterr()
    assert out == "good.icon: ok\n"
    assert err == ""


def test_cli_check_broken_spec(specs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "good.icon", "bad.icon"]) == 1
    out, err = capsys.readouterr()
    assert out == "good.icon: ok\n"
    assert (
        err
        == """\
bad.icon:1:5: error: unknown distribution `gausian`  [unknown-name]
   1 | p = gausian(x)
     |     ^^^^^^^
  help: did you mean `gaussian`?
"""
    )


def test_cli_notes_go_to_stderr(specs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Path("supcon.icon").write_text("p = label(y)\nq = gaussian(f(x))\nmapper = table\n")
    assert main(["check", "supcon.icon"]) == 0
    out, err = capsys.readouterr()
    assert out == "supcon.icon: ok\n"
    assert err.startswith("supcon.icon:1:5: note: rows of p may be empty")


@pytest.mark.parametrize("command", ["check", "compile", "explain"])
def test_cli_missing_file(specs: Path, capsys: pytest.CaptureFixture[str], command: str) -> None:
    assert main([command, "missing.icon"]) == 1
    out, err = capsys.readouterr()
    assert err == "missing.icon: error: spec file missing.icon does not exist  [file]\n"
    assert "Traceback" not in out + err


@pytest.mark.parametrize("command", ["check", "compile", "explain"])
def test_cli_broken_spec(specs: Path, capsys: pytest.CaptureFixture[str], command: str) -> None:
    assert main([command, "bad.icon"]) == 1
    out, err = capsys.readouterr()
    assert "bad.icon:1:5: error: unknown distribution `gausian`" in err
    assert "Traceback" not in out + err
    assert not Path("generated").exists()


@pytest.mark.parametrize(
    "spec",
    [
        'method m "\\q"\n',  # an escape JSON cannot decode
        "p = gaussian(x, sigma=1e999)\n",  # a number that overflows
        "p = gaussian(x, 1, 2, 3, 4, 5, 6, 7)\n",
        "\x00\x01",
        "p = (((((",
    ],
)
def test_cli_no_traceback_for_odd_text(
    specs: Path, capsys: pytest.CaptureFixture[str], spec: str
) -> None:
    Path("odd.icon").write_text(spec)
    assert main(["check", "odd.icon"]) == 1
    out, err = capsys.readouterr()
    assert "odd.icon:" in err
    assert "Traceback" not in out + err


def test_cli_compile_writes_module(specs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compile", "good.icon", "-o", "out"]) == 0
    out, _ = capsys.readouterr()
    assert out.startswith("good.icon -> out")
    assert (
        Path("out/good.py")
        .read_text()
        .startswith("# Generated by icon-dsl from good.icon. Do not edit.")
    )


@pytest.mark.parametrize(
    "argv",
    [[], ["frobnicate"], ["check"], ["compile"], ["check", "--bogus", "good.icon"], ["explain"]],
)
def test_cli_bad_usage(specs: Path, capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert "usage: icon-dsl" in err
    assert "Traceback" not in out + err


def test_cli_help_is_not_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "usage: icon-dsl" in capsys.readouterr().out


def test_missing_required_argument_is_reported_not_crashed() -> None:
    """A required argument left out (classes' n, a kernel's parameter) is an arity error."""
    for spec, message in (
        ("mapper = mlp\np = classes(y)\nq = student_t(f(x), prototypes(2))\n", "`n`"),
        (
            "kernel k(d2, g) = 1 / (1 + d2 / g)\nmapper = mlp\np = gaussian(x)\n"
            "q = normalize(k(f(x)))\n",
            "`g`",
        ),
    ):
        with pytest.raises(SpecError) as info:
            icon_dsl.check(spec)
        assert info.value.codes == ["arity"]
        assert f"is missing its argument {message}" in str(info.value)
