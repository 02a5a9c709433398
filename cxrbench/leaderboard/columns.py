"""The metrics the leaderboard shows, their labels, directions and number formats.

Everything that prints a number goes through :func:`format_number`, so the markdown table, the HTML page
and the plot agree digit for digit and the output is byte-for-byte the same for the same records.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from cxrbench.results import HEADLINE_FIDELITY, HEADLINE_LOCALIZATION


class HasMetrics(Protocol):
    """What the column helpers read of a leaderboard row (``cxrbench.leaderboard.board.Entry``)."""

    @property
    def metrics(self) -> Mapping[str, Any]: ...

#: Shown wherever a value is missing: the model lacks the capability, the value is null, or it is unranked.
MISSING = "-"


@dataclass(frozen=True)
class MetricColumn:
    """One metric shown on the leaderboard: result-record name, human label and how to print it."""

    name: str
    label: str
    #: None for a diagnostic that has no better direction.
    higher_is_better: bool | None
    decimals: int
    #: What the value is, where the label cannot say it (a tooltip on the HTML page).
    description: str = ""

    @property
    def header(self) -> str:
        """The label with an arrow for the better direction (none for a diagnostic)."""
        if self.higher_is_better is None:
            return self.label
        arrow = "\u2191" if self.higher_is_better else "\u2193"
        return f"{self.label} {arrow}"


#: Headline metrics, in the order of the CSV columns (``<name>_mean``, ``<name>_ci_low``, ``<name>_ci_high``).
HEADLINE_METRICS: tuple[MetricColumn, ...] = (
    MetricColumn(HEADLINE_FIDELITY, "FID (domain)", False, 2),
    MetricColumn("kid_domain", "KID (domain)", False, 4),
    MetricColumn("ms_ssim_within_prompt", "MS-SSIM within prompt", False, 3),
    MetricColumn("cond_auroc", "conditional AUROC", True, 3),
    MetricColumn(HEADLINE_LOCALIZATION, "localization AUC-ROC (finding word)", True, 3),
    MetricColumn("loc_word_pointing_game", "pointing game", True, 3),
    MetricColumn("loc_word_cnr", "CNR", True, 3),
    MetricColumn("loc_word_miou_gmm", "mIoU (GMM)", True, 3),
    MetricColumn("loc_eos_auc_roc", "EOS-token AUC-ROC", None, 3),
    MetricColumn("precision_domain", "precision (domain)", True, 3),
    MetricColumn("recall_domain", "recall (domain)", True, 3),
)
HEADLINE_BY_NAME: dict[str, MetricColumn] = {column.name: column for column in HEADLINE_METRICS}

#: The metrics of the rendered tables, in display order: the two axes (with intervals) first.
TABLE_METRICS: tuple[str, ...] = (
    HEADLINE_FIDELITY,
    HEADLINE_LOCALIZATION,
    "loc_word_pointing_game",
    "loc_word_cnr",
    "loc_word_miou_gmm",
    "loc_eos_auc_roc",
    "ms_ssim_within_prompt",
    "cond_auroc",
)
#: Table metrics printed with their interval in the cell; the others carry it in the CSV and an HTML tooltip.
METRICS_WITH_INTERVAL_IN_CELL: frozenset[str] = frozenset({HEADLINE_FIDELITY, HEADLINE_LOCALIZATION})

#: The token-diagnostics table: one row per (entry, token group the entry reports), in this order, with the
#: group's label. Groups as in ``cxrbench.model.TOKEN_GROUPS``; the metric of a cell is ``loc_<group>_<metric>``.
TOKEN_GROUP_LABELS: tuple[tuple[str, str], ...] = (
    ("word", "finding word(s)"),
    ("eos", "EOS token"),
    ("other_words", "other prompt words"),
    ("all_tokens", "all prompt tokens"),
)
#: Columns of the token-diagnostics table; each cell shows the value and its interval.
TOKEN_DIAGNOSTIC_METRICS: tuple[MetricColumn, ...] = (
    MetricColumn("auc_roc", "AUC-ROC", True, 3),
    MetricColumn("pointing_game", "pointing game", True, 3),
)
#: The GMM-based metrics of the finding word (``loc_word_<name>``) beside the seed pipeline's variant of
#: each (``loc_word_<name>_seed``, :mod:`cxrbench.metrics.seed_pipeline`), as (cxrbench, seed pipeline)
#: columns of the table "GMM-based metrics: converged fit vs the seed pipeline".
GMM_SEED_GROUP = "word"
GMM_SEED_COMPARISON: tuple[tuple[MetricColumn, MetricColumn], ...] = (
    (
        MetricColumn("iou_gmm", "IoU (GMM)", True, 3,
                     "foreground IoU of the GMM binarization (converged fit)"),
        MetricColumn("iou_gmm_seed", "IoU (GMM), seed pipeline", True, 3, "the seed code's IoU"),
    ),
    (
        MetricColumn("miou_gmm", "mIoU (GMM)", True, 3,
                     "mean of foreground and background IoU (converged fit)"),
        MetricColumn("miou_gmm_seed", "mIoU (GMM), seed pipeline", True, 3, "the seed code's mIoU"),
    ),
    (
        MetricColumn("bbox_iou", "box IoU", True, 3,
                     "IoU of the largest component's box with the ground truth"),
        MetricColumn("bbox_iou_seed", "box IoU, seed pipeline", True, 3,
                     "the seed code's box IoU (the rectangle spanning all foreground pixels)"),
    ),
    (
        MetricColumn("centre_distance", "centre distance (image diagonals)", False, 3,
                     "distance between the centres, in image diagonals (0 to 1 at any resolution)"),
        MetricColumn("centre_distance_seed", "centre distance, seed pipeline (pixels)", False, 1,
                     "the seed code's distance between the centres, in pixels of the image (the seed code's "
                     "unit): not on the scale of cxrbench's column"),
    ),
)
#: Label of a baseline's rank cell (baselines are reference rows, not ranked).
BASELINE_RANK = "baseline"

JOINT_SCORE_DECIMALS = 3
#: Significant digits of numbers in the CSV: enough for any use, few enough that the last bit of a
#: floating-point sum on another machine does not change the file.
CSV_SIGNIFICANT_DIGITS = 6


#: The range each metric's value lies in, by the part of its name after ``loc_<group>_`` (localization) or
#: before ``_<extractor>`` (fidelity); None = unbounded on that side. An interval is cut at these bounds:
#: the true value lies in the range, so the cut interval covers it whenever the uncut one does.
#: KID (an unbiased estimate that may fall below 0) and CNR (signed) are unbounded. The seed pipeline's
#: variants (``*_seed``) lie in the same ranges, but for its centre distance, in pixels.
METRIC_RANGES: dict[str, tuple[float | None, float | None]] = {
    "auc_roc": (0.0, 1.0),
    "pointing_game": (0.0, 1.0),
    "iou_gmm": (0.0, 1.0),
    "miou_gmm": (0.0, 1.0),
    "miou_biovil": (0.0, 1.0),
    "bbox_iou": (0.0, 1.0),
    "centre_distance": (0.0, 1.0),
    "iou_gmm_seed": (0.0, 1.0),
    "miou_gmm_seed": (0.0, 1.0),
    "bbox_iou_seed": (0.0, 1.0),
    "centre_distance_seed": (0.0, None),
    "cnr_biovil": (0.0, None),
    "fid": (0.0, None),
    "precision": (0.0, 1.0),
    "recall": (0.0, 1.0),
    "ms_ssim_within_prompt": (0.0, 1.0),
    "cond_auroc": (0.0, 1.0),
    "cond_top1": (0.0, 1.0),
}
UNBOUNDED: tuple[None, None] = (None, None)


def metric_range(name: str) -> tuple[float | None, float | None]:
    """(low, high) bounds of a result metric's value (see :data:`METRIC_RANGES`); (None, None) if unknown."""
    if name in METRIC_RANGES:
        return METRIC_RANGES[name]
    if name.startswith("loc_"):
        base = name.removesuffix("_macro")
        for key, bounds in METRIC_RANGES.items():
            if base.endswith("_" + key):
                return bounds
        return UNBOUNDED
    return METRIC_RANGES.get(name.split("_", 1)[0], UNBOUNDED)


