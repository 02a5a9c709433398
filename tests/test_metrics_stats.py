"""Tests of cxrbench.metrics.stats: bootstrap intervals, class aggregation, paired differences."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cxrbench.metrics.stats import aggregate_by_class, bootstrap_ci, bootstrap_summary, paired_difference


def test_bootstrap_ci_contains_the_mean_and_narrows_with_n():
    rng = np.random.default_rng(0)
    widths = []
    for n in (20, 200, 2000):
        values = rng.normal(3.0, 1.0, size=n)
        value, low, high = bootstrap_ci(values, n_boot=500, seed=1)
        assert value == pytest.approx(values.mean(), abs=1e-12)
        assert low < value < high
        widths.append(high - low)
    assert widths[0] > widths[1] > widths[2]


def test_bootstrap_ci_matches_normal_theory_for_the_mean():
    values = np.random.default_rng(1).normal(0.0, 2.0, size=400)
    value, low, high = bootstrap_ci(values, n_boot=4000, seed=0)
    half_width = 1.959964 * values.std(ddof=1) / math.sqrt(values.size)  # independent formula
    assert (high - low) / 2 == pytest.approx(half_width, rel=0.1)
    assert (low + high) / 2 == pytest.approx(value, abs=0.1 * half_width)


def test_bootstrap_ci_is_deterministic_and_seeded():
    values = np.random.default_rng(2).random(50)
    assert bootstrap_ci(values, seed=3) == bootstrap_ci(values, seed=3)
    assert bootstrap_ci(values, seed=3) != bootstrap_ci(values, seed=4)


def test_bootstrap_ci_edge_cases_and_nan():
    assert all(math.isnan(x) for x in bootstrap_ci([]))
    assert all(math.isnan(x) for x in bootstrap_ci([np.nan, np.nan]))
    assert bootstrap_ci([0.7]) == (0.7, 0.7, 0.7)
    assert bootstrap_ci([0.7, np.nan]) == (0.7, 0.7, 0.7)
    value, low, high = bootstrap_ci([1.0, np.nan, 3.0], n_boot=200)
    assert value == 2.0 and 1.0 <= low <= high <= 3.0
    summary = bootstrap_summary([1.0, np.nan, 3.0], n_boot=200)
    assert summary["n"] == 2 and summary["value"] == 2.0


def test_bootstrap_ci_other_statistics():
    values = np.arange(1.0, 102.0)
    value, low, high = bootstrap_ci(values, statistic=np.median, n_boot=300)
    assert value == 51.0 and low < 51.0 < high
    value, _, _ = bootstrap_ci(values, statistic=lambda x: float(np.max(x)), n_boot=50)  # takes no axis
    assert value == 101.0


def test_bootstrap_ci_draws_the_documented_resamples():
    # docs/metrics.md: resample i takes the values at default_rng(seed).integers(0, n, size=(n_boot, n))[i];
    # the interval is numpy's linear percentile of the resampled statistics.
    values = np.random.default_rng(6).random(23)
    indices = np.random.default_rng(7).integers(0, values.size, size=(400, values.size))
    distribution = np.array([np.median(values[row]) for row in indices])
    low, high = np.percentile(distribution, [2.5, 97.5])
    assert bootstrap_ci(values, n_boot=400, seed=7, statistic=np.median) == (np.median(values), low, high)


def test_bootstrap_ci_agrees_with_scipy_stats_bootstrap():
    pytest.importorskip("scipy", minversion="1.15")  # its `rng` argument
    from scipy import stats as scipy_stats

    values = np.random.default_rng(8).normal(size=40)
    reference = scipy_stats.bootstrap((values,), np.mean, n_resamples=1000, method="percentile",
                                      rng=np.random.default_rng(3))
    _, low, high = bootstrap_ci(values, n_boot=1000, seed=3, statistic=np.mean)
    # Same resamples; scipy takes its percentiles at (1 - 0.95) / 2 = 0.025000000000000022 with its own
    # quantile code, so its end points agree to rounding, not bit for bit (docs/metrics.md).
    assert low == pytest.approx(reference.confidence_interval.low, rel=1e-12)
    assert high == pytest.approx(reference.confidence_interval.high, rel=1e-12)


def test_bootstrap_ci_rejects_a_statistic_that_does_not_reduce_each_resample():
    with pytest.raises(ValueError, match="one number"):
        bootstrap_ci([1.0, 2.0, 3.0], n_boot=10, statistic=lambda x, axis=None: 1.0)


def test_bootstrap_ci_rejects_bad_settings():
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_ci([1.0, 2.0], n_boot=0)
    with pytest.raises(ValueError, match="alpha"):
        bootstrap_ci([1.0, 2.0], alpha=1.5)


def _records() -> list[dict]:
    return [
        {"label": "Pneumothorax", "auc": 1.0, "hit": 1.0},
        {"label": "Pneumothorax", "auc": 2.0, "hit": np.nan},
        {"label": "Pneumothorax", "auc": 3.0, "hit": 0.0},
        {"label": "Atelectasis", "auc": 10.0, "hit": 1.0},
        {"label": "Atelectasis", "auc": np.nan, "hit": 1.0},
        {"label": "Edema", "auc": np.nan, "hit": 0.0},
    ]


def test_aggregate_by_class_values_by_hand():
    result = aggregate_by_class(_records(), ["auc", "hit"], n_boot=500, seed=0)
    auc = result["auc"]
    assert auc["overall"]["value"] == pytest.approx(16.0 / 4) and auc["overall"]["n"] == 4
    # class means: Pneumothorax 2, Atelectasis 10; Edema has no score and stays out of the macro mean.
    assert auc["macro"]["value"] == pytest.approx(6.0) and auc["macro"]["n"] == 4
    assert list(auc["per_class"]) == ["Atelectasis", "Edema", "Pneumothorax"]  # ALL_LABELS order
    assert auc["per_class"]["Pneumothorax"]["value"] == 2.0 and auc["per_class"]["Pneumothorax"]["n"] == 3
    atelectasis = auc["per_class"]["Atelectasis"]
    stat = (atelectasis["value"], atelectasis["ci_low"], atelectasis["ci_high"], atelectasis["n"])
    assert stat == (10, 10, 10, 1)
    assert math.isnan(auc["per_class"]["Edema"]["value"]) and auc["per_class"]["Edema"]["n"] == 0
    hit = result["hit"]
    assert hit["overall"]["value"] == pytest.approx(3 / 5)
    assert hit["macro"]["value"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)


def test_macro_bootstrap_is_stratified():
    result = aggregate_by_class(_records(), ["auc"], n_boot=2000, seed=1)["auc"]["macro"]
    # Every resample keeps Atelectasis (mean 10) and Pneumothorax (a resampled mean in [1, 3]):
    # the macro mean cannot leave [(1 + 10) / 2, (3 + 10) / 2]; an unstratified resample could.
    assert 5.5 <= result["ci_low"] < 6.0 < result["ci_high"] <= 6.5


def test_macro_bootstrap_draws_each_class_in_turn_from_one_generator():
    edema = [{"label": "Edema", "auc": 4.0, "hit": 1.0}, {"label": "Edema", "auc": 7.0, "hit": 0.0}]
    macro = aggregate_by_class(_records() + edema, ["auc"], n_boot=300, seed=2)["auc"]["macro"]
    # docs/metrics.md: classes in ALL_LABELS order, each resampled within itself from one default_rng(seed); a
    # class with one value draws nothing and stays at that value.
    rng = np.random.default_rng(2)
    class_means = []
    # Atelectasis (its nan left out), Edema, Pneumothorax:
    for values in (np.array([10.0]), np.array([4.0, 7.0]), np.array([1.0, 2.0, 3.0])):
        if values.size == 1:
            class_means.append(np.full(300, values[0]))
        else:
            class_means.append(values[rng.integers(0, values.size, size=(300, values.size))].mean(axis=1))
    low, high = np.percentile(np.mean(np.stack(class_means), axis=0), [2.5, 97.5])
    assert (macro["ci_low"], macro["ci_high"]) == (low, high)


def test_aggregate_by_class_requires_keys():
    with pytest.raises(ValueError, match=r"records\[1\].*auc"):
        aggregate_by_class([{"label": "Edema", "auc": 1.0}, {"label": "Edema"}], ["auc"])


def test_paired_difference_exact_shift_and_nan_pairs():
    b = np.array([0.1, 0.5, np.nan, 0.9, 0.3])
    a = b + 1.0
    a[0] = np.nan
    result = paired_difference(a, b, n_boot=300)
    assert result["n"] == 3
    assert result["value"] == pytest.approx(1.0) and result["ci_low"] == pytest.approx(1.0)
    assert result["ci_high"] == pytest.approx(1.0)


def test_paired_difference_uses_the_pairing():
    rng = np.random.default_rng(5)
    item_effect = rng.normal(0.0, 1.0, size=60)  # large shared per-item variation
    a = item_effect + 0.1 + rng.normal(0.0, 0.05, size=60)
    b = item_effect
    paired = paired_difference(a, b, n_boot=2000, seed=0)
    assert paired["ci_low"] > 0.0  # the small shift is detected because pairs are resampled together
    unpaired_a = bootstrap_ci(a, n_boot=2000, seed=0)
    unpaired_b = bootstrap_ci(b, n_boot=2000, seed=1)
    assert unpaired_a[1] < unpaired_b[2]  # separate intervals overlap: they would miss it
    with pytest.raises(ValueError, match="same number"):
        paired_difference([1.0, 2.0], [1.0])
