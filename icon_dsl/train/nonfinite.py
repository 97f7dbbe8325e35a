"""Where a training step stopped being finite, and what to try.

The runtime checks every step: the loss value (already read back for the progress bar) and then
the gradients of every parameter, before the optimiser touches them. The first non-finite one
raises ``NonFinite`` with a message that says which (the loss itself, or the gradient of which
parameter, and where in it) and the usual causes of that kind of failure; the runtime adds the
epoch and the step and re-raises it as TrainingFailed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

#: Embeddings larger than this (in absolute value) are called out as the likely overflow.
LARGE_EMBEDDING = 1e4


class NonFinite(Exception):
    """A non-finite loss or gradient in one step; the message names it and what to try."""


def check_loss(value: float, z: torch.Tensor) -> None:
    """Raise NonFinite when ``value`` (the step's loss) is nan or inf; ``z`` is the batch's
    embedding, whose size tells an overflowing embedding from an overflowing loss."""
    if math.isfinite(value):
        return
    z = z.detach()
    finite = bool(torch.isfinite(z).all())
    if not finite:
        raise NonFinite(
            f"the loss was {value} because the mapper's output f(x) is not finite: the weights "
            "or the inputs overflowed; try a smaller learning rate, fewer epochs, or data "
            "scaled to unit variance"
        )
    largest = float(z.abs().max()) if z.numel() else 0.0
    if largest > LARGE_EMBEDDING:
        raise NonFinite(
            f"the loss was {value} with embeddings as large as {largest:.3g}: the embedding "
            "grew until the loss overflowed in float32; try fewer epochs, another seed, or a "
            "mapper on the unit sphere (sphere=true)"
        )
    raise NonFinite(
        f"the loss was {value} for finite embeddings (largest |f(x)| {largest:.3g}): the spec's "
        "loss overflows at these inputs, e.g. a temperature or sigma so small that the scaled "
        "similarities exceed float32, or a user kernel that grows too fast (exp of a large "
        "number); try a larger temperature or sigma, or a kernel written in terms of d2 that "
        "stays bounded"
    )


def check_gradients(value: float, named: Iterable[tuple[str, torch.nn.Parameter]]) -> None:
    """Raise NonFinite naming the first parameter whose gradient has a nan or an inf.

    ``named`` are (qualified name, parameter) pairs, e.g. ``("mapper net.weight", p)``.
    """
    grads = [(name, p.grad) for name, p in named if p.grad is not None]
    if not grads:
        return
    # one sum per gradient is the cheap test (nan and inf propagate through it; a pass of
    # isfinite().all() over every gradient cost about 5 times as much); only when a sum is not
    # finite are the entries themselves looked at, since a sum of large entries can overflow
    sums = torch.stack([grad.sum() for _, grad in grads])
    if bool(torch.isfinite(sums).all()):
        return
    bad_grads = [(n, g) for n, g in grads if not bool(torch.isfinite(g).all())]
    if not bad_grads:
        return
    name, grad = bad_grads[0]
    bad = ~torch.isfinite(grad)
    where = tuple(int(i) for i in torch.nonzero(bad)[0]) if grad.dim() else ()
    kinds = sorted({"nan" if math.isnan(v) else "inf" for v in grad[bad].tolist()[:1000]})
    at = f", first at index {list(where)}" if where else ""
    raise NonFinite(
        f"the loss was finite ({value:.6g}) but its gradient with respect to the {name} has "
        f"{int(bad.sum())} {'/'.join(kinds)} value(s){at}: a term of the loss has no finite "
        "derivative at this batch. The usual cause is a user kernel with a square root or a "
        "power below 1 of an expression that reaches 0 away from d2 = 0, e.g. "
        "sqrt(abs(d2 - a)) (at d2 = 0 the compiled kernel already takes its limit): keep the "
        "inside off 0, e.g. sqrt(abs(d2 - a) + 1e-12), or use a smooth kernel"
    )
