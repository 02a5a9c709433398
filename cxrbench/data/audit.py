"""Data audits: is a finding visible only as a finding, and how much does its position alone give away?

Global statistics. A renderer that gave, say, every effusion study a brighter film would let a fidelity
classifier (and a generative model) learn the label from one number instead of from the drawing.
``global_statistic_auroc`` measures, for each finding class, how well each single global statistic of an
image separates the studies with that finding from normal studies (AUROC folded to >= 0.5, so 0.5 means
no information and 1.0 perfect separation); ``docs/data.md`` records the figures for SynthCXR and the
command that reproduces them (``python -m cxrbench.data.audit``).

Box prior. ``box_prior_audit`` measures how predictable a class's boxes are from where that class's
other boxes lie: each finding's mask is scored (pixel AUC-ROC and pointing game, the benchmark's own
metrics) against the mean mask of the other findings of its class (leave-one-out), on a 64 x 64 grid
with box edges rounded outwards. The same is computed for ChestX-ray14's radiologist boxes
(``BBox_List_2017.csv``, shipped by the torchxrayvision package), so a synthetic dataset can be held to
the spread of real finding positions; the track's ``box-prior`` baseline (means of the training split,
scored on the test split's queries) is measured beside it. ``cxrbench data audit`` prints the table.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

import numpy as np

from cxrbench.data.schema import FINDING_CLASSES, NO_FINDING, Sample
from cxrbench.metrics.localization import auc_roc, pointing_game

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


# --------------------------------------------------------------------------------------------------
# Box prior: leave-one-out class mean masks, SynthCXR beside ChestX-ray14
# --------------------------------------------------------------------------------------------------

#: Side of the grid every box table is rasterized on (the default track's image size).
PRIOR_GRID = 64
#: Side of ChestX-ray14's images, in whose pixels ``BBox_List_2017.csv`` gives its boxes.
NIH_IMAGE_SIDE = 1024
#: The track class each ChestX-ray14 box label is shown beside. Infiltrate is Lung Opacity's match;
#: Mass and Nodule (focal opacities, no class of their own) are shown beside it but not matched.
NIH_PRIOR_CLASSES: dict[str, str] = {
    "Atelectasis": "Atelectasis", "Cardiomegaly": "Cardiomegaly", "Effusion": "Pleural Effusion",
    "Infiltrate": "Lung Opacity", "Mass": "Lung Opacity", "Nodule": "Lung Opacity", "Pneumonia": "Pneumonia",
    "Pneumothorax": "Pneumothorax",
}
NIH_MATCHED: tuple[str, ...] = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltrate", "Pneumonia",
                                 "Pneumothorax")

BoxTuple = tuple[float, float, float, float]


def cover_mask(boxes: Sequence[BoxTuple], scale: float, grid: int = PRIOR_GRID) -> np.ndarray:
    """Boolean (grid, grid) mask of the cells the boxes ``(x, y, w, h)`` cover once multiplied by ``scale``;
    edges are rounded outwards (a box touching a cell covers it) and clipped to the grid."""
    mask = np.zeros((grid, grid), dtype=bool)
    for x, y, w, h in boxes:
        x0, y0 = int(np.floor(x * scale)), int(np.floor(y * scale))
        x1, y1 = int(np.ceil((x + w) * scale)), int(np.ceil((y + h) * scale))
        mask[max(y0, 0):min(y1, grid), max(x0, 0):min(x1, grid)] = True
    return mask


def leave_one_out_scores(masks: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per mask: pixel AUC-ROC and pointing game of the mean of the other masks (its class's prior
    without it). Both are invariant to the map's scale, so the sum of the others stands for the mean."""
    stack = np.stack([np.asarray(m, dtype=bool) for m in masks])
    total = stack.sum(axis=0, dtype=np.float64)
    aucs = np.array([auc_roc(total - m, m) for m in stack])
    points = np.array([pointing_game(total - m, m) for m in stack])
    return aucs, points


def prior_table(masks: dict[str, list[np.ndarray]]) -> dict[str, dict[str, object]]:
    """``{class: {"n", "auc", "pointing", "aucs", "points"}}`` of ``leave_one_out_scores`` per class
    (classes with a single mask have no prior and are left out)."""
    table: dict[str, dict[str, object]] = {}
    for label, rows in sorted(masks.items()):
        if len(rows) < 2:
            continue
        aucs, points = leave_one_out_scores(rows)
        table[label] = {"n": len(rows), "auc": float(aucs.mean()), "pointing": float(points.mean()),
                        "aucs": aucs, "points": points}
    return table


