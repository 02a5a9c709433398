"""How far cxrbench's GMM-based metrics and the seed pipeline's (``*_seed``) are apart, query by query.

Reads the per-sample files of results (every line holds both variants) and prints, per token group and
metric, the number of queries both variants define, the mean of each variant, the mean and largest
absolute difference and the share of queries that differ by more than 0.01:

    python scripts/gmm_variants.py leaderboard/results/*__default__seed*.json

``centre_distance_seed`` (pixels) is divided by the image diagonal first, the unit of ``centre_distance``.
A query where either variant is undefined (``nan``: several boxes, an empty binarization) is left out of
that metric.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
from tabulate import tabulate

from cxrbench.protocol import TRACKS

METRICS = ("iou_gmm", "miou_gmm", "bbox_iou", "centre_distance")


def paired_values(paths: list[Path], group: str) -> dict[str, list[tuple[float, float]]]:
    """(cxrbench's, seed's) value of each metric of ``group`` on every query both define."""
    pairs: dict[str, list[tuple[float, float]]] = {metric: [] for metric in METRICS}
    for path in paths:
        record = json.loads(path.read_text(encoding="utf-8"))
        if not record.get("per_sample_file"):
            continue
        size = TRACKS[record["track"]["name"]].image_size
        diagonal = math.hypot(size, size)
        for line in (path.parent / record["per_sample_file"]).read_text(encoding="utf-8").splitlines():
            values = json.loads(line)["metrics"]
            for metric in METRICS:
                ours, seed = values.get(f"loc_{group}_{metric}"), values.get(f"loc_{group}_{metric}_seed")
                if ours is None or seed is None or math.isnan(ours) or math.isnan(seed):
                    continue
                pairs[metric].append((ours, seed / diagonal if metric == "centre_distance" else seed))
    return pairs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path)
    parser.add_argument("--group", default="word", help="token group (default: word)")
    args = parser.parse_args(argv)
    rows = []
    for metric, pairs in paired_values(args.results, args.group).items():
        if not pairs:
            continue
        ours, seed = np.array(pairs).T
        gap = np.abs(ours - seed)
        rows.append([metric, len(pairs), f"{ours.mean():.4f}", f"{seed.mean():.4f}", f"{gap.mean():.4f}",
                     f"{gap.max():.4f}", f"{(gap > 0.01).mean():.1%}"])
    print(tabulate(rows, headers=["metric", "queries", "cxrbench mean", "seed mean", "mean |diff|", "max |diff|",
                                  "share > 0.01"], tablefmt="github"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
