"""Conformance tests of cxrbench.metrics.localization: hand-computed values and independent formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cxrbench.data.schema import Box, box_mask
from cxrbench.metrics import localization as loc
from cxrbench.metrics.stats import bootstrap_ci


def mann_whitney_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Independent reference: P(score_pos > score_neg) + 0.5 P(tie), by comparing every pair."""
    pos = scores[labels].ravel()[:, None]
    neg = scores[~labels].ravel()[None, :]
    return float(((pos > neg).sum() + 0.5 * (pos == neg).sum()) / (pos.size * neg.size))


# ------------------------------------------------------------------------------------------- AUC-ROC
def test_auc_roc_hand_example_with_ties():
    heatmap = np.array([[0.9, 0.2], [0.2, 0.1]])
    mask = np.array([[True, True], [False, False]])
    # positives {0.9, 0.2}, negatives {0.2, 0.1}: pairs 1 + 1 + 1/2 (tie) + 1 = 3.5 of 4.
    assert loc.auc_roc(heatmap, mask) == pytest.approx(3.5 / 4, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_roc_matches_pairwise_mann_whitney(seed):
    rng = np.random.default_rng(seed)
    heatmap = rng.integers(0, 5, size=(12, 14)).astype(float)  # many ties
    mask = rng.random((12, 14)) < 0.3
    assert loc.auc_roc(heatmap, mask) == pytest.approx(mann_whitney_auc(heatmap, mask), abs=1e-12)


def test_auc_roc_continuous_scores_match_pairwise_formula():
    rng = np.random.default_rng(3)
    heatmap = rng.normal(size=(20, 20))
    mask = box_mask([Box(4, 6, 7, 5)], 20, 20)
    heatmap[mask] += 0.8
    expected = mann_whitney_auc(heatmap, mask)
    assert 0.6 < expected < 1.0
    assert loc.auc_roc(heatmap, mask) == pytest.approx(expected, abs=1e-12)


def test_auc_roc_agrees_with_torchmetrics_binary_auroc():
    torch = pytest.importorskip("torch")
    from torchmetrics.functional.classification import binary_auroc as torchmetrics_auroc

    rng = np.random.default_rng(12)
    heatmap = np.round(rng.random((32, 32)), 2)  # scores in [0, 1] with ties, as maps and probabilities are
    mask = box_mask([Box(8, 5, 12, 10)], 32, 32)
    heatmap[mask] = np.clip(heatmap[mask] + 0.3, 0.0, 1.0)
    labels = torch.from_numpy(mask.ravel()).long()
    expected = torchmetrics_auroc(torch.from_numpy(heatmap.ravel()), labels).item()
    assert 0.6 < expected < 1.0
    # docs/metrics.md: torchmetrics counts its ROC curve in float32: the two agree to 1e-6, not bit for bit.
    assert loc.auc_roc(heatmap, mask) == pytest.approx(expected, rel=1e-6)
    assert loc.binary_auroc(heatmap, mask) == loc.auc_roc(heatmap, mask)


def test_auc_roc_is_nan_without_both_classes():
    heatmap = np.arange(9.0).reshape(3, 3)
    assert math.isnan(loc.auc_roc(heatmap, np.ones((3, 3), dtype=bool)))
    assert math.isnan(loc.auc_roc(heatmap, np.zeros((3, 3), dtype=bool)))


def test_inverted_map_scores_one_minus_auc():
    rng = np.random.default_rng(4)
    heatmap = rng.random((10, 10))
    mask = rng.random((10, 10)) < 0.4
    assert loc.auc_roc(-heatmap, mask) == pytest.approx(1.0 - loc.auc_roc(heatmap, mask), abs=1e-12)


# ----------------------------------------------------------------------------------------------- CNR
# 3x3 map, max 4 and min 0, so the normalized map is the map / 4:
#   [[1, 2, 0],        normalized  [[.25, .5, 0],
#    [0, 4, 0],                     [0,   1,  0],
#    [0, 0, 1]]                     [0,   0, .25]]
CNR_MAP = np.array([[1.0, 2.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 1.0]])
CNR_BOX_A = np.array([[False, True, False], [False, False, False], [False, False, False]])  # pixel (0, 1)
CNR_BOX_B = np.array([[False, False, False], [False, True, False], [False, False, False]])  # pixel (1, 1)


def test_cnr_seed_definition_by_hand():
    mask = CNR_BOX_A | CNR_BOX_B
    # inside {1/2, 1}: mean 3/4, sample variance ((1/4)^2 + (1/4)^2) / 1 = 1/8.
    # outside {1/4, 1/4, 0 x5}: mean 1/14, sum of squared deviations 1/8 - 7/196 = 5/56, / 6 = 5/336.
    expected = (3 / 4 - 1 / 14) / math.sqrt(1 / 8 + 5 / 336)
    assert loc.cnr(CNR_MAP, mask) == pytest.approx(expected, rel=1e-12)


def test_cnr_is_signed_and_scale_free():
    mask = CNR_BOX_A | CNR_BOX_B
    value = loc.cnr(CNR_MAP, mask)
    assert loc.cnr(-CNR_MAP, mask) == pytest.approx(-value, rel=1e-12)
    assert loc.cnr(3.0 * CNR_MAP + 7.0, mask) == pytest.approx(value, rel=1e-12)


def test_cnr_biovil_union_box_population_variances_by_hand():
    mask = CNR_BOX_A | CNR_BOX_B
    # population variances: inside 1/16, outside (5/56) / 7 = 5/392.
    expected = (3 / 4 - 1 / 14) / math.sqrt(1 / 16 + 5 / 392)
    assert loc.cnr_biovil(CNR_MAP, [mask]) == pytest.approx(expected, rel=1e-12)


def test_cnr_biovil_averages_over_boxes_by_hand():
    # box A: in {1/2}, var 0; out = other 8 pixels {1/4, 1/4, 1, 0 x5}: mean 3/16, var 9/64 - 9/256 = 27/256.
    ratio_a = (1 / 2 - 3 / 16) / math.sqrt(27 / 256)
    # box B: in {1}, var 0; out {1/4, 1/4, 1/2, 0 x5}: mean 1/8, var 3/64 - 1/64 = 1/32.
    ratio_b = (1 - 1 / 8) / math.sqrt(1 / 32)
    value = loc.cnr_biovil(CNR_MAP, [CNR_BOX_A, CNR_BOX_B])
    assert value == pytest.approx((ratio_a + ratio_b) / 2, rel=1e-12)
    assert loc.cnr_biovil(-CNR_MAP, [CNR_BOX_A, CNR_BOX_B]) == pytest.approx(value, rel=1e-12)  # unsigned


# -------------------------------------------------------------------------------------- pointing game
def test_pointing_game_hit_and_miss():
    heatmap = np.zeros((4, 5))
    heatmap[2, 3] = 1.0
    hit = np.zeros((4, 5), dtype=bool)
    hit[2, 3] = True
    assert loc.pointing_game(heatmap, hit) == 1.0
    assert loc.pointing_game(heatmap, ~hit) == 0.0


def test_pointing_game_ties_take_first_maximum_in_row_major_order():
    heatmap = np.zeros((3, 3))
    heatmap[0, 2] = heatmap[1, 0] = 5.0
    first = np.zeros((3, 3), dtype=bool)
    first[0, 2] = True
    assert loc.pointing_game(heatmap, first) == 1.0
    assert loc.pointing_game(heatmap, ~first) == 0.0


# ----------------------------------------------------------------------------------------------- GMM
def _bimodal_map(seed: int = 0) -> tuple[np.ndarray, tuple[float, float]]:
    rng = np.random.default_rng(seed)
    n = 80 * 80
    low = rng.normal(0.2, 0.05, size=int(0.7 * n))
    high = rng.normal(0.7, 0.08, size=n - low.size)
    values = np.concatenate([low, high])
    rng.shuffle(values)
    return values.reshape(80, 80), (0.2, 0.7)


def test_gmm_threshold_lies_near_midpoint_of_true_means():
    heatmap, (mu_low, mu_high) = _bimodal_map()
    low, high = heatmap.min(), heatmap.max()
    # The threshold lives on the min-max normalized scale.
    midpoint = ((mu_low - low) / (high - low) + (mu_high - low) / (high - low)) / 2
    assert loc.gmm_threshold(heatmap) == pytest.approx(midpoint, abs=0.01)


def test_gmm_fit_agrees_with_scikit_learn():
    mixture_module = pytest.importorskip("sklearn.mixture")
    heatmap, _ = _bimodal_map(seed=1)
    normalized = loc.normalize_heatmap(heatmap)
    reference = mixture_module.GaussianMixture(n_components=2, tol=1e-10, max_iter=2000, random_state=0)
    reference.fit(normalized.reshape(-1, 1))
    order = np.argsort(reference.means_.ravel())
    ours = loc.fit_gaussian_mixture_1d(normalized)
    assert ours is not None and ours.converged
    np.testing.assert_allclose(ours.means, reference.means_.ravel()[order], atol=1e-3)
    np.testing.assert_allclose(ours.weights, reference.weights_[order], atol=1e-3)
    np.testing.assert_allclose(ours.variances, reference.covariances_.ravel()[order], rtol=1e-2)
    assert loc.gmm_threshold(heatmap) == pytest.approx(float(np.mean(reference.means_)), abs=1e-3)


def test_gmm_separates_a_small_foreground():
    # 2% foreground: quantile-based initializations would start both components on the background.
    heatmap = np.zeros((50, 50))
    heatmap[10:15, 20:30] = 1.0
    mixture = loc.fit_gaussian_mixture_1d(heatmap)
    assert mixture is not None
    assert mixture.means == pytest.approx((0.0, 1.0), abs=1e-9)
    assert mixture.weights == pytest.approx((0.98, 0.02), abs=1e-9)
    assert loc.gmm_threshold(heatmap) == pytest.approx(0.5, abs=1e-9)


def test_constant_map_has_no_threshold_and_empty_binarization():
    heatmap = np.full((6, 6), 0.3)
    assert math.isnan(loc.gmm_threshold(heatmap))
    assert not loc.gmm_binarize(heatmap).any()


def test_gmm_binarize_removes_isolated_pixels_and_fills_holes():
    heatmap = np.zeros((20, 20))
    heatmap[4:12, 4:12] = 1.0
    heatmap[7, 7] = 0.0  # one-pixel hole
    heatmap[16, 2] = 1.0  # isolated pixel
    binary = loc.gmm_binarize(heatmap)
    expected = np.zeros((20, 20), dtype=bool)
    expected[4:12, 4:12] = True
    for r, c in [(4, 4), (4, 11), (11, 4), (11, 11)]:  # a 3x3 majority vote cuts convex corners (4/9)
        expected[r, c] = False
    np.testing.assert_array_equal(binary, expected)


def test_gmm_binarize_keeps_regions_touching_the_border():
    heatmap = np.zeros((10, 10))
    heatmap[:, :4] = 1.0
    binary = loc.gmm_binarize(heatmap)
    # mode="nearest": the image border does not erode the region (only its inner edge is a boundary).
    np.testing.assert_array_equal(binary, heatmap > 0.5)


# ------------------------------------------------------------------------------------------ IoU, mIoU
def test_ground_truth_mask_as_map_is_perfect():
    box = Box(5, 4, 8, 6)  # columns 5..12, rows 4..9
    mask = box_mask([box], 20, 20)
    heatmap = mask.astype(float)
    scores = loc.localization_scores(heatmap, [box], (20, 20))
    assert scores["auc_roc"] == 1.0
    assert scores["pointing_game"] == 1.0
    assert scores["miou_biovil"] == 1.0
    assert scores["bbox_iou"] == 1.0
    assert scores["centre_distance"] == pytest.approx(0.0, abs=1e-12)
    # The seed's 3x3 majority filter trims the four corners of the 48-pixel box.
    assert scores["iou_gmm"] == pytest.approx(44 / 48, abs=1e-12)
    assert scores["miou_gmm"] == pytest.approx((44 / 48 + 352 / 356) / 2, abs=1e-12)
    # zero variance inside and outside, contrast 1: an infinite contrast-to-noise ratio.
    assert scores["cnr"] == math.inf and scores["cnr_biovil"] == math.inf


def test_iou_gmm_blob_without_corners_is_perfect():
    mask = np.zeros((16, 16), dtype=bool)
    mask[4:10, 3:11] = True
    for r, c in [(4, 3), (4, 10), (9, 3), (9, 10)]:
        mask[r, c] = False  # a blob the majority filter leaves intact
    result = loc.iou_gmm(mask.astype(float), mask)
    assert result == {"iou": 1.0, "miou": 1.0}


def test_miou_biovil_by_hand():
    heatmap = np.array([[0.0, 0.15, 0.25, 0.35, 0.45], [0.55, 0.65, 0.75, 0.85, 1.0]])
    mask = np.array([[False] * 5, [True] * 5])
    # thresholds 0.1 ... 0.5 keep 9, 8, 7, 6, 5 pixels, all 5 mask pixels among them.
    expected = (5 / 9 + 5 / 8 + 5 / 7 + 5 / 6 + 5 / 5) / 5
    assert loc.miou_biovil(heatmap, mask) == pytest.approx(expected, abs=1e-12)
    assert loc.miou_biovil(heatmap, mask, thresholds=(0.5,)) == 1.0


# --------------------------------------------------------------------------------- bbox, centre
def _two_blob_map() -> np.ndarray:
    heatmap = np.zeros((20, 20))
    heatmap[5:10, 5:10] = 1.0  # 25 pixels, 21 after the majority filter
    heatmap[14:17, 14:17] = 1.0  # 9 pixels, 5 after the filter: the smaller component
    return heatmap


def test_bbox_iou_uses_largest_component_by_hand():
    box = Box(7, 5, 5, 5)  # columns 7..11, rows 5..9; predicted box columns 5..9, rows 5..9
    # intersection 3 x 5 = 15 pixels, union 25 + 25 - 15 = 35.
    assert loc.bbox_iou(_two_blob_map(), box) == pytest.approx(15 / 35, abs=1e-12)


def test_centre_distance_by_hand():
    box = Box(7, 5, 5, 5)  # centre (9.5, 7.5)
    # the large blob (corners trimmed symmetrically) has its centroid at pixel centre (7.5, 7.5).
    expected = 2.0 / math.hypot(20, 20)
    assert loc.centre_distance(_two_blob_map(), box) == pytest.approx(expected, abs=1e-12)


def test_largest_component_is_eight_connected():
    binary = np.zeros((5, 5), dtype=bool)
    binary[0, 0] = binary[1, 1] = binary[2, 2] = True  # diagonal chain: one 8-connected component
    binary[4, 0] = binary[4, 1] = True
    np.testing.assert_array_equal(loc.largest_component(binary), np.eye(5, dtype=bool) & (np.arange(5) < 3))


# ----------------------------------------------------------------------------------- all the scores
def test_localization_scores_keys_and_metadata():
    heatmap = np.random.default_rng(0).random((16, 16))
    scores = loc.localization_scores(heatmap, [Box(2, 2, 5, 5)], (16, 16))
    assert list(scores) == [
        "auc_roc", "cnr", "cnr_biovil", "pointing_game", "iou_gmm", "miou_gmm", "miou_biovil",
        "bbox_iou", "centre_distance",
    ]
    assert set(loc.LOCALIZATION_METRICS) == set(scores)
    for entry in loc.LOCALIZATION_METRICS.values():
        assert set(entry) == {"higher_is_better", "description", "reference"}
    assert loc.LOCALIZATION_METRICS["centre_distance"]["higher_is_better"] is False
    assert all(isinstance(v, float) for v in scores.values())


def test_localization_scores_agree_with_single_functions():
    rng = np.random.default_rng(5)
    heatmap = rng.random((24, 24))
    boxes = [Box(3, 3, 6, 6), Box(14, 10, 5, 8)]
    heatmap[3:9, 3:9] += 0.5
    mask = box_mask(boxes, 24, 24)
    scores = loc.localization_scores(heatmap, boxes, (24, 24))
    assert scores["auc_roc"] == loc.auc_roc(heatmap, mask)
    assert scores["cnr"] == pytest.approx(loc.cnr(heatmap, mask), rel=1e-12)
    assert scores["cnr_biovil"] == pytest.approx(
        loc.cnr_biovil(heatmap, [box_mask([b], 24, 24) for b in boxes]), rel=1e-12
    )
    assert scores["iou_gmm"] == loc.iou_gmm(heatmap, mask)["iou"]
    assert math.isnan(scores["bbox_iou"]) and math.isnan(scores["centre_distance"])  # two boxes


def test_localization_scores_rejects_shape_mismatch_naming_both_shapes():
    with pytest.raises(ValueError, match=r"\(8, 8\).*\(16, 16\)"):
        loc.localization_scores(np.zeros((8, 8)), [Box(1, 1, 2, 2)], (16, 16))
    with pytest.raises(ValueError, match="boxes"):
        loc.localization_scores(np.zeros((8, 8)), [], (8, 8))
    with pytest.raises(ValueError, match="mask"):
        loc.auc_roc(np.zeros((8, 8)), np.zeros((4, 4), dtype=bool))
    with pytest.raises(ValueError, match="finite"):
        loc.cnr(np.full((4, 4), np.nan), np.eye(4, dtype=bool))


def test_noise_maps_score_chance_with_a_covering_interval():
    rng = np.random.default_rng(7)
    box = Box(8, 10, 12, 9)
    mask = box_mask([box], 32, 32)
    aucs = [loc.auc_roc(rng.random((32, 32)), mask) for _ in range(100)]
    value, low, high = bootstrap_ci(aucs, n_boot=2000, seed=0)
    assert abs(value - 0.5) < 0.02
    assert low < 0.5 < high
    pointing = [loc.pointing_game(rng.random((32, 32)), mask) for _ in range(200)]
    assert abs(np.mean(pointing) - mask.mean()) < 0.1  # chance = area fraction (about 0.105)


# -------------------------------------------------------------------- through the core's scoring
def _scored_word_maps(make_map) -> dict:
    """Metrics of ``score_localization`` when a model answers every query of a small test set with
    ``make_map(finding_mask, rng)``."""
    from cxrbench.runner import localization_queries
    from cxrbench.scoring import Scores, score_localization
    from cxrbench.testing import tiny_samples

    _, test = tiny_samples(n_train=0, n_test=40, image_size=32, seed=3)
    by_id = {sample.id: sample for sample in test}
    queries = localization_queries(test)
    rng = np.random.default_rng(0)
    maps = []
    for query in queries:
        sample = by_id[query.sample_id]
        finding = next(f for f in sample.findings if f.label == query.label and f.phrase == query.phrase)
        maps.append({"word": make_map(box_mask(list(finding.boxes), *sample.image.shape), rng)})
    scores = Scores()
    score_localization(scores, queries, maps, by_id, seed=0)
    assert scores.metrics["loc_word_auc_roc"]["n"] == len(queries) >= 20
    return scores.metrics


# The ground-truth map has zero noise, so its CNR is infinite and numpy warns while bootstrapping it.
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_a_model_answering_with_the_ground_truth_mask_scores_perfectly():
    metrics = _scored_word_maps(lambda mask, rng: mask.astype(np.float32))
    for name in ("loc_word_auc_roc", "loc_word_pointing_game", "loc_word_miou_biovil"):
        entry = metrics[name]
        assert (entry["value"], entry["ci_low"], entry["ci_high"]) == (1.0, 1.0, 1.0), name
    assert metrics["loc_word_auc_roc_macro"]["value"] == 1.0


def test_a_noise_model_scores_chance_with_an_interval_covering_it():
    metrics = _scored_word_maps(lambda mask, rng: rng.random(mask.shape))
    auc = metrics["loc_word_auc_roc"]
    assert abs(auc["value"] - 0.5) < 0.03
    assert auc["ci_low"] < 0.5 < auc["ci_high"]
    assert metrics["loc_word_pointing_game"]["value"] < 0.5
