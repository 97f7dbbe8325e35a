"""The limits on a spec: each bounds the work `check` and `compile` may do on hostile text.

Takes: nothing. Guarantees: the numbers here are the only limits; docs/security.md lists them and
docs/errors.md shows the diagnostic of each. Every real spec is far inside them (the largest
bundled spec is under 1 kB, nested 5 deep, with 8 statements).
"""

from __future__ import annotations

#: Bytes of spec text (UTF-8), checked before anything is parsed (code `spec-too-large`).
MAX_SPEC_BYTES = 100_000

#: Tokens of spec text (names, numbers, operators, brackets; comments are free), counted by a
#: regular expression before the parser runs (code `spec-too-large`).
MAX_TOKENS = 5_000

#: Statements in a spec (code `too-many-statements`).
MAX_STATEMENTS = 1_000

#: Depth of the syntax tree: calls, brackets, operators and negations inside each other
#: (code `too-deep`). Every stage after the parser walks the tree recursively.
MAX_DEPTH = 64

#: Weighted distributions in all the mixtures of a spec together (their weights are proved
#: nonnegative and summing to 1), operands of one union, arguments of one call
#: (code `too-many-terms`).
MAX_TERMS = 16

#: Operations (+ - * / ^, exp, log, sqrt, abs) on symbols in all the spec's formulas together:
#: kernels and expressions of hyperparameters; sympy takes milliseconds for each, and the checks
#: prove properties of the results (code `formula-too-large`).
MAX_FORMULA_OPERATIONS = 100

#: Nesting of one formula of symbols (a kernel's body, an expression of hyperparameters):
#: sympy's work grows exponentially with it (code `formula-too-large`).
MAX_FORMULA_DEPTH = 12

#: Characters of one number literal (code `number-size`).
MAX_NUMBER_CHARS = 64

#: Largest magnitude of a number, literal or computed (`10^400`, `1e300 * 1e300`), and the
#: smallest nonzero one (`1e-320`): float64 holds them to full precision (its subnormals, which
#: lose digits, start below 2.2e-308) (code `number-size`).
MAX_MAGNITUDE = 1e300
MIN_MAGNITUDE = 1e-300

#: How far the powers of a formula of symbols may multiply, like a polynomial's degree
#: (((d2 + 1)^2 + 1)^2 is 4): sympy's proofs and derivatives expand powers (code `number-size`).
MAX_DEGREE = 16

#: The help line of every `number-size` diagnostic.
NUMBER_HELP = (
    f"numbers are 0 or between {MIN_MAGNITUDE:g} and {MAX_MAGNITUDE:g} in size, "
    f"written in at most {MAX_NUMBER_CHARS} characters"
)
