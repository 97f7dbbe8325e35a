"""Checks over the IR: each module adds diagnostics, none raises.

Takes: a lowered IR and the Diagnostics collector. Guarantees: after `run_all`, every error a spec
has is in the collector (shapes, the diagonal, row-stochasticity, learnability), together with
notes such as rows that may be empty.
"""

from __future__ import annotations

from ..diagnostics import Diagnostics
from ..ir import IR
from . import degeneracy, learnability, shapes, stochastic


def run_all(ir: IR, diags: Diagnostics) -> None:
    stochastic.check(ir, diags)
    shapes.check(ir, diags)
    learnability.check(ir, diags)
    degeneracy.check(ir, diags)
