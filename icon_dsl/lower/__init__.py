"""Lowering: surface syntax -> IR, resolving names against the registry.

Takes: a syntax.Spec and a Diagnostics collector. Guarantees: every name is resolved (or an
`unknown-name` error with "did you mean"), every call is bound to its registry arguments (arity,
keywords, kinds, literal domains), every node is typed (DistType for distributions). Problems are
collected, not raised; the result is None only when p, q or the mapper could not be built.

One concern a module, each a layer of the `Lowerer` class over the one below it: `base` (the
state), `numbers` (numbers and expressions of hyperparameters), `calls` (binding a call's
arguments), `kernels` (user kernels), `distributions` (p, q, mixtures) and `statements` (the
spec's statements, the mapper and the loss).
"""

from .names import did_you_mean
from .statements import Lowerer, lower

__all__ = ["Lowerer", "did_you_mean", "lower"]
