"""The state every lowering layer shares, and the checks that need nothing else."""

from __future__ import annotations

from .. import registry as reg
from .. import syntax as s
from ..diagnostics import Diagnostics
from ..ir import IR
from ..registry import Block
from ..source import Span


class LowererBase:
    """The IR being built, the diagnostics, and what the layers above record while lowering."""

    def __init__(self, diags: Diagnostics, default_name: str) -> None:
        self.diags = diags
        self.ir = IR(diags.source, method=default_name)
        self.assigns: dict[str, s.Assign] = {}
        self.declared: dict[str, s.Param] = {}
        self._inputs: dict[str, int] = {}
        self.broken_kernels: set[str] = set()
        self.used: dict[str, Span] = {}  # hyperparameter names read, with their first use
        self.symbolic_operations = 0  # sympy operations on symbols: the costly kind
        self.mixture_terms = 0

    def _reserved(self, name: s.Name) -> bool:
        if name.id in reg.known_names():
            self.diags.error(
                "bad-argument",
                f"`{name.id}` is a name of the language and cannot be redefined",
                name.span,
            )
            return True
        return False

    def _wrong_role(self, call: s.Call, wanted: str, block: Block) -> None:
        self.diags.error(
            "wrong-role",
            f"`{block.name}` is a {block.role}, but {wanted} is needed here",
            call.func.span,
        )

    def _dist(self, expr: s.Expr) -> int | None:
        """Lower an expression that must denote a distribution (distributions.py): declared here
        because an operand of a call may itself be a distribution."""
        raise NotImplementedError
