"""The interpreter: evaluates the IR directly, densely, in probability space.

Takes: a checked IR, embeddings z = f(x), the inputs the spec names, hyperparameter values and
(for prototype specs) the prototype matrix. Guarantees: dense p and q (N x M), the rows kept
(anchors whose p-row is non-empty), the training loss and the divergence, computed by the
plainest route (kernel weights from the registry's sympy formulas, explicit row sums). It shares
no code with the generated modules, so it is the oracle they must agree with.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

import sympy as sp
import torch

from . import registry as reg
from .ir import IR
from .sympy_torch import evaluate as sym_eval

Tensor = torch.Tensor


@dataclass
class Evaluation:
    p: Tensor
    q: Tensor
    valid: Tensor  # bool (N,): anchors kept in the mean
    loss: Tensor  # what forward() returns: cross-entropy when p is fixed under kl
    divergence: Tensor  # the divergence itself


class _Interpreter:
    def __init__(
        self,
        ir: IR,
        z: Tensor,
        inputs: Mapping[str, Tensor],
        hypers: Mapping[str, float],
        prototypes: Tensor | None,
    ) -> None:
        self.ir, self.z, self.inputs = ir, z, inputs
        self.hypers = dict(hypers)
        self.prototypes = prototypes
        self.values: dict[int, Tensor] = {}
        self.row_ok: list[Tensor] = []  # one (N,) bool per maybe-empty indicator
        # log-probabilities of kernel rows, kept so that a narrow kernel's far entries, which
        # underflow to 0 in probability space, keep their exact log
        self.log_values: dict[int, Tensor] = {}
        self.last_log: Tensor | None = None
        self.n = z.shape[0]

    def num(self, value: object) -> float:
        if isinstance(value, sp.Basic):
            return float(value.subs({sp.Symbol(k, real=True): v for k, v in self.hypers.items()}))
        assert isinstance(value, (int, float))
        return float(value)

    def eye(self) -> Tensor:
        return torch.eye(self.n, dtype=torch.bool, device=self.z.device)

    def value(self, node: int) -> Tensor:
        if node not in self.values:
            self.values[node] = self.compute(node)
        return self.values[node]

    def compute(self, node: int) -> Tensor:
        op, args = self.ir.op(node), self.ir.args(node)
        kids = [self.value(c) for c in self.ir.children(node)]
        if op == "input":
            return self.inputs[args["name"]]
        if op == "f":
            return self.z
        if op == "prototypes":
            assert self.prototypes is not None, "a prototype spec needs prototypes"
            return self.prototypes
        if op == "kernel" or reg.is_kernel(op):
            value = self.kernel(op, args, kids)
            if self.last_log is not None:
                self.log_values[node] = self.last_log
            return value
        if op == "knn":
            d2 = _sqdist(kids[0], kids[0], args["metric"]).masked_fill(self.eye(), float("inf"))
            idx = d2.topk(int(self.num(args["k"])), dim=1, largest=False).indices
            mask = torch.zeros_like(d2).scatter(1, idx, 1.0)
            return mask / mask.sum(1, keepdim=True)
        if op in ("label", "augmentation"):
            same = (kids[0][:, None] == kids[0][None, :]) & ~self.eye()
            self.row_ok.append(same.any(1))
            return _rows(same.to(self.z.dtype))
        if op == "cross_modal":
            index, modality = kids
            same = (index[:, None] == index[None, :]) & (modality[:, None] != modality[None, :])
            self.row_ok.append(same.any(1))
            return _rows(same.to(self.z.dtype))
        if op == "graph":
            adjacency = self.inputs["adjacency"]
            a = adjacency[kids[0]][:, kids[0]].to(self.z.dtype).masked_fill(self.eye(), 0.0)
            self.row_ok.append(a.sum(1) > 0)
            return _rows(a)
        if op == "walk":
            steps = int(self.num(args["steps"]))
            power, total = kids[0], kids[0]
            for _ in range(steps):
                power = power @ kids[0]
                total = total + power
            if not self.ir.dist_type(node).diagonal:
                total = total.masked_fill(self.eye(), 0.0)
            return _rows(total)
        if op == "union":
            support = torch.stack([k > 0 for k in kids]).any(0)
            return _rows(support.to(self.z.dtype))
        if op == "joint":
            return self.joint(self.ir.children(node)[0], kids[0])
        if op == "classes":
            return torch.nn.functional.one_hot(kids[0], int(self.num(args["n"]))).to(self.z.dtype)
        if op == "cluster":
            v = kids[0]
            mass = v.sum(0, keepdim=True)
            return (v / torch.where(mass > 0, mass, torch.ones_like(mass))) @ v.T
        if op == "uniform":
            return _rows(self.support(bool(args.get("diagonal", False))))
        if op == "identity":
            return self.eye().to(self.z.dtype)
        if op == "normalize":
            return _rows(kids[0])
        if op == "debias":
            alpha = self.num(args["alpha"])
            support = self.support_of(self.ir.children(node)[0], kids[0])
            return (1 - alpha) * kids[0] + alpha * _rows(support)
        if op == "mixture":
            weights = [self.num(w) for w in args["weights"]]
            return sum(
                (w * k for w, k in zip(weights, kids, strict=True)), torch.zeros_like(kids[0])
            )
        raise NotImplementedError(f"interpreter has no rule for {op}")

    def joint(self, child: int, value: Tensor) -> Tensor:
        """w / sum(w) for a fixed-width kernel; (P + P^T) / 2N for a row-stochastic P."""
        op, args = self.ir.op(child), self.ir.args(child)
        if reg.is_kernel(op) and "perplexity" not in args:
            kids = [self.value(c) for c in self.ir.children(child)]
            weights = self.kernel(op, {**args, "_raw": True}, kids)
            return weights / weights.sum()
        return (value + value.T) / (2 * value.shape[0])

    def support(self, diagonal: bool) -> Tensor:
        full = torch.ones(self.n, self.n, dtype=self.z.dtype, device=self.z.device)
        return full if diagonal else full.masked_fill(self.eye(), 0.0)

    def support_of(self, node: int, value: Tensor) -> Tensor:
        t = self.ir.dist_type(node)
        if t.support == "columns":
            return torch.ones_like(value)
        if t.cross:
            modality = self.inputs["modality"]
            return (modality[:, None] != modality[None, :]).to(value.dtype)
        return self.support(t.diagonal)

    def kernel(self, op: str, args: dict, kids: list[Tensor]) -> Tensor:
        """Row-normalised kernel (a distribution), or raw weights for user kernels and joint.

        Works from the log of the registry's sympy weight formula so that a narrow kernel does
        not underflow; raw weights are scaled by one global constant, which no normalisation sees.
        """
        v = kids[0]
        cols = kids[1] if len(kids) > 1 else v
        metric = args.get("metric", "euclidean")
        d2 = _sqdist(v, cols, metric)
        if "perplexity" in args:
            log_w = -d2 * _perplexity_beta(d2, self.num(args["perplexity"]), self.eye())
        else:
            formula, env = self.formula(op, args)
            log_formula = _log_formula(formula)
            log_w = torch.as_tensor(sym_eval(log_formula, {**env, "d2": d2}))
        if len(kids) == 1 and not args.get("diagonal", False):
            log_w = log_w.masked_fill(self.eye(), -torch.inf)
        self.last_log = None
        if op == "kernel" or args.get("_raw"):
            return torch.exp(log_w - log_w.max())
        self.last_log = torch.log_softmax(log_w, dim=1)
        return torch.softmax(log_w, dim=1)

    def formula(self, op: str, args: dict) -> tuple[sp.Expr, dict[str, float]]:
        if op == "kernel":
            kernel = self.ir.kernels[args["kernel"]]
            return kernel.weight, {p: self.num(args[p]) for p in kernel.params}
        block = reg.BLOCKS[op]
        formula = block.weight_formula()
        assert formula is not None
        env = {
            a.name: self.num(args[a.name])
            for a in block.args
            if a.name in args and a.kind == "real"
        }
        if "temperature" in args:
            env["sigma"] = self.num(args["temperature"]) ** 0.5
        return formula, env


@functools.lru_cache(maxsize=256)
def _log_formula(formula: sp.Expr) -> sp.Expr:
    """log of a kernel's weight formula, expanded (one sympy simplification per formula)."""
    return sp.expand_log(sp.log(formula), force=True)


