"""sympy expressions -> torch code, without importing torch.

sympy's own `TorchPrinter` imports torch when its module loads (for the version number), which
made every `icon-dsl compile` pay for torch. Kernel formulas use only + - * / ^, numbers, symbols
and the functions below, so a small printer over sympy's Python code printer is enough.

Takes: a sympy expression over those. Guarantees: the text sympy's `TorchPrinter` prints for it
(the generated modules are unchanged); anything else raises ValueError naming it.
"""

from __future__ import annotations

from typing import Any

import sympy as sp
from sympy.printing.pycode import AbstractPythonCodePrinter

# The functions a kernel formula may use (the front end accepts exp, log, sqrt and abs; sqrt is
# a power of one half) and their torch names.
TORCH_FUNCTIONS: dict[type, str] = {sp.exp: "torch.exp", sp.log: "torch.log", sp.Abs: "torch.abs"}


class TorchCodePrinter(AbstractPythonCodePrinter):
    """torch code for a kernel formula: `torch.<f>(...)` for the functions above, `torch.sqrt`
    and `torch.pow` for powers (as sympy's TorchPrinter), Python for the rest."""

    printmethod = "_torchcode"

    def _print_Function(self, expr: sp.Function) -> str:
        name = TORCH_FUNCTIONS.get(type(expr))
        if name is None or len(expr.args) != 1:
            raise ValueError(f"no torch code for {expr.func.__name__} in a kernel formula")
        return f"{self._module_format(name)}({self._print(expr.args[0])})"

    # sympy dispatches these to the class's own `_print_<name>` before `_print_Function`
    _print_exp = _print_Function
    _print_log = _print_Function
    _print_Abs = _print_Function

    def _print_Pow(self, expr: sp.Pow, rational: bool = False) -> str:
        base, exp = expr.args
        if exp == sp.S.Half:
            return f"{self._module_format('torch.sqrt')}({self._print(base)})"
        return f"{self._module_format('torch.pow')}({self._print(base)}, {self._print(exp)})"

    def _print_not_supported(self, expr: Any) -> str:
        raise ValueError(f"no torch code for {type(expr).__name__} in a kernel formula")
