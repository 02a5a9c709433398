"""Bootstrap statistics: confidence intervals, per-class and macro aggregation, paired differences.

docs/metrics.md: aggregate per class, then macro over classes, and overall; bootstrap 95%
intervals. All intervals are percentile bootstrap intervals (Efron & Tibshirani, "An Introduction to
the Bootstrap", 1993, ch. 13): resample the values with replacement ``n_boot`` times, compute the
statistic on each resample, and take the ``alpha/2`` and ``1 - alpha/2`` percentiles (numpy's
default linear interpolation). ``nan`` values are dropped before resampling; ``n`` always counts the
values that remain. Resampling draws from ``numpy.random.default_rng(seed)``, so results are
deterministic for a given seed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from cxrbench.data.schema import ALL_LABELS

__all__ = ["aggregate_by_class", "bootstrap_ci", "bootstrap_summary", "paired_difference"]

Statistic = Callable[..., Any]

#: Resamples of every bootstrap interval of a result.
N_BOOTSTRAP = 1000
#: Upper bound on the number of entries of one block of resampled values (memory, not results).
_BLOCK_ENTRIES = 4_000_000


def _check_settings(n_boot: int, alpha: float) -> None:
    if not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"`n_boot` must be a positive integer, but got {n_boot!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"`alpha` must lie in (0, 1), but got {alpha!r}")


def _finite_values(values: Iterable[float] | np.ndarray, name: str = "values") -> np.ndarray:
    array = np.asarray(values if isinstance(values, np.ndarray) else list(values), dtype=np.float64)
    if array.ndim > 1:
        raise ValueError(f"`{name}` must be one-dimensional, but got shape {array.shape}")
    array = array.ravel()
    return array[~np.isnan(array)]


def _apply(statistic: Statistic, resamples: np.ndarray) -> np.ndarray:
    """The statistic of each row of ``resamples``; uses ``axis=1`` when the statistic accepts it."""
    try:
        result = np.asarray(statistic(resamples, axis=1), dtype=np.float64)
    except TypeError:
        result = np.array([statistic(row) for row in resamples], dtype=np.float64)
    if result.shape != (resamples.shape[0],):
        raise ValueError(
            f"`statistic` must reduce each resample to one number, but returned shape {result.shape}"
        )
    return result


def _bootstrap_distribution(
    values: np.ndarray, n_boot: int, rng: np.random.Generator | int, statistic: Statistic
) -> np.ndarray:
    """``n_boot`` statistics of resamples (with replacement, same size) of ``values``.

    ``rng`` is a generator, or an int seed for a fresh ``default_rng(seed)``; with a seed and one block of
    resamples the indices are those :func:`_fresh_indices` keeps, drawn once for every metric of that size.
    """
    n = values.size
    block = max(1, _BLOCK_ENTRIES // n)
    if not isinstance(rng, np.random.Generator):
        if n_boot <= block:
            return _apply(statistic, values[_fresh_indices(int(rng), n, n_boot)])
        rng = np.random.default_rng(rng)
    out = np.empty(n_boot, dtype=np.float64)
    for start in range(0, n_boot, block):
        stop = min(n_boot, start + block)
        indices = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = _apply(statistic, values[indices])
    return out


@functools.lru_cache(maxsize=16)
def _fresh_indices(seed: int, n: int, n_boot: int) -> np.ndarray:
    """The first ``(n_boot, n)`` resample indices of ``default_rng(seed)``, read-only and kept: a result
    bootstraps dozens of metrics over the same number of queries with the same seed, so they share them."""
    indices = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    indices.flags.writeable = False
    return indices


def _interval(distribution: np.ndarray, alpha: float) -> tuple[float, float]:
    low, high = np.percentile(distribution, [100.0 * alpha / 2.0, 100.0 * (1.0 - alpha / 2.0)])
    return float(low), float(high)


def bootstrap_ci(
    values: Iterable[float] | np.ndarray,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    statistic: Statistic = np.nanmean,
) -> tuple[float, float, float]:
    """Statistic of ``values`` and its percentile-bootstrap ``1 - alpha`` interval.

    Returns ``(value, ci_low, ci_high)``. ``nan`` entries are dropped first; with no value left all
    three are ``nan``; with one value the interval collapses to it. ``statistic`` is called as
    ``statistic(array)`` for the value and ``statistic(resamples, axis=1)`` on a (blocks, n) array of
    resamples (falling back to one call per resample when it takes no ``axis``).
    """
    _check_settings(n_boot, alpha)
    finite = _finite_values(values)
    if finite.size == 0:
        return float("nan"), float("nan"), float("nan")
    value = float(statistic(finite))
    if finite.size == 1:
        return value, value, value
    distribution = _bootstrap_distribution(finite, n_boot, seed, statistic)
    low, high = _interval(distribution, alpha)
    return value, low, high


def bootstrap_summary(
    values: Iterable[float] | np.ndarray,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    statistic: Statistic = np.nanmean,
) -> dict[str, float | int]:
    """:func:`bootstrap_ci` as a JSON-ready dict ``{"value", "ci_low", "ci_high", "n"}``."""
    finite = _finite_values(values)
    value, low, high = bootstrap_ci(finite, n_boot=n_boot, alpha=alpha, seed=seed, statistic=statistic)
    return {"value": value, "ci_low": low, "ci_high": high, "n": int(finite.size)}


def _label_order(labels: Iterable[str]) -> list[str]:
    present = set(labels)
    known = [label for label in ALL_LABELS if label in present]
    return known + sorted(present.difference(ALL_LABELS))


def _macro_summary(
    per_class_values: Mapping[str, np.ndarray], n_boot: int, alpha: float, seed: int
) -> dict[str, float | int]:
    """Mean of the class means; the bootstrap resamples within each class (stratified)."""
    groups = [values for values in per_class_values.values() if values.size > 0]
    n = int(sum(values.size for values in groups))
    if not groups:
        return {"value": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n": 0}
    value = float(np.mean([values.mean() for values in groups]))
    rng = np.random.default_rng(seed)
    class_distributions = [_bootstrap_distribution(values, n_boot, rng, np.mean) for values in groups]
    distribution = np.mean(np.stack(class_distributions), axis=0)
    if all(values.size == 1 for values in groups):
        return {"value": value, "ci_low": value, "ci_high": value, "n": n}
    low, high = _interval(distribution, alpha)
    return {"value": value, "ci_low": low, "ci_high": high, "n": n}


def aggregate_by_class(
    records: Sequence[Mapping[str, Any]],
    metric_names: Sequence[str],
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, dict[str, Any]]:
    """Per-class, macro and overall means of per-sample scores, each with a bootstrap interval.

    docs/metrics.md: aggregate per class, then macro over classes, and overall. Each record is
    one scored (image, phrase) pair: ``{"label": <class>, <metric>: <float>, ...}``; a ``nan`` score
    is left out of every statistic of that metric. For each name in ``metric_names`` the result holds::

        {"overall": stat,                  # mean over all records, bootstrap over records
         "macro": stat,                    # mean of the class means, stratified bootstrap
         "per_class": {label: stat, ...}}  # mean within one class, bootstrap within it

    where ``stat = {"value", "ci_low", "ci_high", "n"}`` and ``n`` counts the non-nan scores behind
    it. The macro interval resamples each class within itself (its size kept) and averages the
    resampled class means, so every class counts once in every resample. Classes with no score are
    kept in ``per_class`` (all ``nan``, ``n`` 0) and left out of the macro mean. Classes are ordered
    as ``ALL_LABELS``, then any other labels alphabetically.
    """
    _check_settings(n_boot, alpha)
    if len(metric_names) == 0:
        raise ValueError("`metric_names` must name at least one metric, but got an empty sequence")
    for index, record in enumerate(records):
        missing = [key for key in ("label", *metric_names) if key not in record]
        if missing:
            raise ValueError(
                f"records[{index}] must have keys 'label' and {list(metric_names)}, but lacks {missing}"
            )
    labels = _label_order(str(record["label"]) for record in records)
    result: dict[str, dict[str, Any]] = {}
    for metric in metric_names:
        all_values = np.array([float(record[metric]) for record in records], dtype=np.float64)
        per_class_values = {
            label: _finite_values(
                [float(record[metric]) for record in records if str(record["label"]) == label]
            )
            for label in labels
        }
        result[metric] = {
            "overall": bootstrap_summary(
                all_values, n_boot=n_boot, alpha=alpha, seed=seed, statistic=np.mean
            ),
            "macro": _macro_summary(per_class_values, n_boot, alpha, seed),
            "per_class": {
                label: bootstrap_summary(values, n_boot=n_boot, alpha=alpha, seed=seed, statistic=np.mean)
                for label, values in per_class_values.items()
            },
        }
    return result


def paired_difference(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, float | int]:
    """Mean paired difference ``mean(a - b)`` with a bootstrap interval over pairs.

    ``a[i]`` and ``b[i]`` score the same item (image, phrase or prompt) under two entries; pairs where
    either is ``nan`` are dropped, and whole pairs are resampled, so the interval reflects the
    per-item correlation. An interval that excludes 0 means the entries differ at level ``alpha``.
    Returns ``{"value", "ci_low", "ci_high", "n"}`` with ``n`` the number of complete pairs.
    """
    first = np.asarray(a, dtype=np.float64).ravel()
    second = np.asarray(b, dtype=np.float64).ravel()
    if first.shape != second.shape:
        raise ValueError(
            f"`a` and `b` must hold the same number of paired values, but got {first.size} and {second.size}"
        )
    complete = ~(np.isnan(first) | np.isnan(second))
    return bootstrap_summary(first[complete] - second[complete], n_boot=n_boot, alpha=alpha, seed=seed,
                             statistic=np.mean)
