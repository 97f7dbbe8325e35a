"""Node rules: each IR node lowered to lines of `_terms` and the value they leave (`Val`).

Takes: a checked IR. Guarantees: each node is lowered once, by the rule for its op (`RULES`, or
the kernel rule for every block with a log-weight), in the cheap exact form: log-space where
it can be, an indicator p as a mask; a number the module cannot hold is a located error.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sympy as sp

from .. import registry as reg
from ..ir import IR, DistType
from . import names
from .kernels import assignment, hoist, log_weight, replace, value_at_zero
from .layout import call_lines, fits, fold
from .numbers import ConstantPrinter, NotFinite, NumPrinter, number_literal, python_expr, refuse
from .values import Body, Val


@dataclass(frozen=True)
class Node:
    """A node being lowered: its id, op, arguments, children, and its variables' prefix."""

    id: int
    op: str
    args: dict
    kids: list[int]
    prefix: str


class Emitter:
    def __init__(self, ir: IR) -> None:
        self.ir = ir
        self.hyper_names = names.identifiers(ir.hypers)
        self.body = Body()
        self.vals: dict[int, Val] = {}
        self.side: dict[int, str] = {}
        self.inputs: set[str] = set()
        self.graph = False

    # -- numbers ---------------------------------------------------------------------------
    def num(self, value: Any) -> str:
        """Code for a number or hyperparameter expression, safe to drop into any expression."""
        if isinstance(value, sp.Basic) and value.free_symbols:
            return python_expr(NumPrinter(self.hyper_names).doprint(value))
        return number_literal(value)  # sqrt(2) too: a number, not a call

    # -- nodes -----------------------------------------------------------------------------
    def lower(self, node: int, prefix: str) -> Val:
        if node not in self.vals:
            try:
                self.vals[node] = self._lower(node, prefix)
            except NotFinite as error:
                refuse(self.ir, self.ir.span(node), error)
        return self.vals[node]

    def _lower(self, node: int, prefix: str) -> Val:
        op = self.ir.op(node)
        n = Node(node, op, self.ir.args(node), self.ir.children(node), prefix)
        rule = RULES.get(op)
        if rule is None and reg.is_kernel(op):  # blocks may be registered at run time
            rule = Emitter._kernel
        if rule is None:
            raise NotImplementedError(f"no code generation rule for {op}")
        return rule(self, n)

    def text(self, node: int) -> str:
        """The node's spec text for a comment: printed from the IR, escaped by `comment`."""
        return self.ir.text(node)

    # -- data ------------------------------------------------------------------------------
    def _input(self, n: Node) -> Val:
        self.inputs.add(n.args["name"])
        return Val("tensor", n.args["name"], cols=f"{n.args['name']}_all")

    def _f(self, n: Node) -> Val:
        return Val("tensor", "z", cols="z_all")

    def _prototypes(self, n: Node) -> Val:
        # parameters follow z's dtype (float64, or float32 for half precision z)
        return Val("tensor", "self.prototypes.to(z.dtype)", cols="self.prototypes.to(z.dtype)")

    # -- kernels ---------------------------------------------------------------------------
    def _kernel(self, n: Node) -> Val:
        b, args = self.body, n.args
        v = self.lower(n.kids[0], n.prefix)
        cols = self.lower(n.kids[1], n.prefix) if len(n.kids) > 1 else v
        metric = args.get("metric", "euclidean")
        d2, logits = b.fresh(f"{n.prefix}_d2"), b.fresh(f"{n.prefix}_logits")
        b.helpers.add("sqdist")
        b.comment(f"{self.text(n.id)}: log-weights from d2 ({metric})")
        b.add(f'{d2} = _sqdist({v.var}, {cols.cols}, "{metric}")')
        if "perplexity" in args:
            perp = self.num(args["perplexity"])
            b.helpers.add("perplexity")
            b.needs_diag = True
            if not fits(f"{logits} = -{d2} * _perplexity_beta({d2}, {perp}, diag)", 12):
                # a long hyperparameter: named first, so that the line fits where the p cache
                # nests it (12 columns in)
                named = b.fresh(f"{n.prefix}_perplexity")
                b.add(f"{named} = {perp}")
                perp = named
            search = f"_perplexity_beta({d2}, {perp}, diag)"
            b.calibrations.append((search, d2, perp))
            b.add(f"{logits} = -{d2} * {search}")
        else:
            self._log_weights(n, d2, logits)
        if len(n.kids) == 1 and not args.get("diagonal", False):
            b.needs_diag = True
            b.add(f"{logits} = {logits}.masked_fill(diag, -math.inf)")
        return Val("logits", logits)

    def _log_weights(self, n: Node, d2: str, logits: str) -> None:
        """`logits = log w(d2)` of a fixed-width kernel, its hyperparameter parts named first."""
        b = self.body
        d2_symbol = sp.Symbol(d2, nonnegative=True)
        log_w = log_weight(self.ir, n.op, n.args, d2_symbol, self.num)
        at_zero = value_at_zero(log_w, d2_symbol)
        if at_zero is not None:
            # an infinite slope at d2 = 0 (sqrt(d2)): i = j and duplicate points would get a
            # NaN gradient; evaluate away from 0 and put the limit there, with slope 0
            safe = b.fresh(f"{d2}_safe")
            b.comment("the kernel's slope is infinite at d2 = 0: its limit is used there")
            b.add(f"{safe} = torch.where({d2} > 0, {d2}, 1.0)")
            d2_symbol, log_w = replace(log_w, d2_symbol, sp.Symbol(safe, positive=True))
        const_names = (sp.Symbol(b.fresh(f"{n.prefix}_const")) for _ in itertools.count())
        constants: dict[sp.Expr, sp.Symbol] = {}
        log_w = hoist(log_w, d2_symbol, constants, const_names)
        for value, name in constants.items():  # hyperparameter parts: short lines
            b.lines += assignment(str(name), value, ConstantPrinter())
        b.lines += assignment(logits, log_w)
        if at_zero is not None:
            b.add(f"{logits} = torch.where({d2} > 0, {logits}, {at_zero})")

    # -- neighbourhoods and groups ---------------------------------------------------------
    def _knn(self, n: Node) -> Val:
        b = self.body
        v = self.lower(n.kids[0], n.prefix)
        d2, mask = b.fresh(f"{n.prefix}_d2"), b.fresh(f"{n.prefix}_mask")
        k = self.num(n.args["k"])
        b.helpers.update(("sqdist", "check_k"))
        b.needs_diag = True
        b.comment(f"{self.text(n.id)}: uniform over the {k} nearest neighbours j != i")
        # the candidates are the columns: under torch.distributed, every process's rows
        b.add(f'_check_k({k}, {v.cols}.shape[0], "knn")')
        b.add(f'{d2} = _sqdist({v.var}, {v.cols}, "{n.args["metric"]}")')
        b.add(f"{d2} = {d2}.masked_fill(diag, math.inf)")
        b.add(f"{mask} = torch.zeros_like({d2}, dtype=torch.bool)")
        b.add(f"{mask}.scatter_(1, {d2}.topk({k}, dim=1, largest=False).indices, True)")
        return Val("mask", mask)

    def _same_group(self, n: Node) -> Val:
        """label and augmentation: the other rows with the same label, or the same sample."""
        b = self.body
        v = self.lower(n.kids[0], n.prefix)
        mask = b.fresh(f"{n.prefix}_mask")
        b.needs_diag = True
        what = "label" if n.op == "label" else "sample (the other views)"
        b.comment(f"{self.text(n.id)}: uniform over j != i with the same {what}")
        b.add(f"{mask} = ({v.var}[:, None] == {v.cols}[None, :]) & ~diag")
        b.keeps.append(f"{mask}.any(1)")
        return Val("mask", mask)

    def _cross_modal(self, n: Node) -> Val:
        b = self.body
        index, modality = (self.lower(k, n.prefix) for k in n.kids)
        mask = b.fresh(f"{n.prefix}_mask")
        b.comment(f"{self.text(n.id)}: uniform over partners in the other modality")
        b.add(f"same_sample = {index.var}[:, None] == {index.cols}[None, :]")
        b.add(f"{mask} = same_sample & ({modality.var}[:, None] != {modality.cols}[None, :])")
        b.keeps.append(f"{mask}.any(1)")
        return Val("mask", mask)

    def _graph(self, n: Node) -> Val:
        b, prefix = self.body, n.prefix
        index = self.lower(n.kids[0], prefix)
        weights, prob = b.fresh(f"{prefix}_adjacency"), b.fresh(f"{prefix}_prob")
        b.needs_diag = True
        self.graph = True
        b.helpers.add("check_graph")
        b.checks.append(f"_check_graph(self.adjacency, {index.var})")
        b.comment(f"{self.text(n.id)}: random-walk normalised graph weights within the batch")
        b.add(f"{weights} = self.adjacency[{index.var}][:, {index.cols}].to(z.dtype)")
        b.add(f"{weights} = {weights}.masked_fill(diag, 0.0)")
        degree = b.fresh(f"{prefix}_degree")
        b.add(f"{degree} = {weights}.sum(1, keepdim=True)")
        b.add(f"{prob} = {weights} / torch.where({degree} > 0, {degree}, 1.0)")
        b.keeps.append(f"{weights}.sum(1) > 0")
        return Val("prob", prob)

    def _walk(self, n: Node) -> Val:
        b = self.body
        inner = self.prob(self.lower(n.kids[0], f"{n.prefix}0"))
        step, total = b.fresh(f"{n.prefix}_step"), b.fresh(f"{n.prefix}_walk")
        b.comment(f"{self.text(n.id)}: normalise(P + P^2 + ... + P^(steps+1))")
        b.add(f"{step}, {total} = {inner}, {inner}")
        b.add(f"for _ in range({self.num(n.args['steps'])}):")
        b.add(f"    {step} = {step} @ {inner}")
        b.add(f"    {total} = {total} + {step}")
        if not self.ir.dist_type(n.id).diagonal:
            b.needs_diag = True
            b.add(f"{total} = {total}.masked_fill(diag, 0.0)")
        b.add(f"{total} = {total} / {total}.sum(1, keepdim=True)")
        return Val("prob", total)

    def _classes(self, n: Node) -> Val:
        b = self.body
        v = self.lower(n.kids[0], n.prefix)
        count = self.num(n.args["n"])
        b.helpers.add("check_classes")
        b.checks.append(f"_check_classes({v.var}, {count})")
        text = self.text(n.id)
        b.comment(f"{text}: one-hot over {count} class columns, kept as the class index")
        return Val("onehot", v.var, columns=count)

    def _cluster(self, n: Node) -> Val:
        b = self.body
        v = self.lower(n.kids[0], n.prefix)
        prob = b.fresh(f"{n.prefix}_prob")
        b.comment(f"{self.text(n.id)}: sum_c v_ic v_jc / sum_k v_kc, j = i included")
        mass = b.fresh(f"{n.prefix}_mass")
        if self.ir.op(n.kids[0]) == "f":
            b.helpers.add("check_assignments")
            b.checks.append("_check_assignments(z)")
        b.add(f"{mass} = {v.cols}.sum(0, keepdim=True)  # empty clusters contribute nothing")
        b.add(f"{prob} = ({v.var} / torch.where({mass} > 0, {mass}, 1.0)) @ {v.cols}.T")
        return Val("prob", prob)

    def _uniform(self, n: Node) -> Val:
        b = self.body
        mask = b.fresh(f"{n.prefix}_mask")
        b.needs_diag = True
        b.comment(f"{self.text(n.id)}: uniform over the row's support")
        full = n.args.get("diagonal")
        b.add(f"{mask} = torch.ones_like(diag)" if full else f"{mask} = ~diag")
        return Val("mask", mask)

    def _identity(self, n: Node) -> Val:
        self.body.needs_diag = True
        self.body.comment(f"{self.text(n.id)}: all mass on j = i")
        return Val("mask", "diag")

    # -- combinations ----------------------------------------------------------------------
    def _union(self, n: Node) -> Val:
        b = self.body
        vals = [self.lower(k, f"{n.prefix}{i + 1}") for i, k in enumerate(n.kids)]
        mask = b.fresh(f"{n.prefix}_mask")
        parts = [v.var if v.kind == "mask" else f"({self.prob(v)} > 0)" for v in vals]
        b.comment(f"{self.text(n.id)}: uniform over the union of the supports")
        b.lines += fold(mask, parts, "|")
        return Val("mask", mask)

    def _mixture(self, n: Node) -> Val:
        b = self.body
        vals = [self.lower(k, f"{n.prefix}{i + 1}") for i, k in enumerate(n.kids)]
        weights = [self.num(w) for w in n.args["weights"]]
        text = self.text(n.id)
        if any(v.kind in ("logits", "logprob") for v in vals):
            # in logs: a narrow kernel's probabilities underflow in w * p where its log does not
            log_prob = b.fresh(f"{n.prefix}_log_prob")
            b.helpers.add("log_add")
            b.comment(f"{text}: log of a mixture, weights proved nonnegative and summing to 1")
            total = "None"  # one term a line: thousands of parts stay one line each
            for w, v in zip(weights, vals, strict=True):
                b.lines += call_lines("_log_add", [total, w, self.log_prob(v)], log_prob)
                total = log_prob
            return Val("logprob", log_prob)
        prob = b.fresh(f"{n.prefix}_prob")
        terms = [f"{w} * {self.prob(v)}" for w, v in zip(weights, vals, strict=True)]
        b.comment(f"{text}: a mixture, weights proved nonnegative and summing to 1")
        b.lines += fold(prob, terms, "+")
        return Val("prob", prob)

    def _normalize(self, n: Node) -> Val:
        raw = self.lower(n.kids[0], n.prefix)
        return Val("logits", raw.var)  # raw log-weights; normalised by log_softmax

    def _joint(self, n: Node) -> Val:
        b, child = self.body, n.kids[0]
        inner = self.lower(child, f"{n.prefix}0")
        out = b.fresh(f"{n.prefix}_joint")
        text = self.text(n.id)
        fixed_width = reg.is_kernel(self.ir.op(child))
        if fixed_width and "perplexity" not in self.ir.args(child):
            b.comment(f"{text}: log of w / sum_(k != l) w_kl, one normaliser for the matrix")
            b.add(f"{out} = {inner.var} - torch.logsumexp({inner.var}.flatten(), 0)")
            return Val("logprob", out)
        p = self.prob(inner)
        b.comment(f"{text}: (P + P^T) / 2N, symmetric and summing to 1 over the matrix")
        b.add(f"{out} = ({p} + {p}.T) / (2 * {p}.shape[0])")
        return Val("prob", out)

    def _debias(self, n: Node) -> Val:
        b, text = self.body, self.text(n.id)
        inner_type = self.ir.dist_type(n.kids[0])
        inner_val = self.lower(n.kids[0], f"{n.prefix}0")
        alpha = self.num(n.args["alpha"])
        support = self._debias_support(inner_type)
        if inner_val.kind in ("logits", "logprob"):
            # in logs: a narrow kernel's smallest probabilities underflow in (1 - alpha) p
            log_prob = b.fresh(f"{n.prefix}_log_prob")
            b.helpers.add("log_debias")
            b.comment(f"{text}: log((1 - alpha) p + alpha * uniform over the row's support)")
            b.add(f"{log_prob} = _log_debias({self.log_prob(inner_val)}, {alpha}, {support})")
            return Val("logprob", log_prob)
        prob = b.fresh(f"{n.prefix}_prob")
        b.helpers.add("debias")
        b.comment(f"{text}: (1 - alpha) p + alpha * uniform over the row's support")
        b.add(f"{prob} = _debias({self.prob(inner_val)}, {alpha}, {support})")
        return Val("prob", prob)

    def _debias_support(self, inner_type: DistType) -> str:
        """The row's support for debias's uniform part, as code."""
        if inner_type.cross:
            return "modality[:, None] != modality_all[None, :]"
        if inner_type.support == "columns" or inner_type.diagonal:
            return "None"
        self.body.needs_diag = True
        return "~diag"

    # -- conversions -----------------------------------------------------------------------
    def prob(self, v: Val) -> str:
        """Code for v as dense probabilities (emitting a line where needed)."""
        b = self.body
        if v.kind == "prob":
            return v.var
        out = b.fresh(f"{v.var}_p")
        if v.kind == "logits":
            b.add(f"{out} = torch.softmax({v.var}, dim=1)")
        elif v.kind == "mask":
            b.helpers.add("uniform_rows")
            b.add(f"{out} = _uniform_rows({v.var}, z.dtype)")
        elif v.kind == "logprob":
            b.add(f"{out} = {v.var}.exp()")
        else:
            b.add(f"{out} = F.one_hot({v.var}, {v.columns}).to(z.dtype)")
        return out

    def log_prob(self, v: Val) -> str:
        if v.kind == "logprob":
            return v.var
        if v.kind == "logits":
            return f"torch.log_softmax({v.var}, dim=1)"
        # a zero gradient where p = 0 (torch.log's would be 0 * inf = NaN there)
        self.body.helpers.add("log")
        return f"_log({self.prob(v)})"


#: The rule for each op; every kernel block (and `kernel`, a user kernel) takes `_kernel`.
RULES: dict[str, Callable[[Emitter, Node], Val]] = {
    "input": Emitter._input,
    "f": Emitter._f,
    "prototypes": Emitter._prototypes,
    "kernel": Emitter._kernel,
    "knn": Emitter._knn,
    "label": Emitter._same_group,
    "augmentation": Emitter._same_group,
    "cross_modal": Emitter._cross_modal,
    "graph": Emitter._graph,
    "walk": Emitter._walk,
    "union": Emitter._union,
    "joint": Emitter._joint,
    "classes": Emitter._classes,
    "cluster": Emitter._cluster,
    "uniform": Emitter._uniform,
    "identity": Emitter._identity,
    "normalize": Emitter._normalize,
    "debias": Emitter._debias,
    "mixture": Emitter._mixture,
}
