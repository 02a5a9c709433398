"""A box that covers no pixel centre: every localization metric scores it on the pixel containing its centre."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from cxrbench.data.schema import Box, box_mask
from cxrbench.metrics import localization as loc

SHAPE = (16, 16)
#: Lies between the centres of rows/columns 4 and 5: ``box_mask`` leaves it empty; its centre is in pixel (4, 4).
TINY = Box(4.55, 4.55, 0.3, 0.3)
#: The one pixel that contains TINY's centre, as an ordinary box.
TINY_PIXEL = Box(4.0, 4.0, 1.0, 1.0)
LARGE = Box(9.0, 2.0, 5.0, 6.0)


def blob(row: float, col: float) -> np.ndarray:
    rows, cols = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]]
    return np.exp(-((rows - row) ** 2 + (cols - col) ** 2) / 4.0)


def test_the_tiny_box_covers_no_pixel_centre_but_box_pixels_gives_it_its_centre_pixel():
    assert not box_mask([TINY], *SHAPE).any()
    assert loc.boxes_without_pixel([TINY, LARGE], *SHAPE) == 1
    expected = np.zeros(SHAPE, dtype=bool)
    expected[4, 4] = True
    np.testing.assert_array_equal(loc.box_pixels([TINY], *SHAPE), expected)


def test_every_metric_scores_a_tiny_box_as_the_pixel_containing_its_centre():
    heatmap = blob(4.0, 4.0) + 0.3 * blob(11.0, 11.0)
    for boxes, as_pixel in (([TINY], [TINY_PIXEL]), ([LARGE, TINY], [LARGE, TINY_PIXEL])):
        tiny = loc.localization_scores(heatmap, boxes, SHAPE)
        pixel = loc.localization_scores(heatmap, as_pixel, SHAPE)
        # centre_distance measures to the box's own centre, which differs from the pixel's by design.
        for name in set(loc.LOCALIZATION_METRICS) - {"centre_distance"}:
            assert tiny[name] == pixel[name] or (math.isnan(tiny[name]) and math.isnan(pixel[name])), name
    single = loc.localization_scores(heatmap, [TINY], SHAPE)
    assert single["pointing_game"] == 1.0  # the map's peak is the box's pixel
    assert single["auc_roc"] > 0.9 and single["cnr_biovil"] > 0.0
    assert single["bbox_iou"] > 0.0 and math.isfinite(single["centre_distance"])


def test_ordinary_boxes_are_unchanged():
    rng = np.random.default_rng(0)
    heatmap = rng.random(SHAPE)
    for _ in range(20):
        x, y = rng.uniform(0, 12, size=2)
        w, h = rng.uniform(1, 4, size=2)
        box = Box(float(x), float(y), float(w), float(h))
        mask = box_mask([box], *SHAPE)
        np.testing.assert_array_equal(loc.box_pixels([box], *SHAPE), mask)
        scores = loc.localization_scores(heatmap, [box], SHAPE)
        assert scores["auc_roc"] == loc.auc_roc(heatmap, mask)
        assert scores["pointing_game"] == loc.pointing_game(heatmap, mask)
        assert scores["cnr_biovil"] == loc.cnr_biovil(heatmap, [mask])


def _score(test, make_map):
    from cxrbench.runner import localization_queries
    from cxrbench.scoring import Scores, score_localization

    by_id = {sample.id: sample for sample in test}
    queries = localization_queries(test)
    maps = [{"word": make_map(by_id[q.sample_id])} for q in queries]
    scores = Scores()
    score_localization(scores, queries, maps, by_id, seed=0)
    return scores, queries


def test_a_run_counts_the_queries_with_a_tiny_box_and_scores_them_without_zeros():
    from cxrbench.testing import tiny_samples

    _, test = tiny_samples(n_train=0, n_test=12, image_size=16, seed=3)
    index = next(i for i, s in enumerate(test) if any(f.boxes for f in s.findings))
    sample = test[index]
    findings = tuple(dataclasses.replace(f, boxes=(TINY,)) if f.boxes else f for f in sample.findings)
    changed = sum(1 for f in findings if f.boxes)
    test[index] = dataclasses.replace(sample, findings=findings)

    scores, queries = _score(test, lambda s: blob(4.0, 4.0))
    note = f"{changed} of {len(queries)} queries have a box that covers no pixel centre"
    for name, entry in scores.metrics.items():
        if name.startswith("loc_"):
            assert note in entry.get("note", ""), name
    for line in scores.per_sample:
        if line["sample_id"] == sample.id:
            assert line["metrics"]["loc_word_pointing_game"] == 1.0
            assert math.isfinite(line["metrics"]["loc_word_auc_roc"])

    plain, _ = _score(tiny_samples(n_train=0, n_test=12, image_size=16, seed=3)[1], lambda s: blob(4.0, 4.0))
    assert all("note" not in entry for name, entry in plain.metrics.items() if name.startswith("loc_"))
