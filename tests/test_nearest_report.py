"""The nearest-report baseline: TF-IDF by hand, retrieval and tie-breaks, the contract, a protocol run."""

from __future__ import annotations

import math
import re
from collections import Counter

import numpy as np
import pytest

from cxrbench.box_prior import resize_map
from cxrbench.data.schema import Sample
from cxrbench.data.synthcxr import SynthCXR
from cxrbench.model import GENERATE, FitContext, SamplerConfig, TrainingBudget
from cxrbench.nearest_report import NearestReportModel
from cxrbench.protocol import get_track
from cxrbench.registry import build_registry
from cxrbench.results import load_result, validation_errors
from cxrbench.runner import run_benchmark
from cxrbench.testing import assert_model_compliant

BUDGET = TrainingBudget(steps=1, batch_size=1, unet_learning_rate=1e-3, text_encoder_learning_rate=1e-3)
SAMPLER = SamplerConfig(steps=1)
SIZE = 32


def fitted(train, tmp_path, image_size=SIZE) -> NearestReportModel:
    model = NearestReportModel()
    model.fit(train, BUDGET, FitContext(seed=0, workdir=tmp_path, image_size=image_size))
    return model


@pytest.fixture(scope="module")
def train() -> list[Sample]:
    return SynthCXR(n_train=48, n_test=16, image_size=SIZE, seed=0).split("train")


@pytest.fixture(scope="module")
def model(train, tmp_path_factory) -> NearestReportModel:
    return fitted(train, tmp_path_factory.mktemp("fit"))


def matching(image: np.ndarray, train: list[Sample]) -> list[int]:
    """Indices of the training images pixel-equal to ``image``."""
    return [i for i, s in enumerate(train) if np.array_equal(s.image.astype(np.float32), image)]


def test_similarities_are_tfidf_cosines_by_hand(tmp_path):
    reports = ["Left effusion.", "Right effusion.", "Left effusion, left base."]
    train = [Sample(str(i), np.zeros((4, 4), np.float32), r, "train") for i, r in enumerate(reports)]
    model = fitted(train, tmp_path, image_size=4)
    # Terms (unigrams + bigrams) and document frequencies over the 3 reports, written out by hand.
    docs = [
        Counter({"left": 1, "effusion": 1, "left effusion": 1}),
        Counter({"right": 1, "effusion": 1, "right effusion": 1}),
        Counter({"left": 2, "effusion": 1, "base": 1, "left effusion": 1, "effusion left": 1,
                 "left base": 1}),
    ]
    df = {"left": 2, "effusion": 3, "left effusion": 2, "right": 1, "right effusion": 1, "base": 1,
          "effusion left": 1, "left base": 1}
    assert sorted(model.vocabulary.tolist()) == sorted(df) == model.vocabulary.tolist()
    idf = {t: math.log(4 / (1 + d)) + 1 for t, d in df.items()}

    def unit(counts):
        vector = {t: k * idf[t] for t, k in counts.items() if t in idf}
        norm = math.sqrt(sum(v * v for v in vector.values()))
        return {t: v / norm for t, v in vector.items()}

    rows = [unit(d) for d in docs]
    # "LEFT effusion (effusion)" = left x1, effusion x2, "left effusion" x1, "effusion effusion" is unknown.
    query = unit(Counter({"left": 1, "effusion": 2, "left effusion": 1, "effusion effusion": 1}))
    expected = [sum(query.get(t, 0.0) * v for t, v in row.items()) for row in rows]
    np.testing.assert_allclose(model.similarities("LEFT effusion (effusion)"), expected, rtol=1e-12)
    np.testing.assert_allclose(model.similarities(reports[2]), [
        sum(rows[2].get(t, 0.0) * v for t, v in row.items()) for row in rows], rtol=1e-12)
    assert model.similarities(reports[0])[0] == pytest.approx(1.0)
    assert model.candidates("left effusion").tolist() == [0]
    assert model.candidates("no known word 123").tolist() == [0, 1, 2]  # zero vector: everyone ties
    assert model.candidates("").tolist() == [0, 1, 2]


def test_a_training_report_returns_a_training_image_with_that_report(model, train):
    prompts = [s.report for s in train]
    images = model.generate(prompts, list(range(len(prompts))), SIZE, SAMPLER)
    for prompt, image in zip(prompts, images):
        hits = matching(image, train)
        assert hits and all(train[i].report == prompt for i in hits), prompt


def test_a_word_of_only_one_report_retrieves_that_report_s_image(model, train):
    words = [re.findall(r"[a-z]+", s.report.lower()) for s in train]
    df = Counter(w for ws in words for w in set(ws))
    index, word = next((i, w) for i, ws in enumerate(words) for w in ws if df[w] == 1)
    # the rare word among unknown ones: only that report shares a term with the prompt
    image = model.generate([f"zzz {word.upper()} qqq"], [123], SIZE, SAMPLER)[0]
    np.testing.assert_array_equal(image, train[index].image)


