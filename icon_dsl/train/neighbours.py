"""The k nearest neighbours of every row of a data set (euclidean), found once before training.

``nearest_neighbours(x, k)`` returns (indices, squared distances), each (N, k), the row itself
left out, nearest first. Three ways:

- faiss-cpu's flat (brute-force) index when it is installed (the ``scale`` extra): BLAS distance
  blocks with a heap selection in C++, exact, the fastest exact search measured here. faiss is
  maintained by Meta, ships wheels for Linux, macOS and Windows, and needs no JIT warm-up
  (pynndescent compiles with numba on first use);
- above ``GRAPH_ROWS`` rows, faiss's HNSW graph instead: approximate, and half the time of the
  flat search at 70,000 x 40 (4.6 s to build, 4.5 s to search against 12.6-14.5 s; 99.4% of the
  90 nearest neighbours found on MNIST-1D). The graph is built on one thread: a parallel build
  inserts points in an order that varies, so the neighbours would change from run to run;
- without faiss, a blocked torch search (distances of ``SEARCH_BLOCK`` rows at a time, ``topk``):
  memory SEARCH_BLOCK x N, exact at any N.

Ties between equally distant points are broken by the search; the row itself is removed by its
index (duplicated points stay each other's neighbours at distance 0).
"""

from __future__ import annotations

import math

import numpy as np
import torch

SEARCH_BLOCK = 2048
#: Rows above which faiss searches an HNSW graph (the flat search grows as N^2), its links per
#: point, the candidates kept while building it, and those kept per neighbour asked for while
#: searching (128 for k = 91: the 99.4% above).
GRAPH_ROWS = 50_000
GRAPH_LINKS = 32
GRAPH_BUILD = 64
GRAPH_SEARCH_PER_NEIGHBOUR = 1.4


def nearest_neighbours(
    x: np.ndarray, k: int, *, use_faiss: bool | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(indices int64, squared distances float64) of the k nearest other rows of x, (N, k)."""
    n = len(x)
    if not 1 <= k < n:
        raise ValueError(f"k nearest neighbours needs 1 <= k < N, got k={k} with N={n}")
    points = np.ascontiguousarray(x, dtype=np.float32)
    if use_faiss is None:
        use_faiss = _faiss_available()
    found = _faiss_search(points, k + 1) if use_faiss else _torch_search(points, k + 1)
    return _without_self(*found, k)


def _searches_a_graph(n: int) -> bool:
    """Whether faiss searches n rows through its HNSW graph (else exactly)."""
    return n > GRAPH_ROWS


def search_kind(n: int) -> str:
    """How the neighbours of n rows are found, in words (for explain)."""
    if _searches_a_graph(n) and _faiss_available():
        return "an approximate search (faiss HNSW graph)"
    return "an exact search"


def _faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _faiss_search(points: np.ndarray, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    import faiss

    threads = torch.get_num_threads()
    if _searches_a_graph(len(points)):
        faiss.omp_set_num_threads(1)  # a deterministic graph (module docstring)
        graph = faiss.IndexHNSWFlat(points.shape[1], GRAPH_LINKS)
        graph.hnsw.efConstruction = GRAPH_BUILD
        graph.add(points)
        graph.hnsw.efSearch = max(GRAPH_BUILD, math.ceil(GRAPH_SEARCH_PER_NEIGHBOUR * k))
        index: faiss.Index = graph
    else:
        index = faiss.IndexFlatL2(points.shape[1])
        index.add(points)
    faiss.omp_set_num_threads(threads)
    d2, ids = index.search(points, k)
    if (ids < 0).any():  # a graph search that found fewer than k points (many duplicates)
        d2, ids = faiss.knn(points, points, k)
    return torch.from_numpy(ids.astype(np.int64)), torch.from_numpy(d2.astype(np.float64))


def _torch_search(points: np.ndarray, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(points)
    norms = (x * x).sum(1)
    ids, dists = [], []
    for start in range(0, len(x), SEARCH_BLOCK):
        block = x[start : start + SEARCH_BLOCK]
        d2 = (norms[start : start + SEARCH_BLOCK, None] + norms[None, :]).addmm_(
            block, x.T, alpha=-2
        )
        found = d2.topk(k, dim=1, largest=False)
        ids.append(found.indices)
        dists.append(found.values.clamp_min(0))
    return torch.cat(ids), torch.cat(dists).double()


def _without_self(ids: torch.Tensor, d2: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop each row's own index (or, if the search did not return it, its farthest hit)."""
    rows = torch.arange(len(ids))[:, None]
    is_self = ids == rows
    # rows without themselves among the hits (many duplicates) drop the last, farthest one
    missing = ~is_self.any(1)
    is_self[missing, -1] = True
    first_self = is_self.int().argmax(1, keepdim=True)  # one entry per row, even with repeats
    drop = torch.zeros_like(is_self).scatter_(1, first_self, True)
    keep = ~drop
    return ids[keep].view(len(ids), k), d2[keep].view(len(ids), k).clamp_min(0)
