"""The statistics behind a verdict (DESIGN.md §8), from :mod:`scipy.stats` wherever it has them.

- :func:`mean_ci`: mean over seeds with a 95 % t-interval (``scipy.stats.ttest_1samp``);
- :func:`paired_difference`: the paired difference of two candidates over the seeds both have, with its
  95 % interval and two-sided p-value (``scipy.stats.ttest_rel``);
- :func:`holm`: Holm's step-down adjustment of a family of p-values (not in scipy; a few lines);
- :func:`probability_best`: how often each candidate has the best mean when the seeds are resampled
  (a paired bootstrap: every candidate gets the same resampled seeds);
- :func:`seeds_needed`: seeds a paired t-test needs to resolve a difference (normal approximation);
- :func:`mcnemar`: McNemar's exact test of two classifiers on the same images (``scipy.stats.binomtest``);
- :func:`bootstrap_ci`: a percentile bootstrap interval of any statistic (``scipy.stats.bootstrap``);
- :func:`pack_bits` / :func:`unpack_bits` (from :mod:`resattn.study.records`): per-image correctness,
  stored compactly (bit-packed, base64).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from resattn.study.records import pack_bits, unpack_bits

__all__ = [
    "Difference",
    "Summary",
    "bootstrap_ci",
    "holm",
    "mcnemar",
    "mean_ci",
    "pack_bits",
    "paired_difference",
    "probability_best",
    "seeds_needed",
    "unpack_bits",
]

NAN = float("nan")


@dataclass(frozen=True)
class Summary:
    """Mean of one candidate's values with a confidence interval (NaN bounds with fewer than 2 values)."""

    mean: float
    low: float
    high: float
    n: int


@dataclass(frozen=True)
class Difference:
    """A paired difference ``a − b``: its mean, confidence interval and two-sided p-value."""

    mean: float
    low: float
    high: float
    p: float
    n: int
    sd: float = NAN  # seed-to-seed standard deviation of the difference (NaN with fewer than 2 seeds)


def _finite(values: Sequence[float | None]) -> np.ndarray:
    return np.array([v for v in values if v is not None and math.isfinite(v)], dtype=float)


def mean_ci(values: Sequence[float | None], confidence: float = 0.95) -> Summary:
    """Mean and t-interval of the finite values (``None``: not measured)."""
    x = _finite(values)
    if len(x) == 0:
        return Summary(NAN, NAN, NAN, 0)
    if len(x) < 2:
        return Summary(float(x.mean()), NAN, NAN, 1)
    if np.all(x == x[0]):  # no spread: the interval is the point (scipy would give NaN)
        return Summary(float(x[0]), float(x[0]), float(x[0]), len(x))
    ci = stats.ttest_1samp(x, 0.0).confidence_interval(confidence)
    return Summary(float(x.mean()), float(ci.low), float(ci.high), len(x))


def paired_difference(a: Sequence[float | None], b: Sequence[float | None], confidence: float = 0.95) -> Difference:
    """``a − b`` over the positions (seeds) where both are measured."""
    pairs = [(x, y) for x, y in zip(a, b, strict=False)
             if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)]
    if not pairs:
        return Difference(NAN, NAN, NAN, NAN, 0)
    xa, xb = np.array(pairs, dtype=float).T
    d = xa - xb
    if len(d) < 2:
        return Difference(float(d.mean()), NAN, NAN, NAN, len(d))
    if np.all(d == d[0]):  # identical differences on every seed
        return Difference(float(d[0]), float(d[0]), float(d[0]), 1.0 if d[0] == 0 else 0.0, len(d), 0.0)
    result = stats.ttest_rel(xa, xb)
    ci = result.confidence_interval(confidence)
    return Difference(float(d.mean()), float(ci.low), float(ci.high), float(result.pvalue), len(d),
                      float(d.std(ddof=1)))


