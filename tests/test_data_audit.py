"""Data audits (cxrbench/data/audit.py): global image statistics must not give a SynthCXR finding away;
class box priors, leave-one-out, on SynthCXR and on ChestX-ray14's boxes; ``cxrbench data audit``."""

from __future__ import annotations

import numpy as np
import pytest

from cxrbench.box_prior import class_box_priors
from cxrbench.data.audit import (
    GLOBAL_STATISTICS,
    baseline_on_test,
    cover_mask,
    dataset_prior_masks,
    global_statistic_auroc,
    global_statistics,
    leave_one_out_scores,
    nih_prior_masks,
    nih_table_path,
    pooled,
    prior_table,
)
from cxrbench.data.schema import FINDING_CLASSES, Box, Finding, Sample
from cxrbench.data.synthcxr import SynthCXR


def test_global_statistics_of_known_images():
    flat = global_statistics(np.full((8, 8), 0.25))
    assert flat["mean"] == pytest.approx(0.25) and flat["std"] == pytest.approx(0.0)
    assert flat["histogram_entropy"] == pytest.approx(0.0) and flat["gradient_energy"] == pytest.approx(0.0)
    half = np.zeros((8, 8))
    half[:, 4:] = 1.0
    stats = global_statistics(half)
    assert stats["bright_fraction"] == pytest.approx(0.5)
    assert stats["histogram_entropy"] == pytest.approx(np.log(2.0))
    assert set(stats) == set(GLOBAL_STATISTICS)


def _sample(i: int, label: str | None, brightness: float, rng: np.random.Generator) -> Sample:
    image = np.clip(brightness + 0.05 * rng.standard_normal((16, 16)), 0, 1)
    findings = (Finding(label, "x", (Box(1, 1, 2, 2),)),) if label else ()
    return Sample(f"s{i}", image, "report", "train", findings)


def test_a_finding_that_brightens_the_film_is_caught_and_one_that_does_not_is_not():
    rng = np.random.default_rng(0)
    samples = [_sample(i, None, 0.5, rng) for i in range(30)]
    samples += [_sample(100 + i, "Edema", 0.7, rng) for i in range(30)]  # a global give-away
    samples += [_sample(200 + i, "Pneumothorax", 0.5, rng) for i in range(30)]  # same distribution
    table = global_statistic_auroc(samples)
    assert table["Edema"]["best"] == pytest.approx(1.0)
    assert table["Pneumothorax"]["best"] < 0.75
    assert "Cardiomegaly" not in table  # no positive studies


@pytest.mark.slow
def test_synthcxr_findings_are_not_given_away_by_one_global_statistic():
    table = global_statistic_auroc(SynthCXR(n_train=480, n_test=0, image_size=64, seed=5).split("train"))
    assert len(table) == 8
    for cls, row in table.items():
        assert row["best"] < 0.8, (cls, row["best_statistic"], row["best"])


# --- box prior: leave-one-out class priors ----------------------------------------------------------


def test_cover_mask_rounds_edges_outwards_and_clips():
    mask = cover_mask([(10.0, 20.0, 30.0, 5.0)], 0.1, grid=8)  # cells x 1..4 (1.0 to 4.0), y 2..2.5 -> row 2
    assert mask.sum() == 3 and mask[2, 1:4].all()
    mask = cover_mask([(15.0, 15.0, 1.0, 1.0)], 0.1, grid=8)  # inside one cell
    assert mask.sum() == 1 and mask[1, 1]
    assert cover_mask([(-5.0, 70.0, 20.0, 50.0)], 0.1, grid=8)[7:, :2].all()  # clipped to the grid


def test_leave_one_out_scores_of_known_layouts():
    same = [cover_mask([(1, 1, 3, 3)], 1.0, grid=8)] * 3
    aucs, points = leave_one_out_scores(same)
    assert np.allclose(aucs, 1.0) and np.allclose(points, 1.0)
    # Two places, 2 masks at one and 4 at the other: without it, a mask of the rarer place sees 1 mask at
    # its own pixels and 4 at the 4 pixels of the other place, so it points there, and its pixels rank
    # above the 56 empty pixels only (AUC 56 / 60); the common place's masks point at themselves.
    left, right = cover_mask([(0, 0, 2, 2)], 1.0, grid=8), cover_mask([(5, 5, 2, 2)], 1.0, grid=8)
    aucs, points = leave_one_out_scores([left, left, right, right, right, right])
    assert np.array_equal(points, [0, 0, 1, 1, 1, 1])
    assert np.allclose(aucs, [56 / 60] * 2 + [1.0] * 4)


