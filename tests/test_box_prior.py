"""The box-prior baseline: its maps by hand, the model contract, and a run through the protocol."""

from __future__ import annotations

import numpy as np
import pytest

from cxrbench.box_prior import BoxPriorModel, class_box_priors, resize_map
from cxrbench.data.schema import Box, Finding, Sample, box_mask
from cxrbench.model import LOCALIZE, ExtractionConfig, FitContext, LocalizationQuery, TrainingBudget
from cxrbench.protocol import get_track
from cxrbench.registry import build_registry
from cxrbench.results import load_result, validation_errors
from cxrbench.runner import run_benchmark
from cxrbench.testing import assert_model_compliant


def _sample(sample_id: str, size: int, *findings: Finding) -> Sample:
    return Sample(sample_id, np.zeros((size, size), dtype=np.float32), "report", "train", tuple(findings))


def test_priors_are_mean_masks_per_class_by_hand():
    train = [
        _sample("a", 8, Finding("Pneumothorax", "left pneumothorax", (Box(0, 0, 4, 4),))),
        # two boxes of one finding count once, as their union
        _sample("b", 8, Finding("Pneumothorax", "pneumothoraces", (Box(0, 0, 2, 2), Box(4, 4, 4, 4)))),
        _sample("c", 8, Finding("Edema", "edema", ()), Finding("No Finding", "no effusion", ())),
        # a 16 px image: its box is scaled to the 8 px grid (rows and columns 2..5)
        _sample("d", 16, Finding("Cardiomegaly", "cardiomegaly", (Box(4, 4, 8, 8),))),
    ]
    priors = class_box_priors(train, 8)
    assert sorted(priors) == ["Cardiomegaly", "Pneumothorax"]  # classes without boxes have no prior
    first = box_mask([Box(0, 0, 4, 4)], 8, 8).astype(float)
    second = box_mask([Box(0, 0, 2, 2), Box(4, 4, 4, 4)], 8, 8).astype(float)
    np.testing.assert_array_equal(priors["Pneumothorax"], (first + second) / 2)
    assert priors["Pneumothorax"][0, 0] == 1.0 and priors["Pneumothorax"][3, 3] == 0.5
    np.testing.assert_array_equal(priors["Cardiomegaly"], box_mask([Box(2, 2, 4, 4)], 8, 8))
    assert priors["Pneumothorax"].dtype == np.float32


def test_localize_returns_the_class_prior_resized_to_the_image(tmp_path):
    model = BoxPriorModel()
    train = [_sample("a", 8, Finding("Edema", "edema", (Box(0, 0, 4, 8),)))]
    model.fit(train, TrainingBudget(1, 1, 1e-3, 1e-3), FitContext(seed=0, workdir=tmp_path, image_size=8))
    queries = [LocalizationQuery("x", "Edema.", "edema", "Edema", ("edema",)),
               LocalizationQuery("y", "Pneumonia.", "pneumonia", "Pneumonia", ("pneumonia",))]
    images = np.zeros((2, 8, 8), dtype=np.float32)
    maps = model.localize(images, queries, ExtractionConfig(timesteps=(1,)))
    assert [sorted(m) for m in maps] == [["word"], ["word"]]  # no token groups: it reads no prompt
    np.testing.assert_array_equal(maps[0]["word"], box_mask([Box(0, 0, 4, 8)], 8, 8))
    assert not maps[1]["word"].any()  # no training box of the class: a constant map (chance)
    larger = model.localize(np.zeros((1, 16, 16)), queries[:1], ExtractionConfig(timesteps=(1,)))[0]["word"]
    assert larger.shape == (16, 16)
    assert larger[:, :6].min() == pytest.approx(1.0) and larger[:, 10:].max() == pytest.approx(0.0)
    np.testing.assert_array_equal(resize_map(maps[0]["word"], (8, 8)), maps[0]["word"])


def test_box_prior_is_a_compliant_localize_only_baseline():
    assert_model_compliant(BoxPriorModel)
    assert BoxPriorModel.capabilities == frozenset({LOCALIZE})
    assert BoxPriorModel.baseline == "box prior (train)"
    assert build_registry().model("box-prior").plugin.distribution == "cxrbench"


def test_box_prior_through_the_protocol_on_the_smoke_track(tmp_path):
    [outcome] = run_benchmark(["box-prior"], get_track("smoke"), [0], tmp_path / "results", tmp_path / "work",
                              show_progress=False)
    assert outcome.status == "ok", outcome.error
    record = load_result(outcome.result_path)
    assert validation_errors(record) == []
    assert record["plugin"]["baseline"] == "box prior (train)"
    assert record["plugin"]["capabilities"] == ["localize"]
    metrics = record["metrics"]
    assert not any(name.startswith(("fid_", "kid_", "precision_", "recall_", "ms_ssim")) for name in metrics)
    assert {name.split("_")[1] for name in metrics} == {"word"}
    auc = metrics["loc_word_auc_roc"]
    assert auc["value"] > 0.5 and auc["ci_low"] <= auc["value"] <= auc["ci_high"]
    assert "pointing_game" in " ".join(metrics) and "miou_gmm" in " ".join(metrics)
    assert record["timings"]["total_s"] < 60
