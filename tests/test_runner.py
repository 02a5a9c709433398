"""The protocol end to end with the tiny dummy model: stages, results, failures, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cxrbench.model import GENERATE
from cxrbench.protocol import get_track
from cxrbench.results import load_result, validation_errors
from cxrbench.runner import localization_queries, run_benchmark, summary_table
from cxrbench.testing import DummyModel, assert_model_compliant, registry_with

SMOKE = get_track("smoke")


class ExplodingModel(DummyModel):
    model_id = "exploding"

    def localize(self, images, queries, extraction):
        raise RuntimeError("attention store is empty")


class GenerateOnlyModel(DummyModel):
    model_id = "generate-only"
    capabilities = frozenset({GENERATE})


class CountingModel(DummyModel):
    model_id = "counting"
    fits = 0
    generates = 0

    def fit(self, train, budget, context):
        type(self).fits += 1
        super().fit(train, budget, context)

    def generate(self, prompts, seeds, image_size, sampler):
        type(self).generates += 1
        return super().generate(prompts, seeds, image_size, sampler)


@pytest.fixture
def registry():
    return registry_with(DummyModel, ExplodingModel, GenerateOnlyModel, CountingModel)


def test_dummy_model_is_compliant():
    assert_model_compliant(DummyModel)


@pytest.mark.slow
def test_smoke_run_writes_a_valid_result_with_every_headline_metric(tmp_path, registry):
    [outcome] = run_benchmark(["dummy"], SMOKE, [0], tmp_path / "results", tmp_path / "work", registry=registry,
                              show_progress=False)
    assert outcome.status == "ok", outcome.error
    record = load_result(outcome.result_path)
    assert validation_errors(record) == []
    m = record["metrics"]
    for name in ("fid_domain", "kid_domain", "ms_ssim_within_prompt", "cond_auroc", "loc_word_auc_roc",
                 "loc_word_pointing_game", "loc_word_cnr", "loc_word_miou_gmm", "loc_eos_auc_roc",
                 "loc_word_auc_roc_macro"):
        assert name in m, name
    assert m["fid_domain"]["higher_is_better"] is False and m["loc_word_auc_roc"]["higher_is_better"] is True
    assert record["dataset"]["fingerprint"] and record["evaluators"]["domain"]["sha256"]
    assert record["plugin"]["distribution"] == "cxrbench" and record["plugin"]["config"] == {"noise": 0.05}
    lines = (outcome.result_path.parent / record["per_sample_file"]).read_text().splitlines()
    assert len(lines) == m["loc_word_auc_roc"]["n"] > 0
    first = json.loads(lines[0])
    assert set(first) == {"sample_id", "label", "phrase", "metrics"}
    # The box prior covers where boxes of a class usually are: better than chance on average.
    assert m["loc_word_auc_roc"]["value"] > 0.5
    assert m["loc_word_auc_roc"]["ci_low"] <= m["loc_word_auc_roc"]["value"] <= m["loc_word_auc_roc"]["ci_high"]


@pytest.mark.slow
def test_failing_model_is_recorded_and_does_not_stop_the_others(tmp_path, registry):
    outcomes = run_benchmark(["exploding", "dummy"], SMOKE, [0], tmp_path / "r", tmp_path / "w",
                             registry=registry, show_progress=False)
    assert [o.status for o in outcomes] == ["failed", "ok"]
    failed = load_result(outcomes[0].result_path)
    assert validation_errors(failed) == []
    assert failed["error"]["stage"] == "localize"
    assert failed["error"]["message"] == "attention store is empty"
    assert (tmp_path / "w" / "exploding__smoke__seed0" / "error.log").exists()
    assert "exploding" in summary_table(outcomes) and "failed" in summary_table(outcomes)


@pytest.mark.slow
def test_model_without_localize_gets_fidelity_only(tmp_path, registry):
    [outcome] = run_benchmark(["generate-only"], SMOKE, [0], tmp_path / "r", tmp_path / "w", registry=registry,
                              show_progress=False)
    record = load_result(outcome.result_path)
    assert record["metrics"]["fid_domain"]["value"] is not None
    assert not any(name.startswith("loc_") for name in record["metrics"])


@pytest.mark.slow
def test_rerun_continues_from_finished_stages(tmp_path, registry):
    CountingModel.fits = CountingModel.generates = 0
    args = (["counting"], SMOKE, [0], tmp_path / "r", tmp_path / "w")
    [first] = run_benchmark(*args, registry=registry, show_progress=False)
    assert (CountingModel.fits, CountingModel.generates) == (1, 1)
    # A finished result is reused as is.
    [again] = run_benchmark(*args, registry=registry, show_progress=False)
    assert again.reused == ["result"] and CountingModel.fits == 1
    # Interrupted after generate: the result is gone, the fit and generation artifacts are reused.
    first.result_path.unlink()
    (tmp_path / "w" / "counting__smoke__seed0" / "maps.npz").unlink()
    [resumed] = run_benchmark(*args, registry=registry, show_progress=False)
    assert resumed.status == "ok"
    assert CountingModel.generates == 1 and CountingModel.fits == 1  # loaded from the fit checkpoint
    assert resumed.reused == ["generate", "fit"]
    assert load_result(resumed.result_path)["metrics"]["loc_word_auc_roc"] == first.metrics["loc_word_auc_roc"]


@pytest.mark.slow
def test_results_do_not_depend_on_chunking(tmp_path, registry, monkeypatch):
    [a] = run_benchmark(["dummy"], SMOKE, [0], tmp_path / "a", tmp_path / "wa", registry=registry, show_progress=False)
    monkeypatch.setattr("cxrbench.runner.GENERATION_CHUNK", 3)
    monkeypatch.setattr("cxrbench.runner.LOCALIZATION_CHUNK", 5)
    [b] = run_benchmark(["dummy"], SMOKE, [0], tmp_path / "b", tmp_path / "wb", registry=registry, show_progress=False)
    ga = np.load(tmp_path / "wa" / "dummy__smoke__seed0" / "generated.npz")["images"]
    gb = np.load(tmp_path / "wb" / "dummy__smoke__seed0" / "generated.npz")["images"]
    np.testing.assert_array_equal(ga, gb)
    assert a.metrics == b.metrics


def test_every_localization_query_has_a_box_and_a_query_word_in_its_phrase():
    from cxrbench.testing import tiny_samples

    _, test = tiny_samples(n_train=0, n_test=12)
    queries = localization_queries(test)
    assert queries
    for q in queries:
        assert any(w in q.phrase.lower() for w in q.query_words), q


def test_invalid_options_fail_before_anything_runs(tmp_path, registry):
    from cxrbench.errors import ProtocolError

    with pytest.raises(ProtocolError, match=r"options of model 'dummy' are not valid: bogus: Extra inputs"):
        run_benchmark(["dummy"], SMOKE, [0], tmp_path / "r", tmp_path / "w", options={"dummy": {"bogus": 1}},
                      registry=registry, show_progress=False)
    with pytest.raises(ProtocolError, match="not among the models run"):
        run_benchmark(["dummy"], SMOKE, [0], tmp_path / "r", tmp_path / "w", options={"exploding": {}},
                      registry=registry, show_progress=False)
    assert not (tmp_path / "r").exists() or not list((tmp_path / "r").iterdir())


@pytest.mark.slow
def test_runs_in_two_worker_processes_give_the_results_of_one_process(tmp_path):
    """--jobs 2: the built-in baselines (no plugin needed in the workers) in two processes, same metrics."""
    from cxrbench.errors import ProtocolError

    track = get_track("smoke")
    models = ["box-prior", "nearest-report"]
    serial = run_benchmark(models, track, [0], tmp_path / "one", tmp_path / "w1", show_progress=False)
    parallel = run_benchmark(models, track, [0], tmp_path / "two", tmp_path / "w2", show_progress=False, jobs=2)
    assert [(o.model, o.seed, o.status) for o in parallel] == [(m, 0, "ok") for m in models]  # task order
    for a, b in zip(serial, parallel):
        assert a.result_path.parent != b.result_path.parent
        metrics_a, metrics_b = load_result(a.result_path)["metrics"], load_result(b.result_path)["metrics"]
        assert metrics_a.keys() == metrics_b.keys() and metrics_a
        for name in metrics_a:
            value_a, value_b = metrics_a[name]["value"], metrics_b[name]["value"]
            if value_a is None or value_b is None:  # unavailable (e.g. an extractor without weights): in both
                assert value_a is None and value_b is None, name
                continue
            assert value_a == pytest.approx(value_b, rel=1e-6, abs=1e-9), name
    with pytest.raises(ProtocolError, match="jobs must be at least 1"):
        run_benchmark(models, track, [0], tmp_path / "x", tmp_path / "wx", show_progress=False, jobs=0)
    with pytest.raises(ProtocolError, match="installed plugins only"):
        run_benchmark(["dummy"], track, [0], tmp_path / "y", tmp_path / "wy", show_progress=False, jobs=2,
                      registry=registry_with(DummyModel))
