"""Localization metrics: how well a heatmap points at the boxes of a report phrase.

Definitions follow docs/metrics.md (localization, per (image, phrase)). Every function
scores one (image, phrase) pair:

- ``heatmap`` is a finite float (H, W) array at the resolution of the image; the caller resizes it.
  Metrics whose value depends on the scale of the map min-max normalize it first
  (:func:`normalize_heatmap`); the others are invariant to it.
- The ground truth is the union of the phrase's boxes as a boolean (H, W) mask
  (:func:`box_pixels`: a pixel is inside when its centre lies in a box; a box that covers no pixel
  centre is given the pixel that contains its centre).

All functions are pure numpy/scipy and return plain Python floats (``nan`` where a score is undefined;
each docstring says when).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from cxrbench.data.schema import Box, box_mask
from cxrbench.metrics.gmm import GaussianMixture1D, fit_gaussian_mixture_1d

__all__ = [
    "LOCALIZATION_METRICS",
    "GaussianMixture1D",
    "auc_roc",
    "bbox_iou",
    "binary_auroc",
    "box_pixels",
    "boxes_without_pixel",
    "centre_distance",
    "cnr",
    "cnr_biovil",
    "fit_gaussian_mixture_1d",
    "gmm_binarize",
    "gmm_threshold",
    "iou_gmm",
    "largest_component",
    "localization_scores",
    "miou_biovil",
    "normalize_heatmap",
    "pointing_game",
]

#: Window of the mean filter that removes isolated pixels after GMM thresholding, and its border mode.
SMOOTHING_SIZE = 3
SMOOTHING_MODE = "nearest"
#: Thresholds of BioViL's mIoU (applied to the min-max normalized map).
BIOVIL_THRESHOLDS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5)


# --------------------------------------------------------------------------------------------- inputs
def _as_heatmap(heatmap: Any, name: str = "heatmap") -> np.ndarray:
    array = np.asarray(heatmap, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"`{name}` must be a 2-D (H, W) array, but got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"`{name}` must not be empty, but got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        bad = int((~np.isfinite(array)).sum())
        raise ValueError(f"`{name}` must be finite everywhere, but it holds {bad} nan/inf values")
    return array


def _as_mask(mask: Any, shape: tuple[int, ...], name: str = "mask") -> np.ndarray:
    array = np.asarray(mask)
    if array.dtype != np.bool_:
        raise ValueError(f"`{name}` must be a boolean array, but got dtype {array.dtype}")
    if array.shape != shape:
        raise ValueError(
            f"`{name}` must have the heatmap's shape {shape}, but got {array.shape}; "
            "resize the heatmap to the image before scoring"
        )
    return array


def _centre_pixel(box: Box, height: int, width: int) -> tuple[int, int] | None:
    centre_x, centre_y = box.center
    row, col = math.floor(centre_y), math.floor(centre_x)
    if 0 <= row < height and 0 <= col < width:
        return row, col
    return None


def boxes_without_pixel(boxes: Sequence[Box], height: int, width: int) -> int:
    """How many of ``boxes`` cover no pixel centre of an (H, W) grid (an empty :func:`box_mask`)."""
    return sum(1 for b in boxes if not box_mask([b], height, width).any())


def box_pixels(boxes: Sequence[Box], height: int, width: int) -> np.ndarray:
    """The pixels of ``boxes`` as localization scores them: a boolean (H, W) mask, the union over boxes.

    A box's pixels are those whose centre lies in it (:func:`cxrbench.data.schema.box_mask`). A box
    that covers no pixel centre (narrower or shorter than a pixel, between two centres) gets the one
    pixel that contains its centre instead, so every metric scores it on that pixel (docs/metrics.md:
    boxes that cover no pixel). A box whose centre lies outside the image stays empty.
    """
    mask = np.zeros((height, width), dtype=bool)
    for b in boxes:
        single = box_mask([b], height, width)
        centre = _centre_pixel(b, height, width)
        if not single.any() and centre is not None:
            single[centre] = True
        mask |= single
    return mask


def normalize_heatmap(heatmap: np.ndarray) -> np.ndarray:
    """Min-max normalize a map to [0, 1] (float64). A constant map becomes all zeros."""
    array = _as_heatmap(heatmap)
    low, high = float(array.min()), float(array.max())
    if high <= low:
        return np.zeros_like(array)
    return (array - low) / (high - low)


# ------------------------------------------------------------------------------------------- ranking
def binary_auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Exact area under the ROC curve of ``scores`` for the boolean labels ``positive``.

    Computed as the normalized Mann-Whitney U statistic, ``AUC = (R+ - n+(n+ + 1)/2) / (n+ n-)``,
    with ``R+`` the sum of the (1-based, ties averaged) ranks of the positive scores. Tied scores
    therefore count one half, as in the trapezoidal ROC curve; nothing is binned.

    Returns ``nan`` when there are no positives or no negatives (the AUC is undefined).
    """
    values = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(positive, dtype=bool).ravel()
    if values.shape != labels.shape:
        raise ValueError(
            "`scores` and `positive` must have the same number of entries, "
            f"but got {values.size} and {labels.size}"
        )
    if np.isnan(values).any():
        raise ValueError("`scores` must not contain nan")
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    # The tie group of sorted unique value k occupies ranks (upper_k - count_k + 1) ... upper_k.
    upper = np.cumsum(counts)
    average_rank = upper - (counts - 1) / 2.0
    rank_sum_positive = float(average_rank[inverse.ravel()][labels].sum())
    u_statistic = rank_sum_positive - n_pos * (n_pos + 1) / 2.0
    return u_statistic / (n_pos * n_neg)


