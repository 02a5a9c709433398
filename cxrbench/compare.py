"""Head-to-head comparison of two entries on one track: paired per-metric differences with intervals.

Localization metrics are paired per (seed, test sample, finding) from the per-sample files and
bootstrapped over those pairs; with two or more seeds they also get a t-interval over the per-seed mean
differences, because seed-to-seed variation (a different model each time) is usually larger than the
sampling of test images, and the verdict then needs both intervals to agree. Set-level metrics (FID, KID, MS-SSIM, conditional accuracy) have one value
per seed; their difference is averaged over seeds with a t-interval (seeds >= 2), or reported without an
interval for a single seed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cxrbench.errors import ResultError
from cxrbench.metrics.stats import paired_difference
from cxrbench.results import load_result, result_stem, validate_result

PAIRED_LOCALIZATION = (
    "loc_word_auc_roc", "loc_word_pointing_game", "loc_word_cnr", "loc_word_miou_gmm",
    "loc_eos_auc_roc", "loc_all_tokens_auc_roc",
)
SET_LEVEL = ("fid_domain", "kid_domain", "ms_ssim_within_prompt", "cond_auroc", "cond_top1")


def _load_pair(results_dir: Path, model: str, track: str, seed: int) -> tuple[dict[str, Any], dict[tuple, dict]]:
    path = results_dir / f"{result_stem(model, track, seed)}.json"
    if not path.exists():
        raise ResultError(f"{path}: no result for model {model!r}, track {track!r}, seed {seed}")
    data = load_result(path)
    validate_result(data, path)
    if data["status"] != "ok":
        raise ResultError(f"{path}: the run failed ({data['error']['message']}); nothing to compare")
    samples: dict[tuple, dict] = {}
    if data.get("per_sample_file"):
        with open(results_dir / data["per_sample_file"], encoding="utf-8") as fh:
            for line in fh:
                rec = json.loads(line)
                samples[(seed, rec["sample_id"], rec["label"], rec["phrase"])] = rec["metrics"]
    return data, samples


def _t_interval(diffs: list[float]) -> tuple[float, float | None, float | None]:
    from scipy import stats  # lazy: scipy.stats takes seconds to import, and `import cxrbench.cli` imports this

    arr = np.asarray([d for d in diffs if d is not None and math.isfinite(d)], dtype=float)
    if arr.size == 0:
        return float("nan"), None, None
    mean = float(arr.mean())
    if arr.size < 2:
        return mean, None, None
    half = float(stats.t.ppf(0.975, arr.size - 1) * arr.std(ddof=1) / math.sqrt(arr.size))
    return mean, mean - half, mean + half


def compare_models(results_dir: Path, model_a: str, model_b: str, track: str, seeds: Sequence[int],
                   n_boot: int = 1000) -> list[dict[str, Any]]:
    """One row per metric: mean of A, mean of B, A - B with a 95% interval, direction, and which is better."""
    results_dir = Path(results_dir)
    a_runs = [_load_pair(results_dir, model_a, track, s) for s in seeds]
    b_runs = [_load_pair(results_dir, model_b, track, s) for s in seeds]
    rows: list[dict[str, Any]] = []
    a_samples = {k: v for _, smp in a_runs for k, v in smp.items()}
    b_samples = {k: v for _, smp in b_runs for k, v in smp.items()}
    keys = sorted(set(a_samples) & set(b_samples))
    for metric in PAIRED_LOCALIZATION:
        a = np.array([_f(a_samples[k].get(metric)) for k in keys], dtype=float)
        b = np.array([_f(b_samples[k].get(metric)) for k in keys], dtype=float)
        if not keys or np.isnan(a).all() or np.isnan(b).all():
            continue
        higher = a_runs[0][0]["metrics"].get(metric, {}).get("higher_is_better", True)
        diff = paired_difference(a, b, n_boot=n_boot, seed=0)
        row = _row(metric, float(np.nanmean(a)), float(np.nanmean(b)), diff["value"], diff["ci_low"],
                   diff["ci_high"], int(diff["n"]), "pairs of (seed, sample, finding)", higher)
        if len(seeds) >= 2:
            per_seed = []
            for seed in seeds:
                chosen = np.array([k[0] == seed for k in keys])
                d = a[chosen] - b[chosen]
                per_seed.append(float(np.nanmean(d)) if chosen.any() and not np.isnan(d).all() else float("nan"))
            _, low, high = _t_interval(per_seed)
            row["seed_ci_low"], row["seed_ci_high"] = low, high
            row["detectable"] = _half_width(low, high)
            if _verdict(row["a_minus_b"], low, high, higher) != row["verdict"] and row["verdict"] in ("A better", "B better"):
                row["verdict"] = "no clear difference across seeds"
        rows.append(row)
    for metric in SET_LEVEL:
        a_vals = [_f(r["metrics"].get(metric, {}).get("value")) for r, _ in a_runs]
        b_vals = [_f(r["metrics"].get(metric, {}).get("value")) for r, _ in b_runs]
        diffs = [x - y for x, y in zip(a_vals, b_vals)]
        if all(math.isnan(d) for d in diffs):
            continue
        higher = a_runs[0][0]["metrics"].get(metric, {}).get("higher_is_better", True)
        mean, low, high = _t_interval(diffs)
        row = _row(metric, float(np.nanmean(a_vals)), float(np.nanmean(b_vals)), mean, low, high,
                   len(seeds), "seeds (t-interval)", higher)
        row["detectable"] = _half_width(low, high)
        rows.append(row)
    return rows


def _half_width(low: float | None, high: float | None) -> float | None:
    """The smallest |A - B| the seeds' t-interval could have called at the spread it saw: its half-width.

    A mean difference larger than this, with the same seed-to-seed spread of the differences, gives an
    interval that excludes zero; a smaller one cannot, however many test samples each seed has.
    """
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return None
    return (high - low) / 2.0


def _f(x: Any) -> float:
    return float("nan") if x is None else float(x)


def _verdict(diff: float, low: float | None, high: float | None, higher: bool) -> str:
    """Which entry is better by the interval of A - B, if it excludes zero."""
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return "undetermined (no interval)"
    if low > 0 or high < 0:
        return "A better" if (diff > 0) == higher else "B better"
    return "no clear difference"


def _row(metric: str, a: float, b: float, diff: float, low: float | None, high: float | None, n: int,
         unit: str, higher: bool) -> dict[str, Any]:
    verdict = _verdict(diff, low, high, higher)
    return {"metric": metric, "a": a, "b": b, "a_minus_b": diff, "ci_low": low, "ci_high": high, "n": n,
            "paired_over": unit, "higher_is_better": higher, "verdict": verdict}


def comparison_table(rows: list[dict[str, Any]], model_a: str, model_b: str) -> str:
    from tabulate import tabulate  # lazy: see cxrbench.cli.cmd_list

    def fmt(x: float | None) -> str:
        return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"

    def interval(low: float | None, high: float | None) -> str:
        return "-" if low is None or high is None else f"[{fmt(low)}, {fmt(high)}]"

    def samples_and_seeds(r: dict[str, Any]) -> tuple[str, str]:
        if r["paired_over"].startswith("seeds"):
            return "-", interval(r["ci_low"], r["ci_high"])
        return interval(r["ci_low"], r["ci_high"]), interval(r.get("seed_ci_low"), r.get("seed_ci_high"))

    body = [[r["metric"], fmt(r["a"]), fmt(r["b"]), fmt(r["a_minus_b"]), *samples_and_seeds(r),
             fmt(r.get("detectable")), r["n"], "higher" if r["higher_is_better"] else "lower", r["verdict"]]
            for r in rows]
    headers = ["metric", f"A: {model_a}", f"B: {model_b}", "A - B", "95% interval, samples",
               "95% interval, seeds", "detectable across seeds", "n", "better", "verdict"]
    return tabulate(body, headers=headers, tablefmt="github")
