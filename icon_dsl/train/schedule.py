"""Learning-rate schedules and the seeds derived from a run's seed."""

from __future__ import annotations

import math
from collections.abc import Callable


def factor_after(steps: int, factor: float) -> Callable[[int], float]:
    """A learning-rate factor of 1 for the first ``steps`` steps, ``factor`` after."""

    def value(step: int) -> float:
        return 1.0 if step < steps else factor

    return value


def cosine_decay(total_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        progress = min(step, total_steps) / max(total_steps, 1)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def derive_seed(seed: int, salt: int) -> int:
    """A per-epoch (or per-purpose) generator seed derived from the run's seed."""
    return (seed * 1_000_003 + salt * 7_919 + 12_345) % (2**63 - 1)
