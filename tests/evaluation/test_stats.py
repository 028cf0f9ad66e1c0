"""Wilson intervals and seeded (paired) bootstrap intervals."""

from __future__ import annotations

import random

import pytest

from bot.evaluation.stats import bootstrap_mean, paired_bootstrap, wilson_interval


def test_wilson_interval() -> None:
    low, high = wilson_interval(7, 10)
    assert low == pytest.approx(0.3968, abs=1e-4) and high == pytest.approx(0.8922, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 0.0)


def sample(seed: int, n: int = 200) -> tuple[list[float], list[float]]:
    rng = random.Random(seed)
    base = [float(rng.random() < 0.6) for _ in range(n)]
    tuned = [float(rng.random() < 0.75) for _ in range(n)]
    return tuned, base


def test_paired_bootstrap_is_reproducible_and_contains_the_difference() -> None:
    tuned, base = sample(1)
    point, (low, high) = paired_bootstrap(tuned, base, seed=0)
    assert point == pytest.approx(sum(tuned) / len(tuned) - sum(base) / len(base))
    assert low < point < high
    assert paired_bootstrap(tuned, base, seed=0) == (point, (low, high))
    assert paired_bootstrap(tuned, base, seed=1) != (point, (low, high))
    # the interval is about the size the normal approximation gives (sd of the paired differences / sqrt n)
    diffs = [a - b for a, b in zip(tuned, base, strict=True)]
    sd = (sum((d - point) ** 2 for d in diffs) / (len(diffs) - 1)) ** 0.5
    assert high - low == pytest.approx(2 * 1.96 * sd / len(diffs) ** 0.5, rel=0.15)


def test_pairing_cancels_what_both_share() -> None:
    hard = [0.0] * 50 + [1.0] * 50
    same_plus_one = [0.0] * 49 + [1.0] * 51  # one more question right, everything else the same
    point, (low, high) = paired_bootstrap(same_plus_one, hard, seed=0)
    assert point == pytest.approx(0.01)
    assert low >= 0.0 and high <= 0.04  # unpaired, the interval would be about ±0.14


def test_constant_differences_have_a_zero_width_interval() -> None:
    point, (low, high) = paired_bootstrap([0.1] * 7, [0.0] * 7, seed=3)
    assert point == pytest.approx(0.1) and low == pytest.approx(0.1) and high == pytest.approx(0.1)
    mean, (low, high) = bootstrap_mean([0.1] * 7, seed=3)
    assert low <= mean <= high


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="needs pairs"):
        paired_bootstrap([1.0], [1.0, 0.0], seed=0)
    with pytest.raises(ValueError, match="at least one value"):
        bootstrap_mean([], seed=0)
