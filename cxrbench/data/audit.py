"""Is a finding visible only as a finding? Single global image statistics vs finding labels.

A renderer that gave, say, every effusion study a brighter film would let a fidelity classifier (and a
generative model) learn the label from one number instead of from the drawing. ``global_statistic_auroc``
measures, for each finding class, how well each single global statistic of an image separates the
studies with that finding from normal studies (AUROC folded to >= 0.5, so 0.5 means no information and
1.0 perfect separation); ``docs/data.md`` records the figures for SynthCXR and the command that reproduces
them (``python -m cxrbench.data.audit``).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

import numpy as np

from cxrbench.data.schema import FINDING_CLASSES, NO_FINDING, Sample
from cxrbench.metrics.localization import auc_roc

#: Global statistics of a grayscale image in [0, 1]: name -> function of the flattened pixels (and image).
GLOBAL_STATISTICS: tuple[str, ...] = (
    "mean", "std", "median", "p05", "p95", "skewness", "kurtosis", "histogram_entropy", "gradient_energy",
    "bright_fraction",
)


def global_statistics(image: np.ndarray) -> dict[str, float]:
    """The ``GLOBAL_STATISTICS`` of one image."""
    x = np.asarray(image, dtype=np.float64)
    flat = x.ravel()
    mean, std = flat.mean(), flat.std()
    z = (flat - mean) / (std + 1e-12)
    hist, _ = np.histogram(flat, bins=32, range=(0.0, 1.0))
    p = hist[hist > 0] / flat.size
    gy, gx = np.gradient(x)
    return {
        "mean": float(mean), "std": float(std), "median": float(np.median(flat)),
        "p05": float(np.percentile(flat, 5)), "p95": float(np.percentile(flat, 95)),
        "skewness": float(np.mean(z**3)), "kurtosis": float(np.mean(z**4)),
        "histogram_entropy": float(-(p * np.log(p)).sum()),
        "gradient_energy": float(np.mean(gx * gx + gy * gy)),
        "bright_fraction": float(np.mean(flat > 0.8)),
    }


def global_statistic_auroc(samples: Sequence[Sample]) -> dict[str, dict[str, float]]:
    """Per finding class: folded AUROC of each global statistic, single-finding studies vs normal ones.

    Returns ``{class: {statistic: auroc, ..., "best": max, "best_statistic": name, "n_pos", "n_neg"}}``.
    Classes without both groups are left out.
    """
    stats = [global_statistics(s.image) for s in samples]
    labels = [s.labels for s in samples]
    normal = [i for i, lab in enumerate(labels) if lab == (NO_FINDING,)]
    out: dict[str, dict[str, float]] = {}
    for cls in FINDING_CLASSES:
        positive = [i for i, lab in enumerate(labels) if lab == (cls,)]
        if not positive or not normal:
            continue
        row: dict[str, float] = {}
        for name in GLOBAL_STATISTICS:
            scores = np.array([stats[i][name] for i in positive + normal])
            truth = np.array([1] * len(positive) + [0] * len(normal), dtype=bool)
            auc = float(auc_roc(scores[None, :], truth[None, :]))
            row[name] = max(auc, 1.0 - auc)
        best = max(GLOBAL_STATISTICS, key=lambda n: row[n])
        out[cls] = {**row, "best": row[best], "best_statistic": best, "n_pos": len(positive), "n_neg": len(normal)}
    return out


#: ChestX-ray14 box labels and the benchmark class each is compared with (Infiltrate: the nearest class).
NIH_BOX_CLASSES = {"Atelectasis": "Atelectasis", "Cardiomegaly": "Cardiomegaly", "Effusion": "Pleural Effusion",
                   "Infiltrate": "Lung Opacity", "Pneumonia": "Pneumonia", "Pneumothorax": "Pneumothorax"}


def box_statistics(boxes: dict[str, list[tuple[float, float, float, float]]]) -> dict[str, dict[str, float]]:
    """Median and 10th/90th percentiles of relative box width, height and centre height per class.

    ``boxes`` maps a class to boxes ``(x, y, w, h)`` as fractions of the image side.
    """
    out = {}
    for cls, rows in sorted(boxes.items()):
        arr = np.asarray(rows, dtype=np.float64)
        w, h, cy = arr[:, 2], arr[:, 3], arr[:, 1] + arr[:, 3] / 2
        out[cls] = {"n": int(len(arr))}
        for name, col in (("w", w), ("h", h), ("cy", cy)):
            out[cls].update({name: float(np.median(col)), f"{name}_p10": float(np.percentile(col, 10)),
                             f"{name}_p90": float(np.percentile(col, 90))})
    return out


def synthcxr_boxes(samples: Sequence[Sample]) -> dict[str, list[tuple[float, float, float, float]]]:
    boxes: dict[str, list[tuple[float, float, float, float]]] = {}
    for s in samples:
        side = float(s.image.shape[0])
        for f in s.findings:
            for b in f.boxes:
                boxes.setdefault(f.label, []).append((b.x / side, b.y / side, b.w / side, b.h / side))
    return boxes


def nih_boxes(path: str) -> dict[str, list[tuple[float, float, float, float]]]:
    """Boxes of ChestX-ray14's ``BBox_List_2017.csv(.gz)`` (1024 px images) by benchmark class."""
    import csv
    import gzip

    opener = gzip.open if path.endswith(".gz") else open
    boxes: dict[str, list[tuple[float, float, float, float]]] = {}
    with opener(path, "rt", newline="") as fh:
        rows = csv.reader(fh)
        next(rows)  # "Image Index,Finding Label,Bbox [x,y,w,h],,,"
        for row in rows:
            cls = NIH_BOX_CLASSES.get(row[1])
            if cls is not None:
                x, y, w, h = (float(v) / 1024.0 for v in row[2:6])
                boxes.setdefault(cls, []).append((x, y, w, h))
    return boxes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1200, help="SynthCXR studies (train split)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from cxrbench.data.synthcxr import SynthCXR

    samples = SynthCXR(args.n, 0, args.image_size, seed=args.seed).split("train")
    table = global_statistic_auroc(samples)
    report: dict[str, object] = {"global_statistic_auroc": {
        cls: {"best": round(r["best"], 3), "best_statistic": r["best_statistic"], "n_pos": r["n_pos"],
              "n_neg": r["n_neg"]} for cls, r in table.items()}}
    rounded = lambda stats: {c: {k: round(v, 3) for k, v in r.items()} for c, r in stats.items()}  # noqa: E731
    report["synthcxr_boxes"] = rounded(box_statistics(synthcxr_boxes(samples)))
    import importlib.util

    spec = importlib.util.find_spec("torchxrayvision")
    if spec is not None and spec.submodule_search_locations:
        table_path = f"{spec.submodule_search_locations[0]}/data/BBox_List_2017.csv.gz"
        report["nih_boxes"] = rounded(box_statistics(nih_boxes(table_path)))
    else:
        report["nih_boxes"] = "not available: pip install torchxrayvision (it ships BBox_List_2017.csv.gz)"
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