def holm(pvalues: Mapping[str, float]) -> dict[str, float]:
    """Holm–Bonferroni adjusted p-values (step-down, monotone, capped at 1); NaN stays NaN."""
    finite = sorted(((p, k) for k, p in pvalues.items() if p is not None and math.isfinite(p)))
    m = len(finite)
    out: dict[str, float] = {k: NAN for k in pvalues}
    running = 0.0
    for i, (p, key) in enumerate(finite):
        running = max(running, min(1.0, (m - i) * p))
        out[key] = running
    return out


def probability_best(
    values: Mapping[str, Sequence[float | None]], *, resamples: int = 4000, seed: int = 0
) -> dict[str, float]:
    """For each candidate, the share of paired bootstrap resamples of the seeds in which its mean is
    the highest (ties split evenly). A candidate's mean in a resample uses the resampled seeds it has;
    one with none of them cannot win that resample."""
    names = list(values)
    if not names:
        return {}
    n_seeds = max(len(v) for v in values.values())
    table = np.full((len(names), n_seeds), np.nan)
    for i, name in enumerate(names):
        for j, v in enumerate(values[name]):
            if v is not None and math.isfinite(v):
                table[i, j] = v
    rng = np.random.default_rng(seed)
    wins = np.zeros(len(names))
    for _ in range(resamples):
        picks = rng.integers(0, n_seeds, n_seeds)
        sample = table[:, picks]
        counts = np.sum(~np.isnan(sample), axis=1)
        means = np.where(counts > 0, np.nansum(sample, axis=1) / np.maximum(counts, 1), -np.inf)
        best = np.flatnonzero(means == means.max())
        if np.isfinite(means.max()):
            wins[best] += 1.0 / len(best)
    return {name: float(wins[i] / resamples) for i, name in enumerate(names)}


def seeds_needed(sd_difference: float, effect: float, *, alpha: float = 0.05, power: float = 0.8) -> int | None:
    """Seeds a two-sided paired test at ``alpha`` needs to detect a mean difference ``effect`` with
    ``power``, given the seed-to-seed standard deviation of the difference (normal approximation,
    ``n = ((z₁₋α/₂ + z_power) σ / δ)²``). ``None`` when it cannot be said (no spread or no effect)."""
    if not (math.isfinite(sd_difference) and math.isfinite(effect)) or effect == 0 or sd_difference <= 0:
        return None
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return max(2, math.ceil((z * sd_difference / abs(effect)) ** 2))


def mcnemar(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> tuple[int, int, float]:
    """McNemar's exact test of two classifiers on the same images: ``(a right and b wrong, b right and a
    wrong, two-sided p)``. Only the discordant images count; p is the binomial test of them at 1/2."""
    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"the two results cover different images ({a.shape[0]} and {b.shape[0]})")
    only_a = int(np.sum(a & ~b))
    only_b = int(np.sum(~a & b))
    if only_a + only_b == 0:
        return 0, 0, 1.0
    return only_a, only_b, float(stats.binomtest(only_a, only_a + only_b, 0.5).pvalue)


def bootstrap_ci(
    data: Sequence[Sequence[float]], statistic: Callable[..., float], *, confidence: float = 0.95,
    resamples: int = 2000, seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic(*data)`` with the rows of ``data`` resampled
    together (paired), via ``scipy.stats.bootstrap``; NaN bounds where it cannot be computed."""
    arrays = [np.asarray(d, dtype=float) for d in data]
    if len(arrays[0]) < 3:
        return NAN, NAN
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # degenerate resamples (all-equal scores) give NaN, returned as such
            result = stats.bootstrap(
                arrays, statistic, paired=True, vectorized=False, confidence_level=confidence,
                n_resamples=resamples, method="percentile", rng=np.random.default_rng(seed),
            )
    except (ValueError, FloatingPointError):
        return NAN, NAN
    return float(result.confidence_interval.low), float(result.confidence_interval.high)
