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

**Siblings.** A track draws several samples per prompt. Samples of one prompt resemble each other far
more than samples of different prompts, so with k = 3 and 4 samples per prompt a generated point's
three nearest neighbours are its own siblings: its radius measures the spread *within* a prompt, the
generated manifold shrinks to small balls around each prompt, and recall collapses even for a generator
that samples the real distribution. ``groups`` fixes this: a point's neighbours are the *other groups*
(prompts), each counted once at the distance of its nearest sample, so a radius is the distance to the
k-th nearest other prompt: the scale at which the set's independent draws (one per prompt and more)
sample the distribution. With one point per group this is the original definition.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.spatial.distance import cdist

from cxrbench.metrics.features import paired_features

__all__ = ["DEFAULT_K", "knn_radii", "precision_recall_from_features", "within_manifold"]

#: Neighbourhood size of the reference implementation's default.
DEFAULT_K = 3
#: Rows of one block of the distance matrix (memory, not results).
_BLOCK_ROWS = 1024


def _as_groups(groups: np.ndarray | None, n: int, name: str) -> np.ndarray:
    """One group id per point; ``None`` puts every point in a group of its own."""
    if groups is None:
        return np.arange(n)
    array = np.asarray(groups).ravel()
    if array.shape != (n,):
        raise ValueError(f"`{name}` must hold one group id per point ({n}), but got {array.size}")
    return array


def knn_radii(features: np.ndarray, k: int = DEFAULT_K, groups: np.ndarray | None = None) -> np.ndarray:
    """Distance from each row of ``features`` to its ``k``-th nearest other group.

    ``groups[i]`` is the group (prompt) of row i. A row's distance to a group is its distance to that
    group's nearest row; its own group, the row itself included, is never a neighbour, and every other group
    counts once, however many rows it has. Without ``groups`` every row is its own group: the distance to
    the k-th nearest other row, the paper's radius (a duplicate of it counts as a neighbour at distance 0).
    Needs at least ``k`` groups besides each row's own.
    """
    points = np.asarray(features, dtype=np.float64)
    n = points.shape[0]
    labels = _as_groups(groups, n, "groups")
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
    if not 1 <= k < starts.size:
        raise ValueError(f"`k` must lie in [1, {starts.size - 1}] for {n} points in {starts.size} groups, but got {k}")
    own = np.searchsorted(sorted_labels[starts], labels)
    ordered_points = points[order]
    radii = np.empty(n, dtype=np.float64)
    for start in range(0, n, _BLOCK_ROWS):
        block = slice(start, start + _BLOCK_ROWS)
        nearest = np.minimum.reduceat(cdist(points[block], ordered_points), starts, axis=1)  # per group
        nearest[np.arange(nearest.shape[0]), own[block]] = np.inf
        # Index k - 1 of the partially sorted row is its distance to the k-th nearest other group.
        radii[block] = np.partition(nearest, k - 1, axis=1)[:, k - 1]
    return radii


def within_manifold(queries: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Boolean per query row: is it within ``radii[j]`` of some ``centres[j]``?"""
    queries = np.asarray(queries, dtype=np.float64)
    inside = np.empty(queries.shape[0], dtype=bool)
    for start in range(0, queries.shape[0], _BLOCK_ROWS):
        distances = cdist(queries[start:start + _BLOCK_ROWS], centres)
        inside[start:start + _BLOCK_ROWS] = (distances <= radii[None, :]).any(axis=1)
    return inside


def precision_recall_from_features(
    real: np.ndarray, generated: np.ndarray, k: int = DEFAULT_K, generated_groups: np.ndarray | None = None
) -> dict[str, Any]:
    """Improved precision and recall (Kynkaanniemi et al., NeurIPS 2019) of two feature sets.

    Args:
        real: (N, D) features of real images.
        generated: (M, D) features of generated images (same extractor).
        k: neighbourhood size of the manifold balls (default 3, the paper's).
        generated_groups: the prompt of each generated image (M ids). A generated image's radius then
            counts neighbours among other prompts' images only (module docstring, "Siblings"); ``None``:
            every image is independent, the paper's definition.

    Returns:
        ``{"precision", "recall", "k", "n_real", "n_generated", "generated_inside", "real_inside"}``:
        ``generated_inside[i]`` says whether generated point i is inside the real manifold (precision is
        its mean), ``real_inside[j]`` whether real point j is inside the generated manifold (recall is its
        mean); the caller bootstraps over them for intervals.

    Raises:
        ValueError: shapes differ, a set has no ``k`` neighbours for some point, or values are not finite.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> report = precision_recall_from_features(rng.normal(size=(50, 4)), rng.normal(size=(60, 4)))
        >>> 0.0 <= report["precision"] <= 1.0
        True
    """
    real_array, generated_array = paired_features(real, generated)
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"`k` must be a positive integer, but got {k!r}")
    if k >= real_array.shape[0]:
        raise ValueError(
            f"`k` must be smaller than both set sizes, but got k={k} with {real_array.shape[0]} real and "
            f"{generated_array.shape[0]} generated samples"
        )
    groups = _as_groups(generated_groups, generated_array.shape[0], "generated_groups")
    generated_inside = within_manifold(generated_array, real_array, knn_radii(real_array, k))
    real_inside = within_manifold(real_array, generated_array, knn_radii(generated_array, k, groups))
    return {
        "precision": float(generated_inside.mean()),
        "recall": float(real_inside.mean()),
        "k": int(k),
        "n_real": int(real_array.shape[0]),
        "n_generated": int(generated_array.shape[0]),
        "generated_inside": generated_inside,
        "real_inside": real_inside,
    }