def pooled(table: dict[str, dict[str, object]], labels: Sequence[str] | None = None) -> dict[str, float]:
    """n, AUC and pointing over every scored finding of ``labels`` (all classes of the table by default)."""
    chosen = [table[label] for label in (labels if labels is not None else table) if label in table]
    if not chosen:
        return {"n": 0, "auc": float("nan"), "pointing": float("nan")}
    aucs = np.concatenate([row["aucs"] for row in chosen])  # type: ignore[misc]
    points = np.concatenate([row["points"] for row in chosen])  # type: ignore[misc]
    return {"n": int(aucs.size), "auc": float(aucs.mean()), "pointing": float(points.mean())}


def dataset_prior_masks(samples: Sequence[Sample], grid: int = PRIOR_GRID) -> dict[str, list[np.ndarray]]:
    """Each finding's mask (the union of its boxes, as the metrics score it) per class, on the grid."""
    masks: dict[str, list[np.ndarray]] = {}
    for sample in samples:
        scale = grid / float(sample.image.shape[0])
        for f in sample.findings:
            if f.label != NO_FINDING and f.boxes:
                boxes = [(b.x, b.y, b.w, b.h) for b in f.boxes]
                masks.setdefault(f.label, []).append(cover_mask(boxes, scale, grid))
    return masks


def nih_prior_masks(path: str, grid: int = PRIOR_GRID) -> dict[str, list[np.ndarray]]:
    """Each box of ChestX-ray14's ``BBox_List_2017.csv(.gz)`` as a mask on the grid, per its own label."""
    return {label: [cover_mask([box], grid, grid) for box in rows] for label, rows in _nih_rows(path).items()}


def _nih_rows(path: str) -> dict[str, list[BoxTuple]]:
    """Boxes of ChestX-ray14's table as fractions of the image side, by its own label."""
    import csv
    import gzip

    opener = gzip.open if path.endswith(".gz") else open
    boxes: dict[str, list[BoxTuple]] = {}
    with opener(path, "rt", newline="") as fh:
        rows = csv.reader(fh)
        next(rows)  # "Image Index,Finding Label,Bbox [x,y,w,h],,,"
        for row in rows:
            x, y, w, h = (float(v) / NIH_IMAGE_SIDE for v in row[2:6])
            boxes.setdefault(row[1], []).append((x, y, w, h))
    return boxes


def nih_table_path() -> str | None:
    """Path of ``BBox_List_2017.csv.gz`` in the installed torchxrayvision package (not imported), or None."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("torchxrayvision")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "data" / "BBox_List_2017.csv.gz"
    return str(path) if path.exists() else None


def baseline_on_test(train: Sequence[Sample], test: Sequence[Sample]) -> dict[str, dict[str, object]]:
    """The track's box-prior baseline: class mean masks of ``train``, scored on every (test study,
    finding) query with the benchmark's AUC-ROC and pointing game. Same layout as ``prior_table``."""
    from cxrbench.box_prior import class_box_priors, resize_map
    from cxrbench.data.schema import box_mask

    size = int(train[0].image.shape[0]) if train else PRIOR_GRID
    priors = class_box_priors(train, size)
    scores: dict[str, tuple[list[float], list[float]]] = {}
    for sample in test:
        shape = sample.image.shape[:2]
        for f in sample.findings:
            if f.label == NO_FINDING or not f.boxes:
                continue
            prior = priors.get(f.label)
            heatmap = resize_map(prior, shape) if prior is not None else np.zeros(shape, dtype=np.float32)
            mask = box_mask(f.boxes, *shape)
            aucs, points = scores.setdefault(f.label, ([], []))
            aucs.append(auc_roc(heatmap, mask))
            points.append(pointing_game(heatmap, mask))
    return {label: {"n": len(a), "auc": float(np.mean(a)), "pointing": float(np.mean(p)),
                    "aucs": np.array(a), "points": np.array(p)} for label, (a, p) in sorted(scores.items())}



