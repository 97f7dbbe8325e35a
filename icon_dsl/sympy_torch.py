"""Evaluate a sympy formula on torch tensors, node by node (no text is evaluated).

Takes: a sympy expression over symbols bound to tensors or floats. Guarantees: the result of the
same arithmetic in torch; only +, *, ^, exp, log and abs are accepted, else ValueError.
"""

from __future__ import annotations

from collections.abc import Mapping

import sympy as sp
import torch

Value = torch.Tensor | float


def evaluate(expr: sp.Expr, env: Mapping[str, Value]) -> Value:
    if expr.is_Number:
        return float(expr)
    if expr.is_Symbol:
        return env[str(expr)]
    args = [evaluate(a, env) for a in expr.args]
    if expr.is_Add:
        out = args[0]
        for a in args[1:]:
            out = out + a
        return out
    if expr.is_Mul:
        out = args[0]
        for a in args[1:]:
            out = out * a
        return out
    if expr.is_Pow:
        base, exponent = args
        return base**exponent
    if isinstance(expr, sp.exp):
        return torch.exp(torch.as_tensor(args[0]))
    if isinstance(expr, sp.log):
        return torch.log(torch.as_tensor(args[0]))
    if isinstance(expr, sp.Abs):
        return torch.abs(torch.as_tensor(args[0]))
    raise ValueError(f"cannot evaluate {expr.func.__name__} in a kernel formula")
