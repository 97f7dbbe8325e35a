"""One t-SNE training step (forward + backward) on digits: the generated module against autograd.

    python benchmarks/neighbour_step.py            # N = 1797 (all of digits), 2-D, float32
    python benchmarks/neighbour_step.py --threads 1

Three ways to compute the same loss and gradient, timed interleaved in one process (the machine's
drift hits all three alike), median over the rounds, ratios against the autograd forms:

- generated: `generated/tsne.py`'s forward (the closed-form `_NeighbourCrossEntropy`, p cached);
- autograd (dense I-Con form): the same module's `_terms` (p cached, q in log space) with
  -sum p log q differentiated by autograd, which is how every other spec's forward runs;
- autograd (hand-written): p fixed, q = row-normalised Cauchy kernel, a minimal t-SNE loss.

It also checks that the three agree (loss and gradient) before timing.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args(argv)
    import torch
    from sklearn.datasets import load_digits

    torch.set_num_threads(args.threads)
    spec = importlib.util.spec_from_file_location("tsne", ROOT / "generated" / "tsne.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    loss = module.TSNE(validate=False)
    x = torch.tensor(load_digits().data / 16.0, dtype=torch.float32)
    n = len(x)
    z0 = torch.randn(n, 2, generator=torch.Generator().manual_seed(0)) * 5
    p = loss._p_terms(z0, x=x)[0].exp()  # fills the cache: every form below reads this p
    diag = torch.eye(n, dtype=torch.bool)

    def generated(z: torch.Tensor) -> torch.Tensor:
        return loss(z, x=x)

    def dense(z: torch.Tensor) -> torch.Tensor:
        log_p, log_q, keep, world = loss._terms(z, x=x)
        probs = log_p.exp()
        return loss._mean(-(probs * torch.where(probs > 0, log_q, 0.0)).sum(1), keep, world)

    def hand(z: torch.Tensor) -> torch.Tensor:
        d2 = (z[:, None, :] - z[None, :, :]).square().sum(2)
        logits = torch.log1p(d2).neg().masked_fill(diag, -math.inf)
        log_q = torch.log_softmax(logits, dim=1).masked_fill(diag, 0.0)
        return -(p * log_q).sum(1).mean()

    forms = {"generated": generated, "autograd (dense I-Con form)": dense, "autograd (hand)": hand}
    results: dict[str, tuple[float, torch.Tensor | None]] = {}
    for name, form in forms.items():
        z = z0.clone().requires_grad_(True)
        value = form(z)
        value.backward()
        results[name] = (float(value.detach()), z.grad)
    ref_value, ref_grad = results["generated"]
    for name, (got, grad) in results.items():
        assert abs(got - ref_value) <= 1e-4 * abs(ref_value), (name, got, ref_value)
        assert grad is not None and ref_grad is not None
        scale = float(ref_grad.abs().max())
        assert float((grad - ref_grad).abs().max()) <= 1e-3 * scale, name

    times: dict[str, list[float]] = {name: [] for name in forms}
    for _ in range(args.rounds):
        for name, form in forms.items():
            z = z0.clone().requires_grad_(True)
            start = time.perf_counter()
            form(z).backward()
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(values) * 1e3 for name, values in times.items()}
    print(f"t-SNE step, digits N = {n}, 2-D, float32, {args.threads} thread(s)")
    print(f"{'form':32} {'median ms':>10} {'generated / form':>17}")
    for name, ms in medians.items():
        print(f"{name:32} {ms:10.2f} {medians['generated'] / ms:17.2f}")


if __name__ == "__main__":
    main()