def box_prior_audit(samples_train: Sequence[Sample], samples_test: Sequence[Sample],
                    nih_path: str | None) -> dict[str, object]:
    """Leave-one-out class priors of the training split and of ChestX-ray14 (when ``nih_path`` is given),
    and the track's baseline on the test split: ``{"synthcxr", "nih", "baseline"}`` tables."""
    return {"synthcxr": prior_table(dataset_prior_masks(samples_train)),
            "nih": prior_table(nih_prior_masks(nih_path)) if nih_path else None,
            "baseline": baseline_on_test(samples_train, samples_test) if samples_test else {}}


def _cells(row: dict[str, object] | None) -> list[object]:
    if not row or not row.get("n"):
        return ["-", "-", "-"]
    return [row["n"], f"{row['auc']:.3f}", f"{row['pointing']:.3f}"]


def format_box_prior_audit(audit: dict[str, object], name: str = "SynthCXR") -> str:
    """The audit as a GitHub-flavoured table: per class, then matched classes and all classes pooled;
    ``name`` heads the dataset's columns."""
    from tabulate import tabulate

    ours, nih, base = audit["synthcxr"], audit["nih"] or {}, audit["baseline"]
    rows = []
    for cls in FINDING_CLASSES:
        labels = [label for label, c in NIH_PRIOR_CLASSES.items() if c == cls] or [None]
        for k, label in enumerate(labels):
            shown = label if label in NIH_MATCHED or label is None else f"{label} (shown, not matched)"
            first = k == 0
            rows.append([cls if first else "", *(_cells(ours.get(cls)) if first else ["", "", ""]),
                         shown or "-", *_cells(nih.get(label) if label else None),
                         *(_cells(base.get(cls)) if first else ["", "", ""])])
    matched = [NIH_PRIOR_CLASSES[label] for label in NIH_MATCHED]
    rows.append(["matched classes", *_cells(pooled(ours, matched)), "matched labels",
                 *_cells(pooled(nih, NIH_MATCHED) if nih else None), *_cells(pooled(base, matched))])
    rows.append(["all", *_cells(pooled(ours)), "all", *_cells(pooled(nih) if nih else None),
                 *_cells(pooled(base))])
    headers = ["class", f"{name} n", "AUC", "pointing", "ChestX-ray14 label", "n", "AUC", "pointing",
               "baseline: test queries", "AUC", "pointing"]
    table = tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
    lines = [table]
    if nih:
        a, b = pooled(ours), pooled(nih)
        lines.append(f"\nall classes, {name} minus ChestX-ray14: AUC {a['auc'] - b['auc']:+.3f}, "
                     f"pointing {a['pointing'] - b['pointing']:+.3f}")
    return "\n".join(lines)


def add_box_prior_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``cxrbench data audit``."""
    parser.add_argument("--dataset", default="synthcxr", help="registered dataset (default: synthcxr)")
    parser.add_argument("--n-train", type=int, default=1200, help="training studies (leave-one-out priors)")
    parser.add_argument("--n-test", type=int, default=200, help="test studies (the baseline's queries)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--nih-table", default=None, metavar="PATH",
                        help="ChestX-ray14's BBox_List_2017.csv(.gz) (default: torchxrayvision's copy)")


def cmd_box_prior_audit(args: argparse.Namespace) -> int:
    """``cxrbench data audit``: print the box-prior table of a dataset beside ChestX-ray14's."""
    from cxrbench.registry import get_registry

    params = {"n_train": args.n_train, "n_test": args.n_test, "image_size": args.image_size,
              "seed": args.seed}
    dataset = get_registry().dataset(args.dataset).factory(**params)
    nih_path = args.nih_table or nih_table_path()
    audit = box_prior_audit(dataset.split("train"), dataset.split("test"), nih_path)
    print(f"Box prior: each finding's mask against the mean mask of the other findings of its class "
          f"(leave-one-out), {PRIOR_GRID} x {PRIOR_GRID} grid.\n"
          f"Left: {args.dataset} train split ({', '.join(f'{k}={v}' for k, v in params.items())}). "
          f"Middle: ChestX-ray14 BBox_List_2017.csv. Right: the track's box-prior baseline (means of the "
          f"train split) on the test split's queries.\n")
    if nih_path is None:
        print("ChestX-ray14 column not available: its box table comes with torchxrayvision "
              "(pip install torchxrayvision), or pass --nih-table PATH.\n")
    print(format_box_prior_audit(audit, args.dataset))
    return 0


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