def auc_roc(heatmap: np.ndarray, mask: np.ndarray) -> float:
    """Pixel-wise ROC AUC of the map against the ground-truth mask (docs/metrics.md: AUC-ROC).

    Every pixel is one sample, the map value its score and ``mask`` its label. The value is exact
    (:func:`binary_auroc`, ties counted one half as in the Mann-Whitney statistic), not binned, and
    invariant to any increasing transform of the map, so no normalization is needed. 0.5 is chance;
    a map that highlights the background scores below 0.5 and is reported as is.

    Returns ``nan`` when ``mask`` is all-True or all-False (one class is missing).
    """
    values = _as_heatmap(heatmap)
    truth = _as_mask(mask, values.shape)
    return binary_auroc(values, truth)


# ---------------------------------------------------------------------------------- contrast to noise
def _ratio(contrast: float, noise: float, zero_over_zero: float) -> float:
    if noise > 0.0:
        return contrast / noise
    if contrast == 0.0:
        return zero_over_zero
    return math.copysign(math.inf, contrast)


def cnr(heatmap: np.ndarray, mask: np.ndarray) -> float:
    """Contrast-to-noise ratio, seed definition (docs/metrics.md: CNR), signed.

    ``(mean_in - mean_out) / sqrt(var_in + var_out)`` over the min-max normalized map, ``in`` the
    pixels of the mask (union of the phrase's boxes), ``out`` all others. The variances are the
    unbiased sample variances (ddof=1), as the seed code's ``torch.var`` computes them. Negative when
    the map is brighter outside the boxes.

    Returns ``nan`` when either region has fewer than two pixels. When both regions are constant
    (zero noise) the ratio is ``+inf`` / ``-inf`` for a non-zero contrast and ``nan`` otherwise.
    """
    values = normalize_heatmap(heatmap)
    truth = _as_mask(mask, values.shape)
    inside, outside = values[truth], values[~truth]
    if inside.size < 2 or outside.size < 2:
        return float("nan")
    noise = math.sqrt(float(inside.var(ddof=1)) + float(outside.var(ddof=1)))
    return _ratio(float(inside.mean()) - float(outside.mean()), noise, zero_over_zero=float("nan"))


def cnr_biovil(heatmap: np.ndarray, box_masks: Sequence[np.ndarray]) -> float:
    """Contrast-to-noise ratio as BioViL reports it (docs/metrics.md: BioViL CNR), unsigned.

    For each box separately: ``|mean_in - mean_out| / sqrt(var_in + var_out)`` with population
    variances (ddof=0), ``in`` the pixels of that box and ``out`` every other pixel (other boxes of
    the phrase included); then the mean over boxes. The map is min-max normalized first (the value is
    invariant to it). A box with an empty region, or with zero contrast and zero noise, contributes 0
    (BioViL's evaluation maps its nan to 0); non-zero contrast with zero noise is ``+inf``.

    Returns ``nan`` when ``box_masks`` is empty.
    """
    values = normalize_heatmap(heatmap)
    if len(box_masks) == 0:
        return float("nan")
    ratios = []
    for index, single in enumerate(box_masks):
        truth = _as_mask(single, values.shape, name=f"box_masks[{index}]")
        inside, outside = values[truth], values[~truth]
        if inside.size == 0 or outside.size == 0:
            ratios.append(0.0)
            continue
        noise = math.sqrt(float(inside.var()) + float(outside.var()))
        ratios.append(_ratio(abs(float(inside.mean()) - float(outside.mean())), noise, zero_over_zero=0.0))
    return float(np.mean(ratios))