def _rows(w: Tensor) -> Tensor:
    """Row-normalise; empty rows stay zero."""
    total = w.sum(1, keepdim=True)
    return w / torch.where(total > 0, total, torch.ones_like(total))


def _sqdist(a: Tensor, b: Tensor, metric: str) -> Tensor:
    if metric == "cosine":
        a = a / a.norm(dim=1, keepdim=True)
        b = b / b.norm(dim=1, keepdim=True)
    if metric == "dot":
        return -2 * a @ b.T
    diff = a[:, None, :] - b[None, :, :]
    return (diff * diff).sum(-1)


def _perplexity_beta(d2: Tensor, perplexity: float, eye: Tensor) -> Tensor:
    """Per-row precision beta_i = 1/(2 sigma_i^2) with entropy log(perplexity), by bisection."""
    if not 1 <= perplexity < d2.shape[1]:
        raise ValueError(f"perplexity {perplexity} needs a larger batch, got {d2.shape[1]}")
    d2 = d2.detach().double().masked_fill(eye, float("inf"))
    lo = torch.full((d2.shape[0], 1), -30.0, dtype=d2.dtype, device=d2.device)
    hi = torch.full_like(lo, 30.0)
    target = torch.log(torch.tensor(perplexity, dtype=d2.dtype))
    for _ in range(100):
        mid = (lo + hi) / 2
        p = torch.softmax(-d2 * torch.exp(mid), dim=1)
        entropy = -(p * torch.log(torch.where(p > 0, p, torch.ones_like(p)))).sum(1, keepdim=True)
        # larger beta => lower entropy
        hi = torch.where(entropy < target, mid, hi)
        lo = torch.where(entropy < target, lo, mid)
    return torch.exp((lo + hi) / 2).to(d2.dtype)


