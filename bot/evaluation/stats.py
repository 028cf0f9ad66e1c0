"""Small statistics for reports: Wilson intervals for rates, paired bootstrap intervals for differences."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Z95 = 1.959963984540054


def wilson_interval(successes: int, total: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a rate (95 % by default); (0, 0) when there is nothing to rate."""
    if total <= 0:
        return (0.0, 0.0)
    p = successes / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    margin = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return (max(0.0, centre - margin), min(1.0, centre + margin))


BOOTSTRAP_RESAMPLES = 2000


def bootstrap_mean(
    values: Sequence[float], *, seed: int, resamples: int = BOOTSTRAP_RESAMPLES
) -> tuple[float, tuple[float, float]]:
    """The mean and its 95 % percentile-bootstrap interval; the same seed gives the same interval.

    ``numpy.random.default_rng(seed)`` draws ``resamples`` samples of the values with replacement; the
    interval is the 2.5th and 97.5th percentile of their means.
    """
    if not values:
        raise ValueError("bootstrap_mean needs at least one value")
    if resamples < 1:
        raise ValueError("bootstrap_mean needs at least one resample")
    data = np.asarray(values, dtype=float)
    mean = float(data.mean())
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(data), size=(resamples, len(data)))
    means = data[picks].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    # Means of identical values can round a hair away from the point estimate: snap those back.
    low_f = mean if 0 < float(low) - mean < 1e-9 else float(low)
    high_f = mean if 0 < mean - float(high) < 1e-9 else float(high)
    return mean, (low_f, high_f)


def paired_bootstrap(
    a: Sequence[float], b: Sequence[float], *, seed: int, resamples: int = BOOTSTRAP_RESAMPLES
) -> tuple[float, tuple[float, float]]:
    """Mean of ``a - b`` over paired items (the same questions) and its 95 % bootstrap interval.

    Questions are resampled, not cells, so what both cells share (a hard question) cancels out.
    """
    if len(a) != len(b):
        raise ValueError(f"paired_bootstrap needs pairs: {len(a)} values against {len(b)}")
    return bootstrap_mean([x - y for x, y in zip(a, b, strict=True)], seed=seed, resamples=resamples)
