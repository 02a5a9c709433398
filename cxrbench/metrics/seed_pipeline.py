"""The seed code's GMM-based localization metrics, step by step (the ``*_seed`` variants).

Dombrowski et al.'s evaluation (``scripts/compute_bbox_iou.py``, ``compute_iou_score``, with
``src/foreground_masks.py`` ``GMMMaskSuggestor`` and ``src/evaluation/utils.py``) scores a map this way:

1. fit ``GaussianMixture(n_components=2)`` with scikit-learn's defaults to the raw map at the map's own
   resolution (64 x 64 latent pixels; not normalized) -- :func:`cxrbench.metrics.gmm.fit_seed_mixture`;
2. threshold at the mean of the two component means; foreground is strictly above it;
3. remove orphan pixels: each *interior* pixel becomes the 3 x 3 mean of the binary map, kept where it is
   >= 0.5; the one-pixel border keeps its binary value (:func:`filter_orphan_pixels`);
4. upsample the binary map to the image (``torchvision.transforms.Resize``: bilinear, half-pixel
   centres) and round (:func:`upsample_binary`);
5. ``iou`` = Jaccard index of ground truth and upsampled map, ``miou`` = mean of it and the Jaccard index
   of the complements (scikit-learn's ``jaccard_score``: 0 when the union is empty);
6. the predicted rectangle spans *all* foreground pixels, drawn with an exclusive end index (its last row
   and column are left out), ``bboxiou`` = its Jaccard index with the ground truth (:func:`seed_rectangle`);
7. ``distance`` (single-box findings only): pixels between the centre of that rectangle and the centre of
   the ground truth's rectangle, found the same way, each centre ``x1 + (x2 - x1) / 2`` with ``x1, x2`` the
   first and last foreground columns (rows likewise).

Where the seed code raises (an empty binarization has no rectangle), the variants score ``bbox_iou``
0 and ``distance`` nan, as cxrbench's own variants do. Pure numpy.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from cxrbench.metrics.gmm import fit_seed_mixture

__all__ = ["filter_orphan_pixels", "jaccard", "seed_binarize", "seed_gmm_scores", "seed_rectangle",
           "seed_threshold", "upsample_binary"]


def seed_threshold(heatmap: np.ndarray) -> float:
    """The mean of the seed fit's two means, in the map's precision (nan for a constant map)."""
    values = np.asarray(heatmap)
    dtype = np.float32 if values.dtype == np.float32 else np.float64
    mixture = fit_seed_mixture(values.astype(dtype))
    if mixture is None:
        return float("nan")
    return float(np.mean(np.array(mixture.means, dtype=dtype)))


def filter_orphan_pixels(binary: np.ndarray) -> np.ndarray:
    """The seed's orphan filter: interior pixels with at least 5 foreground pixels in their 3 x 3
    neighbourhood (a mean >= 0.5) are foreground, the others background; border pixels are kept."""
    image = np.asarray(binary, dtype=bool)
    out = image.copy()
    if min(image.shape) >= 3:
        counts = ndimage.correlate(image.astype(np.int16), np.ones((3, 3), dtype=np.int16), mode="constant")
        out[1:-1, 1:-1] = counts[1:-1, 1:-1] >= 5
    return out


def seed_binarize(heatmap: np.ndarray) -> np.ndarray:
    """Steps 1-3: the seed's GMM threshold on the raw map, then the orphan filter (at the map's size)."""
    values = np.asarray(heatmap)
    if values.ndim != 2:
        raise ValueError(f"`heatmap` must be a 2-D (h, w) array, but got shape {values.shape}")
    threshold = seed_threshold(values)
    if math.isnan(threshold):
        return np.zeros(values.shape, dtype=bool)
    dtype = np.float32 if values.dtype == np.float32 else np.float64
    return filter_orphan_pixels(values.astype(dtype) > dtype(threshold))


def _bilinear_matrix(size_out: int, size_in: int) -> np.ndarray:
    """(size_out, size_in) weights of bilinear resampling with half-pixel centres (align_corners=False)."""
    source = np.maximum((np.arange(size_out) + 0.5) * (size_in / size_out) - 0.5, 0.0)
    low = np.minimum(np.floor(source).astype(int), size_in - 1)
    high = np.minimum(low + 1, size_in - 1)
    fraction = source - low
    weights = np.zeros((size_out, size_in))
    np.add.at(weights, (np.arange(size_out), low), 1.0 - fraction)
    np.add.at(weights, (np.arange(size_out), high), fraction)
    return weights


def upsample_binary(binary: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Step 4: bilinear resampling of the 0/1 map to ``shape``, rounded half to even, as booleans."""
    image = np.asarray(binary, dtype=np.float64)
    if tuple(image.shape) == tuple(shape):
        return image > 0.5
    resampled = _bilinear_matrix(shape[0], image.shape[0]) @ image @ _bilinear_matrix(shape[1], image.shape[1]).T
    return np.round(resampled) > 0.5


def jaccard(truth: np.ndarray, prediction: np.ndarray) -> float:
    """Jaccard index of two boolean maps as scikit-learn's ``jaccard_score`` gives it (0 for an empty union)."""
    union = int(np.logical_or(truth, prediction).sum())
    return int(np.logical_and(truth, prediction).sum()) / union if union else 0.0


def seed_rectangle(binary: np.ndarray) -> tuple[np.ndarray, tuple[float, float]] | None:
    """Step 6: the seed's rectangle around all foreground pixels (exclusive end) and its centre (x, y),
    in pixel indices; None for an empty map (where the seed code raises)."""
    image = np.asarray(binary, dtype=bool)
    cols = np.flatnonzero(image.any(axis=0))
    rows = np.flatnonzero(image.any(axis=1))
    if cols.size == 0:
        return None
    x1, x2, y1, y2 = int(cols[0]), int(cols[-1]), int(rows[0]), int(rows[-1])
    rectangle = np.zeros_like(image)
    rectangle[y1:y2, x1:x2] = True
    return rectangle, (x1 + (x2 - x1) / 2.0, y1 + (y2 - y1) / 2.0)


def seed_gmm_scores(heatmap: np.ndarray, truth: np.ndarray, n_boxes: int) -> dict[str, float]:
    """The seed's ``iou``, ``miou``, ``bbox_iou`` and ``distance`` (pixels) of one map (steps 1-7).

    ``heatmap`` is the raw map at its own resolution (h, w); ``truth`` the boolean ground truth at the
    image's resolution (H, W), which the binarized map is upsampled to; ``n_boxes`` the number of boxes
    of the phrase (``distance`` is nan unless it is 1).
    """
    truth = np.asarray(truth, dtype=bool)
    binary = upsample_binary(seed_binarize(heatmap), truth.shape)
    iou = jaccard(truth, binary)
    scores = {"iou": iou, "miou": (iou + jaccard(~truth, ~binary)) / 2.0, "bbox_iou": 0.0,
              "distance": float("nan")}
    predicted = seed_rectangle(binary)
    if predicted is None:
        return scores
    scores["bbox_iou"] = jaccard(truth, predicted[0])
    reference = seed_rectangle(truth)
    if n_boxes == 1 and reference is not None:
        (px, py), (tx, ty) = predicted[1], reference[1]
        scores["distance"] = math.hypot(tx - px, ty - py)
    return scores