def metric_decimals(name: str) -> int:
    """Decimals a metric is printed with: its headline setting, else 2 for FID, 4 for KID, 3 otherwise."""
    if name in HEADLINE_BY_NAME:
        return HEADLINE_BY_NAME[name].decimals
    if name.startswith("fid_"):
        return 2
    if name.startswith("kid_"):
        return 4
    return 3


def format_number(value: float | None, decimals: int) -> str:
    """Fixed-point text of ``value`` (``-`` for None); negative zero prints as zero."""
    if value is None:
        return MISSING
    text = f"{value:.{decimals}f}"
    if text.startswith("-") and float(text) == 0.0:
        text = text[1:]
    return text


def format_interval(low: float | None, high: float | None, decimals: int) -> str:
    """``[low, high]`` in the metric's format, or an empty string when either end is unknown."""
    if low is None or high is None:
        return ""
    return f"[{format_number(low, decimals)}, {format_number(high, decimals)}]"


def format_csv_number(value: float | None) -> str:
    """A CSV cell: ``CSV_SIGNIFICANT_DIGITS`` significant digits, empty for None."""
    if value is None:
        return ""
    text = f"{value:.{CSV_SIGNIFICANT_DIGITS}g}"
    return "0" if float(text) == 0.0 else text


def gmm_seed_metrics() -> list[str]:
    """The result-record names of the GMM comparison's columns, in table order."""
    return [f"loc_{GMM_SEED_GROUP}_{column.name}" for pair in GMM_SEED_COMPARISON for column in pair]


def token_diagnostic_rows(entry: HasMetrics) -> list[tuple[str, str]]:
    """(group, label) of each token group ``entry`` reports a diagnostic metric for, in table order."""
    return [
        (group, label)
        for group, label in TOKEN_GROUP_LABELS
        if any(f"loc_{group}_{column.name}" in entry.metrics for column in TOKEN_DIAGNOSTIC_METRICS)
    ]