def test_prior_table_and_pooled_figures():
    a, b = cover_mask([(0, 0, 2, 2)], 1.0, grid=8), cover_mask([(4, 4, 2, 2)], 1.0, grid=8)
    masks = {"A": [a, a], "B": [b]}
    table = prior_table(masks)
    assert set(table) == {"A"}  # one mask has no leave-one-out prior
    assert table["A"]["n"] == 2 and pooled(table)["n"] == 2 and pooled(table, ["B"])["n"] == 0


@pytest.mark.skipif(nih_table_path() is None, reason="ChestX-ray14's box table comes with torchxrayvision")
def test_chestxray14_figures_match_the_published_method():
    """984 radiologist boxes at 64 px: AUC 0.864 and pointing 0.420 over all, per label as in the docs."""
    table = prior_table(nih_prior_masks(nih_table_path()))
    assert pooled(table)["n"] == 984
    assert pooled(table)["auc"] == pytest.approx(0.864, abs=5e-4)
    assert pooled(table)["pointing"] == pytest.approx(0.420, abs=5e-4)
    assert table["Cardiomegaly"]["auc"] == pytest.approx(0.968, abs=5e-4)
    assert table["Nodule"]["pointing"] == 0.0


@pytest.fixture(scope="module")
def v3() -> SynthCXR:
    return SynthCXR(n_train=480, n_test=80, image_size=64, seed=5)


@pytest.mark.slow
def test_synthcxr_positions_vary_like_real_films(v3):
    """The class box priors predict SynthCXR's boxes about as well as ChestX-ray14's (0.864 / 0.420 over
    all; SynthCXR v2, with findings in fixed zones, gave 0.934 / 0.532)."""
    table = prior_table(dataset_prior_masks(v3.split("train")))
    assert set(table) == set(FINDING_CLASSES)
    overall = pooled(table)
    assert 0.83 < overall["auc"] < 0.9 and 0.3 < overall["pointing"] < 0.52, overall
    assert table["Cardiomegaly"]["auc"] > 0.95  # the heart stays where it is
    for label in ("Atelectasis", "Pleural Effusion", "Pneumothorax", "Edema"):  # no longer in fixed places
        assert table[label]["auc"] < 0.93, (label, table[label]["auc"])


@pytest.mark.slow
def test_baseline_on_test_is_what_the_track_scores(v3):
    """The box-prior model's maps scored by the benchmark's localization metrics give the same figures."""
    from cxrbench.box_prior import BoxPriorModel
    from cxrbench.metrics.localization import localization_scores
    from cxrbench.model import ExtractionConfig, LocalizationQuery

    train, test = v3.split("train"), v3.split("test")
    model = BoxPriorModel()
    model.priors, model.image_size = class_box_priors(train, 64), 64
    pairs = [(s, f) for s in test for f in s.findings]
    queries = [LocalizationQuery(s.id, s.report, f.phrase, f.label, ()) for s, f in pairs]
    maps = model.localize([s.image for s, _ in pairs], queries, ExtractionConfig(timesteps=(1,)))
    scores = [localization_scores(m["word"], list(f.boxes), s.image.shape) for m, (s, f) in zip(maps, pairs)]
    figures = pooled(baseline_on_test(train, test))
    assert figures["n"] == len(pairs)
    assert figures["auc"] == pytest.approx(np.mean([x["auc_roc"] for x in scores]))
    assert figures["pointing"] == pytest.approx(np.mean([x["pointing_game"] for x in scores]))


@pytest.mark.slow
def test_cli_prints_both_sides_and_says_when_the_real_table_is_missing(monkeypatch, capsys):
    from cxrbench import cli
    from cxrbench.data import audit

    assert cli.main(["data", "audit", "--n-train", "80", "--n-test", "16", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "| Pneumothorax" in out and "| all" in out and "n_train=80" in out
    assert "| synthcxr n" in out  # the dataset's own name heads its columns, not a class's
    if nih_table_path() is not None:
        assert "| Effusion" in out and "| 984" in out and "synthcxr minus ChestX-ray14" in out
    monkeypatch.setattr(audit, "nih_table_path", lambda: None)
    assert cli.main(["data", "audit", "--n-train", "80", "--n-test", "0"]) == 0
    out = capsys.readouterr().out
    assert "not available" in out and "pip install torchxrayvision" in out
    assert "| Pneumothorax" in out and "| 984" not in out
