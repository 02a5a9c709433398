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


# ------------------------------------------------------------------------------- sibling samples
def brute_force_group_radii(points: np.ndarray, groups: np.ndarray, k: int) -> list[float]:
    """Distance to the k-th nearest other group (each group at its nearest point), pair by pair."""
    radii = []
    for i in range(len(points)):
        per_group = {}
        for j in range(len(points)):
            if groups[j] != groups[i]:
                per_group[groups[j]] = min(per_group.get(groups[j], math.inf), math.dist(points[i], points[j]))
        radii.append(sorted(per_group.values())[k - 1])
    return radii


@pytest.mark.parametrize("k", [1, 3])
def test_group_radii_count_only_other_groups_neighbours(k):
    rng = np.random.default_rng(10 + k)
    points = rng.normal(size=(24, 3))
    groups = rng.permutation(np.repeat(np.arange(6), 4))  # any order of the rows
    np.testing.assert_allclose(manifold.knn_radii(points, k, groups), brute_force_group_radii(points, groups, k),
                               rtol=1e-12)
    # One point per group is the paper's definition.
    np.testing.assert_array_equal(manifold.knn_radii(points, k, np.arange(24)), manifold.knn_radii(points, k))


def test_group_radii_need_k_points_outside_every_group():
    points = np.random.default_rng(0).normal(size=(8, 2))
    with pytest.raises(ValueError, match=r"\[1, 1\] for 8 points in 2 groups"):
        manifold.knn_radii(points, 2, np.repeat([0, 1], 4))
    with pytest.raises(ValueError, match="one group id per point"):
        manifold.precision_recall_from_features(points, points, k=1, generated_groups=np.arange(3))


def _simulated_recall(spread: float, groups: bool, rng_seed: int, dim: int = 16) -> float:
    """Recall of 64 prompts x 4 samples drawn from the real distribution N(0, I): each sample is
    sqrt(1 - spread^2) * (its prompt's centre) + spread * (its own noise), so every sample is N(0, I)
    and ``spread`` sets how alike a prompt's samples are (1: independent, 0: four copies)."""
    rng = np.random.default_rng(rng_seed)
    real = rng.normal(size=(200, dim))
    prompts = np.repeat(np.arange(64), 4)
    centres, noise = rng.normal(size=(64, dim)), rng.normal(size=(256, dim))
    generated = math.sqrt(1.0 - spread**2) * centres[prompts] + spread * noise
    report = manifold.precision_recall_from_features(real, generated, k=3,
                                                     generated_groups=prompts if groups else None)
    return report["recall"]


def test_recall_of_a_generator_sampling_the_real_distribution_does_not_depend_on_siblings():
    # Mean over four seeded draws, so the comparison is not one draw's luck.
    def recall(spread, groups=True):
        return float(np.mean([_simulated_recall(spread, groups, seed) for seed in range(4)]))

    independent = recall(1.0)
    assert independent > 0.6
    for spread in (0.5, 0.2, 0.0):
        assert abs(recall(spread) - independent) < 0.05, spread
    # Counting siblings as neighbours (the paper's definition applied to 4 samples per prompt) collapses.
    assert recall(0.2, groups=False) < 0.05


def test_recall_of_a_collapsed_generator_is_close_to_zero():
    rng = np.random.default_rng(5)
    real = rng.normal(size=(200, 16))
    prompts = np.repeat(np.arange(64), 4)
    generated = rng.normal(size=(1, 16)) + 0.05 * rng.normal(size=(256, 16))  # every prompt, one image
    report = manifold.precision_recall_from_features(real, generated, k=3, generated_groups=prompts)
    assert report["recall"] < 0.02


def test_a_run_scores_recall_with_each_generated_image_s_prompt():
    """The run's scoring passes the prompt of each generated image: siblings drawn from the real
    distribution (spread 0.2, 4 per prompt) score the recall of independent samples."""
    from cxrbench.scoring import Scores, score_extractor

    rng = np.random.default_rng(3)
    real = rng.normal(size=(200, 16))
    prompts = np.repeat(np.arange(64), 4)
    siblings = math.sqrt(1.0 - 0.2**2) * rng.normal(size=(64, 16))[prompts] + 0.2 * rng.normal(size=(256, 16))
    independent = rng.normal(size=(256, 16))
    recalls = []
    for generated in (siblings, independent):
        scores = Scores()
        score_extractor(scores, "toy", real, generated, prompts, seed=0)
        recalls.append(scores.metrics["recall_toy"]["value"])
        assert "neighbours from other prompts" in scores.metrics["recall_toy"]["note"]
    assert recalls[1] > 0.6 and abs(recalls[0] - recalls[1]) < 0.05, recalls