def _log_where(t: Tensor, used: Tensor) -> Tensor:
    """log t where `used`, 0 elsewhere: log(0) = -inf never meets a zero weight in autograd."""
    return torch.log(torch.where(used, t, torch.ones_like(t)))


def _safe_log(t: Tensor) -> Tensor:
    return torch.log(torch.where(t > 0, t, torch.ones_like(t)))


def interpret(
    ir: IR,
    z: Tensor,
    inputs: Mapping[str, Tensor] | None = None,
    hypers: Mapping[str, float] | None = None,
    prototypes: Tensor | None = None,
) -> Evaluation:
    """Evaluate a checked IR on one batch."""
    run = _Interpreter(ir, z, inputs or {}, hypers or {}, prototypes)
    p = run.value(ir.roots["p"])
    q = run.value(ir.roots["q"])
    valid = torch.ones(z.shape[0], dtype=torch.bool, device=z.device)
    for ok in run.row_ok:
        valid = valid & ok
    if ir.dist_type(ir.roots["p"]).cross and not ir.dist_type(ir.roots["q"]).cross:
        modality = run.inputs["modality"]
        q = _rows(q * (modality[:, None] != modality[None, :]))
    p = p * valid[:, None]
    div_op = ir.op(ir.roots["loss"])
    if ir.dist_type(ir.roots["p"]).normalised == "joint":
        # one KL over the whole matrix, not a mean over rows
        log_q = _log_where(q, p > 0)
        kl_all = (p * (_safe_log(p) - log_q)).where(p > 0, torch.zeros_like(p)).sum()
        ce_all = -(p * log_q).where(p > 0, torch.zeros_like(p)).sum()
        return Evaluation(p, q, valid, ce_all, kl_all)
    pv, qv = p[valid], q[valid]
    log_qv = _log_where(qv, pv > 0)
    exact = run.log_values.get(ir.roots["q"])
    if exact is not None and not ir.dist_type(ir.roots["p"]).cross:
        log_qv = torch.where(pv > 0, exact[valid], torch.zeros_like(pv))
    kl_pq = (pv * (_safe_log(pv) - log_qv)).where(pv > 0, torch.zeros_like(pv)).sum(1)
    if div_op == "kl":
        divergence = kl_pq.mean()
        if ir.dist_type(ir.roots["p"]).learned:
            loss = divergence
        else:
            ce = -(pv * log_qv).where(pv > 0, torch.zeros_like(pv)).sum(1)
            loss = ce.mean()
    elif div_op == "reverse_kl":
        log_pv = _log_where(pv, qv > 0)
        rows = (qv * (_safe_log(qv) - log_pv)).where(qv > 0, torch.zeros_like(qv)).sum(1)
        divergence = loss = rows.mean()
    elif div_op == "js":
        m = (pv + qv) / 2
        a = (pv * (_safe_log(pv) - _safe_log(m))).where(pv > 0, torch.zeros_like(pv)).sum(1)
        b = (qv * (_safe_log(qv) - _safe_log(m))).where(qv > 0, torch.zeros_like(qv)).sum(1)
        divergence = loss = ((a + b) / 2).mean()
    else:  # a divergence registered without a rule here: the oracle must not guess
        raise NotImplementedError(f"the interpreter has no rule for the divergence {div_op}")
    return Evaluation(p, q, valid, loss, divergence)
