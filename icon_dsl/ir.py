"""The IR: typed nodes over a networkx DiGraph, each with the span of the text it came from.

Takes: nodes added by lower/. Guarantees: node ids are assigned in a deterministic order;
`children()` returns operands in argument order; `verify()` checks the graph is a DAG whose
edges name their slots; `dump()` is a stable text form; `canonical()` / `canonical_hash()` give a
form that is equal for specs denoting the same objective (numbers kept, mixtures and unions
sorted), used to recognise known methods and deduplicate the enumeration.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

import networkx as nx
import sympy as sp

from .registry import Domain
from .source import Source, Span

Support = Literal["pairs", "columns"]
Normalised = Literal["row", "joint", "raw"]


@dataclass(frozen=True)
class DistType:
    """What a distribution (or raw-weights) node is: its support and its guarantees."""

    support: Support
    columns: sp.Expr | None  # n, for an N x n support
    diagonal: bool  # j = i in the support
    normalised: Normalised
    learned: bool  # depends on f(x) or prototypes
    differentiable: bool
    may_be_empty: bool
    cross: bool = False  # the support is the other modality (cross_modal)

    def describe_support(self) -> str:
        if self.support == "columns":
            return f"N x {self.columns} (columns)"
        if self.normalised == "joint":
            inside = "j = i included" if self.diagonal else "j != i"
            return f"N x N, jointly normalised over all pairs, {inside}"
        if self.cross:
            return "N x N, the other modality"
        return "N x N, j = i included" if self.diagonal else "N x N, j != i"


# A value kind for non-distribution nodes: "vector", "labels", "index", "modality", "columns",
# "number", "mapper", "divergence".
NodeType = DistType | str


@dataclass(frozen=True)
class Hyper:
    """A hyperparameter: a constructor argument of the generated module."""

    name: str
    default: float | None
    domain: Domain
    integer: bool
    span: Span | None


@dataclass(frozen=True)
class UserKernel:
    name: str
    params: tuple[str, ...]
    log_weight: sp.Expr  # log w as a formula of d2 and params
    weight: sp.Expr
    span: Span


@dataclass
class IR:
    source: Source
    graph: nx.DiGraph = field(default_factory=nx.DiGraph)
    roots: dict[str, int] = field(default_factory=dict)  # p, q, loss, mapper
    hypers: dict[str, Hyper] = field(default_factory=dict)
    kernels: dict[str, UserKernel] = field(default_factory=dict)
    # (expression of hyperparameters, the domain of the slot it fills, the slot's name)
    constraints: list[tuple[sp.Expr, Domain, str]] = field(default_factory=list)
    method: str = "method"
    title: str | None = None
    _next: int = 0

    # -- building ------------------------------------------------------------------------
    def add(
        self,
        op: str,
        type: NodeType,
        span: Span | None,
        args: dict[str, Any] | None = None,
        children: list[int] | None = None,
        text: str | None = None,
    ) -> int:
        """A new node; `text` is its expression printed from the syntax tree (comments and
        layout of the source are not part of it)."""
        node = self._next
        self._next += 1
        self.graph.add_node(node, op=op, type=type, span=span, args=dict(args or {}), text=text)
        for slot, child in enumerate(children or []):
            self.graph.add_edge(node, child, slot=slot)
        return node

    # -- reading -------------------------------------------------------------------------
    def op(self, node: int) -> str:
        return str(self.graph.nodes[node]["op"])

    def type(self, node: int) -> NodeType:
        return self.graph.nodes[node]["type"]  # type: ignore[no-any-return]

    def dist_type(self, node: int) -> DistType:
        t = self.type(node)
        assert isinstance(t, DistType), f"node {node} is not a distribution"
        return t

    def args(self, node: int) -> dict[str, Any]:
        return self.graph.nodes[node]["args"]  # type: ignore[no-any-return]

    def span(self, node: int) -> Span | None:
        return self.graph.nodes[node]["span"]  # type: ignore[no-any-return]

    def text(self, node: int) -> str:
        """The node's expression as canonical spec text (printed, never sliced from the source),
        or its op when it has none."""
        text = self.graph.nodes[node].get("text")
        return str(text) if text is not None else self.op(node)

    def children(self, node: int) -> list[int]:
        edges = sorted(self.graph.out_edges(node, data="slot"), key=lambda e: e[2])
        return [child for _, child, _ in edges]

    def subtree(self, node: int) -> list[int]:
        """The node and everything it depends on, in a deterministic post-order."""
        order: list[int] = []
        seen: set[int] = set()

        def visit(n: int) -> None:
            if n in seen:
                return
            seen.add(n)
            for c in self.children(n):
                visit(c)
            order.append(n)

        visit(node)
        return order

    def verify(self) -> None:
        """Internal invariants: a DAG, slots 0..k-1 on every node, roots present."""
        assert nx.is_directed_acyclic_graph(self.graph), "IR has a cycle"
        for node in self.graph.nodes:
            slots = sorted(s for _, _, s in self.graph.out_edges(node, data="slot"))
            assert slots == list(range(len(slots))), f"node {node} has slots {slots}"
        for name, root in self.roots.items():
            assert root in self.graph, f"root {name} missing"

    # -- text forms ----------------------------------------------------------------------
    def dump(self) -> str:
        """One line per node in id order: `%3 = gaussian(%1; sigma=0.5) : N x N, j != i`."""
        lines = []
        for node in sorted(self.graph.nodes):
            kids = ", ".join(f"%{c}" for c in self.children(node))
            args = ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(self.args(node).items()))
            inner = "; ".join(x for x in (kids, args) if x)
            t = self.type(node)
            tdesc = t.describe_support() if isinstance(t, DistType) else t
            lines.append(f"%{node} = {self.op(node)}({inner}) : {tdesc}")
        for name in sorted(self.roots):
            lines.append(f"{name} = %{self.roots[name]}")
        return "\n".join(lines)

    def canonical(self, node: int, numbers: bool = True) -> str:
        """A canonical term for a subtree; commutative operands are sorted."""
        op = self.op(node)
        kids = [self.canonical(c, numbers) for c in self.children(node)]
        args = self.args(node)
        if op in ("mixture", "union"):
            weights = args.get("weights", [None] * len(kids))
            pairs = sorted(zip([_fmt(w) if numbers else "w" for w in weights], kids, strict=True))
            return f"{op}(" + ", ".join(f"{w}*{k}" for w, k in pairs) + ")"
        shown = {k: v for k, v in args.items() if k != "weights"}
        if not numbers:
            shown = {k: v for k, v in shown.items() if isinstance(v, (str, bool))}
        parts = kids + [f"{k}={_fmt(v)}" for k, v in sorted(shown.items())]
        return f"{op}(" + ", ".join(parts) + ")"

    def canonical_hash(self, numbers: bool = True) -> str:
        """A hash of the whole objective (loss and mapper); equal hash => same objective."""
        text = " | ".join(
            f"{name}:{self.canonical(self.roots[name], numbers)}"
            for name in ("loss", "mapper")
            if name in self.roots
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, sp.Basic):
        if value.is_Number:
            f = float(value)
            return repr(int(f)) if f == int(f) and abs(f) < 1e15 else repr(f)
        return sp.sstr(value)
    if isinstance(value, float):
        return repr(int(value)) if value == int(value) else repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)
