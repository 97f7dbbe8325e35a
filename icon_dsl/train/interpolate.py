"""The normaliser of q for 1- and 2-D embeddings through sums of the kernel on a grid.

For an embedding z of N points in d <= 2 dimensions the sums over every pair that the normaliser
of q and its gradient need, S_i = sum_j K(|z_i - z_j|^2) c_j for a kernel K of the squared
distance and a few charges c, are computed in O(N) plus FFTs of a grid (the polynomial
interpolation of Linderman et al., Nature Methods 2019, "Fast interpolation-based t-SNE", which
openTSNE uses):

1. the box holding the points is cut into square boxes of side at most ``BOX_WIDTH`` (at least
   ``MIN_BOXES`` per dimension), each with ``NODES`` equispaced interpolation nodes per dimension;
   the nodes of all boxes form one uniform grid;
2. each point's charges are spread onto the nodes of its box with the Lagrange polynomials of
   its position (``NODES``^d nodes a point);
3. the grid charges are convolved with K at the nodes' offsets (K is a function of the offset
   alone on a uniform grid: a Toeplitz matrix, one FFT product);
4. each point reads its sum back from its box's nodes with the same polynomials.

The error is that of the interpolation of K over one box; ``tests/test_interpolate.py`` measures it
against the exact sums for the Student-t kernel at the defaults: kernel sums within 3e-2 (median
1e-3), the normaliser within 2e-4 and its gradient within 6% (cosine above 0.998).

``log_normaliser`` is sum_i c_i log Z_i (per-row q, Z_i = sum_(k != i) w_ik) or C log Z (joint q,
Z = sum_(i != k) w_ik) with its gradient in closed form, for ``sparse.NeighbourObjective``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from icon_dsl.large_data import INTERPOLATED_DIMS

#: Largest side of a box and fewest boxes per dimension (openTSNE's defaults: 1 and 50).
BOX_WIDTH = 1.0
MIN_BOXES = 50
#: Interpolation nodes per box and dimension (openTSNE: 3).
NODES = 3
#: At most this many nodes per dimension: the FFT buffers of 6 charges on the padded grid take
#: about 1 GiB here (4 GiB at twice the side). An embedding spread wider than 512 units gets
#: boxes wider than BOX_WIDTH and a less accurate gradient (docs/training.md).
MAX_GRID = 3 * 512

#: Numbers spread onto and read back from the grid per point and epoch, a per-row q's (a joint
#: q's are fewer): 6 charges spread and 7 sums read on NODES^2 nodes (the cost per point).
GRID_TERMS = (6 + 7) * NODES**2

#: log w(d2) and its slope d log w / d d2 (the generated module's ``_q_kernel``).
Kernel = Callable[[torch.Tensor], tuple[torch.Tensor, "torch.Tensor | float"]]


class Grid:
    """Where each point of z sits on the interpolation grid: its nodes and their weights."""

    def __init__(self, z: torch.Tensor) -> None:
        n, d = z.shape
        if d not in INTERPOLATED_DIMS:
            raise ValueError(f"interpolation needs a 1- or 2-D embedding, got {d} dimensions")
        low, high = z.min(0).values, z.max(0).values
        side = float((high - low).max()) * (1 + 1e-6) + 1e-12  # every point strictly inside
        boxes = _smooth(max(MIN_BOXES, math.ceil(side / BOX_WIDTH)))
        boxes = min(boxes, MAX_GRID // NODES)
        self.width = side / boxes  # of a box
        self.size = boxes * NODES  # nodes per dimension
        self.spacing = self.width / NODES
        self.dims = d
        # each point's box and its position in the box, in units of node spacing
        scaled = (z - low) / self.width
        box = scaled.floor().clamp_(0, boxes - 1)
        local = (scaled - box) * NODES - 0.5  # node a of the box sits at local = a
        weights = _lagrange(local)  # (N, d, NODES)
        first = box.long() * NODES  # (N, d) the box's first node
        nodes = first[:, :, None] + torch.arange(NODES, device=z.device)  # (N, d, NODES)
        # each point's nodes, indexed on the zero-padded grid (rows of 2 x size): charges are
        # spread and sums read there, without copying the padding in or the corner out
        if d == 1:
            self.index = nodes[:, 0, :]
            self.weight = weights[:, 0, :]
        else:  # the NODES^2 nodes of the box, row-major
            row = nodes[:, 0, :, None] * (2 * self.size)
            self.index = (row + nodes[:, 1, None, :]).reshape(n, -1)
            self.weight = (weights[:, 0, :, None] * weights[:, 1, None, :]).reshape(n, -1)

    def spectra(self, charges: torch.Tensor) -> torch.Tensor:
        """(c, ...) complex: the FFT of each column of charges (N, c) spread onto the
        zero-padded grid. One spectrum serves every kernel it is convolved with."""
        c = charges.shape[1]
        padded = (2 * self.size,) * self.dims
        spread = charges.new_zeros(c, math.prod(padded))
        weighted = (charges.T[:, :, None] * self.weight).reshape(c, -1)
        spread.index_add_(1, self.index.reshape(-1), weighted)
        return torch.fft.rfftn(spread.view(c, *padded), dim=tuple(range(1, self.dims + 1)))

    def sums(self, product: torch.Tensor) -> torch.Tensor:
        """(N, c): sum_j K(z_i, z_j) charges_j (j = i included), from the product of the charges'
        ``spectra`` and the kernel's FFT (``kernel_on_grid``)."""
        if self.dims == 2:  # only the first `size` rows are read: invert them alone along the
            # last dimension (the inverse took 139 -> 78 ms for 6 charges at 675 nodes)
            product = torch.fft.ifft(product, dim=1)[:, : self.size]
        grid = torch.fft.irfft(product, n=2 * self.size, dim=-1).reshape(len(product), -1)
        return (grid[:, self.index] * self.weight).sum(2).T

    def own_terms(self, values: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """(N,): each point's own term K(z_i, z_i) as the grid computes it (to take off exactly
        what ``sums`` counts for j = i: its interpolation error is largest there)."""
        steps = torch.arange(NODES, dtype=self.weight.dtype, device=self.weight.device)
        offsets = (steps[:, None] - steps[None, :]) * self.spacing
        d2 = offsets * offsets  # between the nodes of one box, along one dimension
        if self.dims == 2:  # node (a, b) is a * NODES + b, as in the index
            d2 = (d2[:, None, :, None] + d2[None, :, None, :]).reshape(NODES**2, NODES**2)
        return torch.einsum("ni,ij,nj->n", self.weight, values(d2), self.weight)

    def kernel_on_grid(
        self, values: Callable[[torch.Tensor], torch.Tensor], dtype: torch.dtype
    ) -> torch.Tensor:
        """The FFT of K at every offset between nodes, laid out circularly on the padded grid, a
        real tensor (``values`` may stack several kernels along a first dimension)."""
        steps = torch.arange(2 * self.size, dtype=dtype)
        steps = torch.where(steps < self.size, steps, steps - 2 * self.size) * self.spacing
        d2 = steps * steps
        if self.dims == 2:
            d2 = d2[:, None] + d2[None, :]
        spectrum = torch.fft.rfftn(values(d2), dim=tuple(range(-self.dims, 0)))
        # K is even on the circular grid (offset j and -j alike), so its transform is real: a
        # real factor makes each product with the charges' spectra about 3x cheaper
        return spectrum.real.contiguous()


def _smooth(n: int) -> int:
    """The least number >= n with no prime factor above 5: FFTs of such lengths are fast (the
    grid of 1,503 nodes, padded to 3,006 = 2 x 3^2 x 167, took 2.2 s where 1,500 took 0.6 s)."""
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def _lagrange(local: torch.Tensor) -> torch.Tensor:
    """(..., NODES): the Lagrange basis polynomials of nodes 0..NODES-1 at ``local``."""
    out = []
    for a in range(NODES):
        term = torch.ones_like(local)
        for b in range(NODES):
            if b != a:
                term = term * (local - b) / (a - b)
        out.append(term)
    return torch.stack(out, -1)


@torch.no_grad()
def log_normaliser(
    z: torch.Tensor, mass: torch.Tensor, kernel: Kernel, joint: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """sum_i mass_i log Z_i (per row) or sum(mass) log Z (joint), and its gradient in z.

    With w = K and w' = dK / d d2 = K times the kernel's slope, d d2_ik = 2 (z_i - z_k).(dz_i -
    dz_k) gives the gradient 2 [u_a (z_a S'[1]_a - S'[z]_a) + z_a S'[u]_a - S'[u z]_a], u_i =
    mass_i / Z_i (joint: the constant sum(mass) / Z, so 4 u (z_a S'[1]_a - S'[z]_a)), S' the
    sums with w'. The j = i terms of the
    grid sums cancel there; from Z they are taken off as the grid computes them. An embedding
    that is not finite gives a NaN value and gradient (the runtime reports the epoch)."""
    if not bool(torch.isfinite(z).all()):
        nan = torch.full_like(z, math.nan)
        return nan.sum(), nan
    grid = Grid(z)
    dtype = z.dtype

    def weight(d2: torch.Tensor) -> torch.Tensor:
        return torch.exp(kernel(d2)[0])

    def weight_and_slope(d2: torch.Tensor) -> torch.Tensor:
        log_w, s = kernel(d2)
        w = torch.exp(log_w)
        return torch.stack([w, w * s])

    weights, slopes = grid.kernel_on_grid(weight_and_slope, dtype).to(z.device)
    ones = torch.ones(len(z), 1, dtype=dtype, device=z.device)
    # charges 1 and z serve both kernels (one inverse for the four sums); only u depends on
    # the row sums
    plain = grid.spectra(torch.cat([ones, z], 1))
    product = plain.new_empty((1 + len(plain), *plain.shape[1:]))
    torch.mul(plain[:1], weights, out=product[:1])
    torch.mul(plain, slopes, out=product[1:])
    sums = grid.sums(product)
    row_sums = sums[:, 0] - grid.own_terms(weight)
    row_sums = row_sums.clamp_min(torch.finfo(dtype).tiny)  # interpolation may undershoot
    s = sums[:, 1:]
    if joint:  # u is one number: the two halves of the gradient are the same sums
        total = row_sums.sum()
        gradient = 4 * mass.sum() / total * (z * s[:, :1] - s[:, 1:])
        return mass.sum() * torch.log(total), gradient
    u = (mass / row_sums)[:, None]
    weighted = grid.sums(grid.spectra(torch.cat([u, u * z], 1)) * slopes)
    gradient = 2 * (u * (z * s[:, :1] - s[:, 1:]) + z * weighted[:, :1] - weighted[:, 1:])
    value = (mass * torch.log(row_sums)).sum()
    return value, gradient