# ------------------------------------------------------------------------------------------ pointing
def pointing_game(heatmap: np.ndarray, mask: np.ndarray) -> float:
    """Pointing game (top-1): 1.0 if the map's maximum lies inside the mask, else 0.0.

    docs/metrics.md: pointing game. Ties are broken by taking the *first* maximum in row-major
    order (``numpy.argmax`` of the flattened map), so a constant map points at pixel (0, 0).
    """
    values = _as_heatmap(heatmap)
    truth = _as_mask(mask, values.shape)
    return 1.0 if bool(truth.ravel()[int(np.argmax(values))]) else 0.0


# ----------------------------------------------------------------------------------- GMM binarization
def gmm_threshold(heatmap: np.ndarray) -> float:
    """Seed binarization threshold (docs/metrics.md: IoU / mIoU, seed).

    Fit a two-component Gaussian mixture to the values of the min-max normalized map
    (:func:`cxrbench.metrics.gmm.fit_gaussian_mixture_1d`: split-at-the-mean initialization,
    SQUAREM-accelerated EM, then Newton steps until the threshold stops moving) and return the mean
    of the two component means, on the normalized [0, 1] scale.

    Returns ``nan`` for a constant map.
    """
    mixture = fit_gaussian_mixture_1d(normalize_heatmap(heatmap))
    if mixture is None:
        return float("nan")
    return (mixture.means[0] + mixture.means[1]) / 2.0


def _binarize_at(normalized: np.ndarray, threshold: float) -> np.ndarray:
    if math.isnan(threshold):
        return np.zeros(normalized.shape, dtype=bool)
    foreground = (normalized > threshold).astype(np.float64)
    smoothed = ndimage.uniform_filter(foreground, size=SMOOTHING_SIZE, mode=SMOOTHING_MODE)
    return smoothed >= 0.5


def gmm_binarize(heatmap: np.ndarray) -> np.ndarray:
    """Seed binarization of a map (docs/metrics.md: IoU / mIoU, seed).

    Pixels of the normalized map strictly above :func:`gmm_threshold` become foreground; the binary
    map then goes through a 3x3 mean filter (``scipy.ndimage.uniform_filter``, ``mode="nearest"``:
    the border is extended by repeating edge pixels, so a region touching the image edge is not
    eroded) and is re-thresholded at 0.5 (>= 0.5 is foreground), which removes isolated pixels and
    fills one-pixel holes. A constant map gives an all-False mask.
    """
    normalized = normalize_heatmap(heatmap)
    mixture = fit_gaussian_mixture_1d(normalized)
    threshold = float("nan") if mixture is None else (mixture.means[0] + mixture.means[1]) / 2.0
    return _binarize_at(normalized, threshold)


def _iou(prediction: np.ndarray, truth: np.ndarray) -> float:
    union = int(np.logical_or(prediction, truth).sum())
    if union == 0:
        return float("nan")
    return int(np.logical_and(prediction, truth).sum()) / union


