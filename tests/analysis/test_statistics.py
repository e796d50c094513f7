"""resattn.analysis.statistics on small cases checked by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from resattn.analysis import statistics as S

T975_DF2 = 4.302653  # Student's t, 97.5 % quantile, 2 degrees of freedom


def test_mean_ci_is_the_t_interval() -> None:
    s = S.mean_ci([1.0, 2.0, 3.0])  # mean 2, sd 1, se 1/sqrt(3)
    half = T975_DF2 / math.sqrt(3)
    assert (s.mean, s.n) == (2.0, 3)
    assert s.low == pytest.approx(2 - half, abs=1e-6) and s.high == pytest.approx(2 + half, abs=1e-6)
    assert S.mean_ci([0.5, None, 0.5]) == S.Summary(0.5, 0.5, 0.5, 2)  # no spread, None skipped
    one = S.mean_ci([0.4])
    assert one.mean == 0.4 and math.isnan(one.low) and one.n == 1


def test_paired_difference_clear_win() -> None:
    d = S.paired_difference([3.0, 4.0, 5.0], [1.0, 1.0, 1.0])  # differences 2, 3, 4
    t = 3 / (1 / math.sqrt(3))  # 5.196; with 2 df the two-sided p is 1 - t / sqrt(t² + 2)
    assert d.mean == 3.0 and d.n == 3 and d.sd == pytest.approx(1.0)  # the differences' sample sd
    assert d.p == pytest.approx(1 - t / math.sqrt(t * t + 2), abs=1e-6)  # 0.0351
    assert d.low == pytest.approx(3 - T975_DF2 / math.sqrt(3), abs=1e-6) and d.low > 0


def test_paired_difference_tie_and_missing_seeds() -> None:
    tie = S.paired_difference([0.5, 0.6, 0.7], [0.5, 0.6, 0.7])
    assert (tie.mean, tie.low, tie.high, tie.p, tie.sd) == (0.0, 0.0, 0.0, 1.0, 0.0)
    noisy = S.paired_difference([0.50, 0.52, 0.49, None], [0.51, 0.50, 0.50, 0.9])  # the last seed is unpaired
    assert noisy.n == 3 and noisy.p > 0.5 and noisy.low < 0 < noisy.high


def test_holm_step_down() -> None:
    adjusted = S.holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": float("nan")})
    # sorted: a 0.01 x 3 = 0.03; c 0.03 x 2 = 0.06; b 0.04 x 1 = 0.04 -> monotone 0.06
    assert adjusted["a"] == pytest.approx(0.03) and adjusted["c"] == pytest.approx(0.06)
    assert adjusted["b"] == pytest.approx(0.06) and math.isnan(adjusted["d"])
    assert S.holm({"x": 0.7, "y": 0.9}) == {"x": 1.0, "y": 1.0}


def test_probability_best() -> None:
    dominant = S.probability_best({"a": [0.6, 0.7, 0.8], "b": [0.5, 0.6, 0.7]})
    assert dominant == {"a": 1.0, "b": 0.0}
    tie = S.probability_best({"a": [0.5, 0.5], "b": [0.5, 0.5]})
    assert tie == {"a": 0.5, "b": 0.5}
    mixed = S.probability_best({"a": [0.9, 0.1, None], "b": [0.5, 0.5, 0.5]}, resamples=2000)
    assert 0.2 < mixed["a"] < 0.8 and mixed["a"] + mixed["b"] == pytest.approx(1.0)


def test_seeds_needed() -> None:
    # z(0.975) + z(0.8) = 1.95996 + 0.84162 = 2.80158; (2.80158 * 0.01 / 0.005)^2 = 31.4
    assert S.seeds_needed(0.01, 0.005) == 32
    assert S.seeds_needed(0.0, 0.005) is None and S.seeds_needed(0.01, 0.0) is None


def test_mcnemar_exact() -> None:
    a = np.array([True] * 8 + [False] * 2 + [True] * 5)
    b = np.array([False] * 8 + [True] * 2 + [True] * 5)
    only_a, only_b, p = S.mcnemar(a, b)
    assert (only_a, only_b) == (8, 2)
    assert p == pytest.approx(2 * (45 + 10 + 1) / 1024)  # 2 · P(X ≥ 8), X ~ Bin(10, 1/2)
    assert S.mcnemar(a, a) == (0, 0, 1.0)
    with pytest.raises(ValueError, match="different images"):
        S.mcnemar(a, a[:-1])


def test_bits_round_trip_compactly() -> None:
    rng = np.random.default_rng(0)
    bits = rng.random(1017) < 0.4
    text = S.pack_bits(bits)
    assert text.startswith("1017:") and len(text) == 5 + 4 * math.ceil(128 / 3)  # 128 bytes -> 172 characters
    assert np.array_equal(S.unpack_bits(text), bits)
    for bad in ("2000:" + text[5:], "abc", "12"):
        with pytest.raises(ValueError):
            S.unpack_bits(bad)


def test_bootstrap_ci_of_a_correlation() -> None:
    from scipy.stats import kendalltau

    x = np.arange(12.0)
    low, high = S.bootstrap_ci([x, x + 0.1 * np.sin(x)], lambda a, b: kendalltau(a, b).statistic)
    assert 0.7 < low <= high <= 1.0
    assert all(math.isnan(v) for v in S.bootstrap_ci([[1.0, 2.0], [1.0, 2.0]], lambda a, b: 0.0))
