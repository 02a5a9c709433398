"""Conformance tests of cxrbench.metrics.manifold: improved precision and recall vs a brute-force reference."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cxrbench.metrics import manifold


def brute_force_precision_recall(real: np.ndarray, generated: np.ndarray, k: int) -> tuple[float, float]:
    """Kynkaanniemi et al. (2019), pair by pair with math.dist: no matrices, no partial sorts."""

    def radius(points: np.ndarray, i: int) -> float:
        distances = sorted(math.dist(points[i], points[j]) for j in range(len(points)) if j != i)
        return distances[k - 1]

    def inside(query: np.ndarray, points: np.ndarray, radii: list[float]) -> bool:
        return any(math.dist(query, points[j]) <= radii[j] for j in range(len(points)))

    real_radii = [radius(real, i) for i in range(len(real))]
    generated_radii = [radius(generated, i) for i in range(len(generated))]
    precision = sum(inside(g, real, real_radii) for g in generated) / len(generated)
    recall = sum(inside(r, generated, generated_radii) for r in real) / len(real)
    return precision, recall


@pytest.mark.parametrize("k", [1, 3, 5])
def test_precision_recall_match_brute_force(k):
    rng = np.random.default_rng(k)
    real = rng.normal(size=(40, 5))
    generated = rng.normal(0.6, 0.7, size=(33, 5))  # shifted and narrower: precision and recall differ
    report = manifold.precision_recall_from_features(real, generated, k=k)
    precision, recall = brute_force_precision_recall(real, generated, k)
    assert report["precision"] == pytest.approx(precision, abs=1e-12)
    assert report["recall"] == pytest.approx(recall, abs=1e-12)
    assert (report["k"], report["n_real"], report["n_generated"]) == (k, 40, 33)
    assert report["generated_inside"].shape == (33,) and report["real_inside"].shape == (40,)


def test_precision_recall_by_hand_on_a_line():
    # Real points 0, 1, 2, 10 on a line, k = 1: radii 1, 1, 1, 8. Generated 0.5, 3.5, 20:
    # 0.5 is within 1 of 0; 3.5 is within 8 of 10; 20 is 10 from 10 > 8. Precision 2/3.
    # Generated radii (k = 1): 3, 3, 16.5. Real 0 (0.5 away from 0.5), 1, 2 (1.5 from 3.5) and 10
    # (6.5 from 3.5 > 3, 10 from 20 <= 16.5) are all covered: recall 1.
    real = np.array([[0.0], [1.0], [2.0], [10.0]])
    generated = np.array([[0.5], [3.5], [20.0]])
    report = manifold.precision_recall_from_features(real, generated, k=1)
    assert report["precision"] == pytest.approx(2 / 3)
    assert report["recall"] == 1.0
    np.testing.assert_array_equal(manifold.knn_radii(real, 1), [1.0, 1.0, 1.0, 8.0])


def test_ball_boundary_counts_as_inside_and_duplicates_are_neighbours():
    real = np.array([[0.0, 0.0], [0.0, 0.0], [3.0, 4.0]])
    np.testing.assert_array_equal(manifold.knn_radii(real, 1), [0.0, 0.0, 5.0])
    # exactly on the ball of the third point (distance 5 = its radius)
    assert manifold.within_manifold(np.array([[6.0, 8.0]]), real, manifold.knn_radii(real, 1)).tolist() == [True]


def test_identical_sets_have_full_precision_and_recall():
    features = np.random.default_rng(4).normal(size=(50, 8))
    report = manifold.precision_recall_from_features(features, features.copy())
    assert report["precision"] == 1.0 and report["recall"] == 1.0


def test_precision_recall_input_checks():
    rng = np.random.default_rng(5)
    with pytest.raises(ValueError, match="smaller than both set sizes"):
        manifold.precision_recall_from_features(rng.normal(size=(3, 2)), rng.normal(size=(10, 2)), k=3)
    with pytest.raises(ValueError, match="feature dimension"):
        manifold.precision_recall_from_features(rng.normal(size=(10, 2)), rng.normal(size=(10, 3)))
    with pytest.raises(ValueError, match="positive integer"):
        manifold.precision_recall_from_features(rng.normal(size=(10, 2)), rng.normal(size=(10, 2)), k=0)