def _iou_pair(binary: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    foreground = _iou(binary, truth)
    background = _iou(~binary, ~truth)
    return {"iou": foreground, "miou": (foreground + background) / 2.0}


def iou_gmm(heatmap: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """IoU and mIoU of the GMM-binarized map (seed definition, docs/metrics.md: IoU / mIoU).

    ``iou`` is the foreground IoU of :func:`gmm_binarize` against the mask; ``miou`` is
    ``(IoU_foreground + IoU_background) / 2``, the background IoU taken between the complements.
    An IoU whose union is empty is ``nan`` (and so is ``miou`` then).
    """
    values = _as_heatmap(heatmap)
    truth = _as_mask(mask, values.shape)
    return _iou_pair(gmm_binarize(values), truth)


def miou_biovil(
    heatmap: np.ndarray, mask: np.ndarray, thresholds: Sequence[float] = BIOVIL_THRESHOLDS
) -> float:
    """BioViL's mIoU (docs/metrics.md): mean over thresholds of the IoU of ``map > t`` with the mask.

    The map is min-max normalized first; ``thresholds`` default to 0.1, 0.2, 0.3, 0.4, 0.5. A
    threshold whose union is empty contributes ``nan`` and is skipped in the mean. Not the seed's
    mIoU (see :func:`iou_gmm`), hence the separate name.
    """
    values = normalize_heatmap(heatmap)
    truth = _as_mask(mask, values.shape)
    if len(thresholds) == 0:
        raise ValueError("`thresholds` must hold at least one value, but got an empty sequence")
    ious = np.array([_iou(values > float(t), truth) for t in thresholds])
    if np.isnan(ious).all():
        return float("nan")
    return float(np.nanmean(ious))


# ------------------------------------------------------------------------------------ single boxes
def largest_component(binary: np.ndarray) -> np.ndarray:
    """The largest 8-connected foreground component of a boolean map, as a boolean mask.

    Ties in size go to the component met first in a row-major scan. An empty map gives an empty mask.
    """
    foreground = np.asarray(binary, dtype=bool)
    labels, count = ndimage.label(foreground, structure=np.ones((3, 3), dtype=bool))
    if count == 0:
        return np.zeros(foreground.shape, dtype=bool)
    sizes = np.bincount(labels.ravel())[1:]
    return labels == (int(np.argmax(sizes)) + 1)


def _component_box_iou(binary: np.ndarray, box: Box) -> float:
    height, width = binary.shape
    truth = box_pixels([box], height, width)
    component = largest_component(binary)
    if not component.any():
        return 0.0 if truth.any() else float("nan")
    rows = np.flatnonzero(component.any(axis=1))
    cols = np.flatnonzero(component.any(axis=0))
    predicted = np.zeros_like(component)
    predicted[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] = True
    return _iou(predicted, truth)


def _component_centre_distance(binary: np.ndarray, box: Box) -> float:
    component = largest_component(binary)
    if not component.any():
        return float("nan")
    rows, cols = np.nonzero(component)
    # Pixel (r, c) has its centre at (c + 0.5, r + 0.5) in the box coordinate system.
    centroid_x = float(cols.mean()) + 0.5
    centroid_y = float(rows.mean()) + 0.5
    box_x, box_y = box.center
    height, width = binary.shape
    return math.hypot(centroid_x - box_x, centroid_y - box_y) / math.hypot(height, width)


def bbox_iou(heatmap: np.ndarray, box: Box) -> float:
    """IoU of the ground-truth box with the box around the map's largest blob (docs/metrics.md: bbox IoU).

    The map is binarized by :func:`gmm_binarize`; the predicted box is the tight bounding rectangle
    of its largest 8-connected component (:func:`largest_component`); both boxes are rasterized on
    the pixel grid (:func:`box_pixels` for the ground truth) and compared as pixel
    sets. An empty binarization scores 0.0. Meant for single-box findings; the caller decides.
    """
    return _component_box_iou(gmm_binarize(heatmap), box)


def centre_distance(heatmap: np.ndarray, box: Box) -> float:
    """Distance between the box centre and the centroid of the map's largest blob (lower is better).

    The blob is the largest 8-connected component of :func:`gmm_binarize` (as in :func:`bbox_iou`);
    its centroid is the mean of its pixel centres. The distance is divided by the image diagonal
    ``sqrt(H^2 + W^2)``, so it lies in [0, 1] and does not depend on resolution. ``nan`` when the
    binarization is empty. Meant for single-box findings; the caller decides.
    """
    return _component_centre_distance(gmm_binarize(heatmap), box)


# ---------------------------------------------------------------------------------------- all scores
#: Direction, definition and reference of each key of :func:`localization_scores`.
LOCALIZATION_METRICS: dict[str, dict[str, Any]] = {
    "auc_roc": {
        "higher_is_better": True,
        "description": "Pixel-wise ROC AUC of the map against the union of the phrase's boxes (exact).",
        "reference": "Dombrowski et al., AAAI 2024; Mann-Whitney U statistic",
    },
    "cnr": {
        "higher_is_better": True,
        "description": "Signed (mean_in - mean_out) / sqrt(var_in + var_out), sample variances (ddof=1).",
        "reference": "Dombrowski et al., AAAI 2024 (seed code)",
    },
    "cnr_biovil": {
        "higher_is_better": True,
        "description": "|mean_in - mean_out| / sqrt(var_in + var_out), population variances, box mean.",
        "reference": "Boecking et al., ECCV 2022 (BioViL, MS-CXR)",
    },
    "pointing_game": {
        "higher_is_better": True,
        "description": "1 if the map's maximum (first in row-major order) lies in the boxes, else 0.",
        "reference": "Zhang et al., ECCV 2016 (pointing game)",
    },
    "iou_gmm": {
        "higher_is_better": True,
        "description": "Foreground IoU of the GMM-thresholded, 3x3-mean-filtered map with the boxes.",
        "reference": "Dombrowski et al., AAAI 2024 (seed code)",
    },
    "miou_gmm": {
        "higher_is_better": True,
        "description": "(IoU_foreground + IoU_background) / 2 of the GMM-binarized map.",
        "reference": "Dombrowski et al., AAAI 2024 (seed code)",
    },
    "miou_biovil": {
        "higher_is_better": True,
        "description": "Mean IoU of (normalized map > t) with the boxes over t in 0.1 ... 0.5.",
        "reference": "Boecking et al., ECCV 2022 (BioViL, MS-CXR)",
    },
    "bbox_iou": {
        "higher_is_better": True,
        "description": "IoU of the box with the bounding box of the largest GMM blob; single-box only.",
        "reference": "Dombrowski et al., AAAI 2024",
    },
    "centre_distance": {
        "higher_is_better": False,
        "description": "Box centre to largest-GMM-blob centroid, in image diagonals; single-box only.",
        "reference": "Dombrowski et al., AAAI 2024",
    },
}


def localization_scores(
    heatmap: np.ndarray, boxes: Sequence[Box], image_shape: tuple[int, int]
) -> dict[str, float]:
    """Every localization score of one (image, phrase) pair, keyed as :data:`LOCALIZATION_METRICS`.

    ``boxes`` are the phrase's boxes in pixel coordinates of an image of ``image_shape`` (H, W);
    the heatmap must already have that shape (the caller resizes it). The map is binarized once
    and the result shared by ``iou_gmm``, ``miou_gmm``, ``bbox_iou`` and ``centre_distance``.
    ``bbox_iou`` and ``centre_distance`` are ``nan`` unless there is exactly one box. Every metric
    takes the boxes' pixels from :func:`box_pixels` (a box that covers no pixel centre scores on the
    pixel that contains its centre).

    Raises:
        ValueError: the heatmap's shape differs from ``image_shape``, or ``boxes`` is empty.
    """
    values = _as_heatmap(heatmap)
    expected = tuple(int(s) for s in image_shape)
    if values.shape != expected:
        raise ValueError(
            f"heatmap shape {values.shape} differs from image shape {expected}; "
            "resize the heatmap to the image before scoring"
        )
    if len(boxes) == 0:
        raise ValueError("`boxes` must hold at least one Box (the phrase's ground truth), but got none")
    height, width = expected
    mask = box_pixels(list(boxes), height, width)
    normalized = normalize_heatmap(values)
    mixture = fit_gaussian_mixture_1d(normalized)
    threshold = float("nan") if mixture is None else (mixture.means[0] + mixture.means[1]) / 2.0
    binary = _binarize_at(normalized, threshold)
    ious = _iou_pair(binary, mask)
    single = len(boxes) == 1
    return {
        "auc_roc": binary_auroc(values, mask),
        "cnr": cnr(normalized, mask),
        "cnr_biovil": cnr_biovil(normalized, [box_pixels([b], height, width) for b in boxes]),
        "pointing_game": pointing_game(values, mask),
        "iou_gmm": ious["iou"],
        "miou_gmm": ious["miou"],
        "miou_biovil": miou_biovil(normalized, mask),
        "bbox_iou": _component_box_iou(binary, boxes[0]) if single else float("nan"),
        "centre_distance": _component_centre_distance(binary, boxes[0]) if single else float("nan"),
    }