def test_the_same_prompt_and_seed_give_the_same_image_in_any_batch(model, train):
    prompts = [train[0].report, "Mild cardiomegaly.", "Mild cardiomegaly.", "zzz words", train[5].report]
    seeds = [11, 3, 4, 5, 99]
    batch = model.generate(prompts, seeds, SIZE, SAMPLER)
    for k in range(len(prompts)):
        np.testing.assert_array_equal(model.generate([prompts[k]], [seeds[k]], SIZE, SAMPLER)[0], batch[k])
    np.testing.assert_array_equal(model.generate(prompts[::-1], seeds[::-1], SIZE, SAMPLER), batch[::-1])


def test_seeds_of_a_repeated_report_spread_over_its_tied_images(model, train):
    tied = [i for i, s in enumerate(train) if s.report == "Mild cardiomegaly."]
    assert len(tied) == 2  # SynthCXR(48, seed 0) repeats this report
    assert not np.array_equal(train[tied[0]].image, train[tied[1]].image)
    images = model.generate(["Mild cardiomegaly."] * 16, list(range(16)), SIZE, SAMPLER)
    chosen = [matching(image, train) for image in images]
    assert all(hits and set(hits) <= set(tied) for hits in chosen)
    assert {hits[0] for hits in chosen} == set(tied)
    for seed in range(16):  # the pick is rng(seed).integers(#candidates) among the tied, in training order
        expected = tied[int(np.random.default_rng(seed).integers(len(tied)))]
        np.testing.assert_array_equal(images[seed], train[expected].image)


def test_a_prompt_without_known_words_draws_from_all_training_images(model, train):
    images = model.generate(["zzz qqq"] * 24, list(range(24)), SIZE, SAMPLER)
    picked = {matching(image, train)[0] for image in images}
    assert len(picked) > 12  # 24 draws from 48 images


def test_output_contract_and_resizing(train, tmp_path):
    model = fitted(train, tmp_path, image_size=16)  # the 32 px training images are stored at 16 px
    assert model.images.shape == (len(train), 16, 16) and model.images.dtype == np.float32
    images = model.generate([train[3].report, "zzz"], [0, 1], 16, SAMPLER)
    assert images.shape == (2, 16, 16) and images.dtype == np.float32
    assert np.isfinite(images).all() and images.min() >= 0.0 and images.max() <= 1.0
    np.testing.assert_allclose(images[0], resize_map(train[3].image, (16, 16)), atol=1e-6)
    larger = model.generate([train[3].report], [0], 24, SAMPLER)  # another size: resized again
    assert larger.shape == (1, 24, 24) and larger.dtype == np.float32


def test_save_and_load_round_trip(model, train, tmp_path):
    assert NearestReportModel().load(tmp_path / "absent") is False
    assert model.save(tmp_path / "fit") is True
    assert [p.name for p in (tmp_path / "fit").iterdir()] == ["nearest_report.npz"]
    loaded = NearestReportModel()
    assert loaded.load(tmp_path / "fit") is True
    prompts = [s.report for s in train[:10]] + ["Mild cardiomegaly."] * 4 + ["zzz", "left effusion"]
    seeds = list(range(len(prompts)))
    np.testing.assert_array_equal(loaded.generate(prompts, seeds, SIZE, SAMPLER),
                                  model.generate(prompts, seeds, SIZE, SAMPLER))


def test_nearest_report_is_a_compliant_generate_only_baseline():
    assert_model_compliant(NearestReportModel)
    assert NearestReportModel.capabilities == frozenset({GENERATE})
    assert NearestReportModel.baseline == "nearest training image"
    entry = build_registry().model("nearest-report")
    assert entry.capabilities == ("generate",) and entry.plugin.distribution == "cxrbench"


@pytest.mark.slow
def test_nearest_report_through_the_protocol_on_the_smoke_track(tmp_path, train):
    [outcome] = run_benchmark(["nearest-report"], get_track("smoke"), [0], tmp_path / "results",
                              tmp_path / "work", show_progress=False)
    assert outcome.status == "ok", outcome.error
    record = load_result(outcome.result_path)
    assert validation_errors(record) == []
    assert record["plugin"]["baseline"] == "nearest training image"
    assert record["plugin"]["capabilities"] == ["generate"]
    metrics = record["metrics"]
    assert not any(name.startswith("loc_") for name in metrics)
    fid = metrics["fid_domain"]
    assert fid["value"] is not None and math.isfinite(fid["value"]) and fid["value"] >= 0
    assert "ms_ssim_within_prompt" in metrics and "cond_auroc" in metrics
    # every generated image is a training image (the smoke track's data is the fixture's)
    [generated] = list((tmp_path / "work").glob("*/generated.npz"))
    images = np.load(generated)["images"]
    assert images.shape == (16, 32, 32) and all(matching(image, train) for image in images)
    assert record["timings"]["total_s"] < 60
