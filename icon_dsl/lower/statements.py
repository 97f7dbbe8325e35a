"""The spec's statements: method, param, kernel and the p, q, mapper and loss assignments."""

from __future__ import annotations

from typing import Any

import sympy as sp

from .. import registry as reg
from .. import syntax as s
from ..diagnostics import Diagnostics
from ..ir import IR, Hyper
from ..registry import Domain
from .distributions import DistributionLowerer
from .names import as_call, did_you_mean
from .numbers import show


class Lowerer(DistributionLowerer):
    """Lowers one spec: its statements first, then the mapper, p, q and the loss."""

    def run(self, spec: s.Spec) -> IR | None:
        self._collect(spec)
        for name, param in self.declared.items():
            self._declare(name, param)
        mapper = self._mapper(self.assigns.get("mapper"))
        p = self._root("p")
        q = self._root("q")
        if mapper is None or p is None or q is None:
            return None
        self.ir.roots.update(mapper=mapper, p=p, q=q)
        loss = self._loss(self.assigns.get("loss"), p, q)
        if loss is None:
            return None
        self.ir.roots["loss"] = loss
        self._check_defaults()
        self._check_unused()
        self.ir.verify()
        return self.ir

    def _check_defaults(self) -> None:
        """A default must lie in its parameter's domain: the declared interval and the domain
        of every slot it fills (else the module would refuse its own default)."""
        for name, param in self.declared.items():
            hyper = self.ir.hypers.get(name)
            if hyper is None or hyper.default is None or param.default is None:
                continue
            value = hyper.default
            if hyper.domain.contains(value) and not (hyper.integer and value != int(value)):
                continue
            rule = hyper.domain.describe(name)
            if hyper.integer and hyper.domain.contains(value):
                rule = f"{name} an integer"
            self.diags.error(
                "domain",
                f"the default {name} = {show(sp.Float(value))} is outside its domain: {rule}",
                param.default.span,
            )

    def _check_unused(self) -> None:
        """A declared param that nothing reads is a warning: most often its use is misspelt,
        and the misspelling became a required hyperparameter of its own. Only a spec without
        errors is judged: a use inside a statement with an error is not recorded."""
        if self.diags.errors:
            return
        unused = [name for name in self.declared if name not in self.used]
        undeclared = [name for name in self.used if name not in self.declared]
        for name in unused:
            typo = next((u for u in undeclared if did_you_mean(u, [name])), None)
            where = f"`{typo}` is used instead" if typo else "remove it or use it"
            self.diags.warning(
                "unused-param",
                f"param `{name}` is declared but never used",
                self.declared[name].name.span,
                f"{where}" + (f": did you mean `{name}` there?" if typo else ""),
            )
            if typo:
                self.diags.warning(
                    "unused-param",
                    f"`{typo}` is not declared: it becomes a hyperparameter with no default",
                    self.used[typo],
                    f"did you mean `{name}`?",
                )

    def _collect(self, spec: s.Spec) -> None:
        seen_method = False
        for stmt in spec.statements:
            if isinstance(stmt, s.Method):
                if seen_method:
                    self.diags.error("duplicate-statement", "`method` is given twice", stmt.span)
                seen_method = True
                self.ir.method = stmt.name.id
                self.ir.title = stmt.title.value if stmt.title else None
            elif isinstance(stmt, s.Param):
                if stmt.name.id in self.declared:
                    self.diags.error(
                        "duplicate-statement",
                        f"param `{stmt.name.id}` is declared twice",
                        stmt.span,
                    )
                elif self._reserved(stmt.name):
                    continue
                self.declared.setdefault(stmt.name.id, stmt)
            elif isinstance(stmt, s.KernelDef):
                self._kernel(stmt)
            else:
                self._assign(stmt)

    def _assign(self, stmt: s.Assign) -> None:
        target = stmt.target.id
        if target not in reg.TARGETS:
            self.diags.error(
                "unknown-statement",
                f"cannot assign to `{target}`: a spec assigns p, q, mapper and loss",
                stmt.target.span,
                did_you_mean(target, list(reg.TARGETS)),
            )
        elif target in self.assigns:
            self.diags.error("duplicate-statement", f"`{target}` is assigned twice", stmt.span)
        else:
            self.assigns[target] = stmt

    def _declare(self, name: str, param: s.Param) -> None:
        domain = reg.REAL
        if param.interval is not None:
            lo, hi = (self._constant(e) for e in param.interval)
            if lo is not None and hi is not None:
                if lo > hi:
                    self.diags.error(
                        "domain", f"empty interval [{lo}, {hi}] for `{name}`", param.span
                    )
                domain = Domain(lo, hi)
        default = self._constant(param.default) if param.default is not None else None
        self.ir.hypers[name] = Hyper(name, default, domain, False, param.name.span)

    def _constant(self, expr: s.Expr) -> float | None:
        value = self._number(expr, allow_hypers=False)
        if value is None:
            return None
        if not value.is_number:
            self.diags.error("bad-argument", "expected a number", getattr(expr, "span", None))
            return None
        return float(value)

    def _mapper(self, stmt: s.Assign | None) -> int | None:
        if stmt is None:
            self.diags.error(
                "missing-statement", "the spec has no mapper", None, "add `mapper = table(dim=2)`"
            )
            return None
        call = as_call(stmt.value)
        if call is None or call.func.id not in reg.BLOCKS:
            name = call.func.id if call else None
            span = call.func.span if call else getattr(stmt.value, "span", None)
            mappers = [b.name for b in reg.blocks("mapper")]
            if name is not None and name not in reg.BLOCKS:
                self.diags.error(
                    "unknown-name", f"unknown mapper `{name}`", span, did_you_mean(name, mappers)
                )
            else:
                self.diags.error("wrong-role", "mapper must be one of " + ", ".join(mappers), span)
            return None
        block = reg.BLOCKS[call.func.id]
        if block.role != "mapper":
            self._wrong_role(call, "a mapper", block)
            return None
        args = self._static_args(block, call)
        if args is None:
            return None
        if not self._fixed_mapper_options(call, args):
            return None
        return self.ir.add(block.name, "mapper", call.span, args, text=s.print_expr(call))

    def _fixed_mapper_options(self, call: s.Call, args: dict[str, Any]) -> bool:
        """Mapper sizes are numbers: the mapper is built (build_mapper) before, and apart
        from, the loss that takes the hyperparameters."""
        ok = True
        block = reg.BLOCKS[call.func.id]
        given = [(arg.name, expr) for arg, expr in zip(block.args, call.args, strict=False)]
        given += [(keyword.name.id, keyword.value) for keyword in call.keywords]
        for name, expr in given:
            value = args.get(name)
            if isinstance(value, sp.Basic) and value.free_symbols:
                names = ", ".join(f"`{sym}`" for sym in sorted(value.free_symbols, key=str))
                self.diags.error(
                    "bad-argument",
                    f"mapper option {name} must be a number, not a hyperparameter ({names}): "
                    "the mapper is built apart from the loss",
                    getattr(expr, "span", call.span),
                    help=f"write a number, e.g. {name}=2",
                )
                ok = False
        return ok

    def _loss(self, stmt: s.Assign | None, p: int, q: int) -> int | None:
        if stmt is None:
            return self.ir.add("kl", "divergence", None, {}, [p, q])
        call = as_call(stmt.value)
        divergences = [b.name for b in reg.blocks("divergence")]
        if call is None or call.func.id not in divergences:
            name = call.func.id if call else s.print_expr(stmt.value)
            self.diags.error(
                "unknown-name",
                f"unknown divergence `{name}`; loss is one of {', '.join(divergences)}",
                call.func.span if call else getattr(stmt.value, "span", None),
                did_you_mean(name, divergences),
            )
            return None
        args = [a.id if isinstance(a, s.Name) else None for a in call.args]
        if call.keywords or args != ["p", "q"]:
            self.diags.error(
                "bad-argument",
                f"the divergence compares the spec's p and q: write {call.func.id}(p, q)",
                call.span,
            )
            return None
        return self.ir.add(
            call.func.id, "divergence", call.span, {}, [p, q], text=s.print_expr(call)
        )


def lower(spec: s.Spec, diags: Diagnostics, default_name: str = "method") -> IR | None:
    """Lower a parsed spec; errors go to `diags`."""
    return Lowerer(diags, default_name).run(spec)
