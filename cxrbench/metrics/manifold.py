"""Precision and recall of generated images with k-nearest-neighbour manifolds (Kynkaanniemi et al. 2019).

"Improved Precision and Recall Metric for Assessing Generative Models" (Kynkaanniemi, Karras, Laine,
Lehtinen, Aila; NeurIPS 2019). Each feature set approximates its manifold by the union of balls
around its points, the radius of a point's ball being the distance to its k-th nearest neighbour in its
own set (the point itself excluded). Then:

- **precision**: the fraction of generated points that fall inside the real manifold (fidelity: are the
  generated images realistic?);
- **recall**: the fraction of real points that fall inside the generated manifold (coverage: does the
  model produce the variety of the real images?).

A point lies inside a manifold when its distance to some ball's centre is at most that ball's radius
(``<=``, as in the authors' reference code, ``metrics/precision_recall.py`` of NVlabs/stylegan2-ada).
Distances are Euclidean, in float64, from ``scipy.spatial.distance.cdist``. Pure numpy/scipy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.spatial.distance import cdist

from cxrbench.metrics.fidelity import _paired_features

__all__ = ["DEFAULT_K", "knn_radii", "precision_recall_from_features", "within_manifold"]

#: Neighbourhood size of the reference implementation's default.
DEFAULT_K = 3
#: Rows of one block of the distance matrix (memory, not results).
_BLOCK_ROWS = 1024


def knn_radii(features: np.ndarray, k: int = DEFAULT_K) -> np.ndarray:
    """Distance from each row of ``features`` to its ``k``-th nearest other row.

    The point itself is excluded (a duplicate of it counts as a neighbour at distance 0). Needs
    ``k < N``.
    """
    points = np.asarray(features, dtype=np.float64)
    n = points.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"`k` must lie in [1, {n - 1}] for {n} points, but got {k}")
    radii = np.empty(n, dtype=np.float64)
    for start in range(0, n, _BLOCK_ROWS):
        distances = cdist(points[start:start + _BLOCK_ROWS], points)
        # Index k of the partially sorted row is the (k+1)-th smallest distance: the point itself is
        # the smallest (0), so this is its k-th nearest other point.
        radii[start:start + _BLOCK_ROWS] = np.partition(distances, k, axis=1)[:, k]
    return radii


def within_manifold(queries: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Boolean per query row: is it within ``radii[j]`` of some ``centres[j]``?"""
    queries = np.asarray(queries, dtype=np.float64)
    inside = np.empty(queries.shape[0], dtype=bool)
    for start in range(0, queries.shape[0], _BLOCK_ROWS):
        distances = cdist(queries[start:start + _BLOCK_ROWS], centres)
        inside[start:start + _BLOCK_ROWS] = (distances <= radii[None, :]).any(axis=1)
    return inside


def precision_recall_from_features(real: np.ndarray, generated: np.ndarray, k: int = DEFAULT_K) -> dict[str, Any]:
    """Improved precision and recall (Kynkaanniemi et al., NeurIPS 2019) of two feature sets.

    Args:
        real: (N, D) features of real images.
        generated: (M, D) features of generated images (same extractor).
        k: neighbourhood size of the manifold balls (default 3, the paper's); needs ``k < min(N, M)``.

    Returns:
        ``{"precision", "recall", "k", "n_real", "n_generated", "generated_inside", "real_inside"}``:
        ``generated_inside[i]`` says whether generated point i is inside the real manifold (precision is
        its mean), ``real_inside[j]`` whether real point j is inside the generated manifold (recall is its
        mean); the caller bootstraps over them for intervals.

    Raises:
        ValueError: shapes differ, a set holds fewer than ``k + 1`` points, or values are not finite.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> report = precision_recall_from_features(rng.normal(size=(50, 4)), rng.normal(size=(60, 4)))
        >>> 0.0 <= report["precision"] <= 1.0
        True
    """
    real_array, generated_array = _paired_features(real, generated)
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"`k` must be a positive integer, but got {k!r}")
    smallest = min(real_array.shape[0], generated_array.shape[0])
    if k >= smallest:
        raise ValueError(
            f"`k` must be smaller than both set sizes, but got k={k} with {real_array.shape[0]} real and "
            f"{generated_array.shape[0]} generated samples"
        )
    generated_inside = within_manifold(generated_array, real_array, knn_radii(real_array, k))
    real_inside = within_manifold(real_array, generated_array, knn_radii(generated_array, k))
    return {
        "precision": float(generated_inside.mean()),
        "recall": float(real_inside.mean()),
        "k": int(k),
        "n_real": int(real_array.shape[0]),
        "n_generated": int(generated_array.shape[0]),
        "generated_inside": generated_inside,
        "real_inside": real_inside,
    }
