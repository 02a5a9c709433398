"""Metric plugins: a third-party distribution registers metrics of each kind; the core scores, re-derives,
rescores and ranks them; the built-in metrics come through the same hook."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from cxrbench.errors import ResultError
from cxrbench.leaderboard.board import build_leaderboard
from cxrbench.metric import FEATURES, MAPS, Metric
from cxrbench.protocol import get_track
from cxrbench.registry import build_registry
from cxrbench.rederive import rederivation_errors
from cxrbench.rescore import rescore_result
from cxrbench.results import load_result, validation_errors
from cxrbench.runner import run_benchmark
from cxrbench.testing import DummyModel, plugin_for

SMOKE = get_track("smoke")

#: A metric plugin as a third party would ship it: one metric of each kind, written on numpy alone.
METRIC_PLUGIN = '''
import numpy as np
from cxrbench.hookspecs import hookimpl
from cxrbench.metric import FEATURES, MAPS, SAMPLES, Metric


def mass_in_boxes(heatmap, boxes, image_shape):
    """Share of the map's (shifted to >= 0) mass that falls inside the boxes."""
    mask = np.zeros(image_shape, dtype=bool)
    for box in boxes:
        mask[int(box.y):int(np.ceil(box.y + box.h)), int(box.x):int(np.ceil(box.x + box.w))] = True
    values = heatmap - heatmap.min()
    total = values.sum()
    return float(values[mask].sum() / total) if total > 0 else float("nan")


def mean_distance(real, generated, prompt_ids, seed):
    return float(np.linalg.norm(real.mean(axis=0) - generated.mean(axis=0)))


def word_beats_eos(records):
    pairs = [(r["metrics"].get("loc_word_auc_roc"), r["metrics"].get("loc_eos_auc_roc")) for r in records]
    pairs = [(w, e) for w, e in pairs if w is not None and e is not None and w == w and e == e]
    return float(np.mean([w > e for w, e in pairs])) if pairs else float("nan")


@hookimpl
def cxrbench_register_metrics(register):
    register(Metric("mass_in_boxes", MAPS, mass_in_boxes, description="share of map mass inside the boxes"))
    register(Metric("mean_distance", FEATURES, mean_distance, higher_is_better=False,
                    description="distance between the feature means"))
    register(Metric("word_beats_eos", SAMPLES, word_beats_eos, description="word map beats EOS map (AUC)"))
'''


class FitCountingModel(DummyModel):
    model_id = "fit-counting"
    fits = 0

    def fit(self, train, budget, context):
        type(self).fits += 1
        super().fit(train, budget, context)


@pytest.fixture
def metric_distribution(fake_distribution):
    fake_distribution("cxrbench-example-metrics", "example_metrics", "cxrbench_example_metrics", METRIC_PLUGIN)
    return "cxrbench-example-metrics"


def _registry():
    return build_registry(extra_plugins=(("models-under-test", plugin_for(DummyModel, FitCountingModel)),))


def test_built_in_metrics_register_through_the_hook():
    registry = build_registry()
    owners = {name: entry.plugin.distribution for name, entry in registry.metrics.items()}
    assert owners == {"localization": "cxrbench", "localization_seed": "cxrbench", "fid": "cxrbench",
                      "kid": "cxrbench", "precision_recall": "cxrbench"}
    assert set(registry.metrics["precision_recall"].metric.directions) == {"precision", "recall"}
    assert registry.metrics["localization_seed"].metric.directions["centre_distance_seed"] is False


def test_a_third_party_metric_registers_with_its_distribution(metric_distribution):
    registry = build_registry()
    entry = registry.metrics["mass_in_boxes"]
    assert (entry.metric.needs, entry.source) == (MAPS, metric_distribution)
    assert registry.metrics["mean_distance"].metric.needs == FEATURES
    assert registry.errors == []


def test_a_metric_that_takes_a_registered_name_or_is_malformed_is_refused(fake_distribution):
    fake_distribution("cxrbench-bad-metrics", "bad_metrics", "cxrbench_bad_metrics", '''
from cxrbench.hookspecs import hookimpl
from cxrbench.metric import FEATURES, Metric

@hookimpl
def cxrbench_register_metrics(register):
    register(Metric("my_fid", FEATURES, lambda r, g, p, s: 0.0, outputs={"fid": False}))
    register(Metric("fine", FEATURES, lambda r, g, p, s: 1.0))
    register(Metric("Bad Name", "pixels", lambda: 0.0))
''')
    registry = build_registry()
    messages = [e.error for e in registry.errors if e.distribution == "cxrbench-bad-metrics"]
    assert any("metric 'fid'" in m and "already registered by cxrbench" in m for m in messages), messages
    assert any("'Bad Name'" in m and "needs must be one of" in m for m in messages), messages
    assert "my_fid" not in registry.metrics and "fine" in registry.metrics  # its other metric still loads
    assert registry.metrics["fid"].plugin.distribution == "cxrbench"


@pytest.mark.slow
def test_plugin_metrics_are_scored_re_derived_and_ranked_on_a_smoke_run(tmp_path, metric_distribution):
    registry = _registry()
    [outcome] = run_benchmark(["dummy"], SMOKE, [0], tmp_path / "results", tmp_path / "work", registry=registry,
                              show_progress=False)
    assert outcome.status == "ok", outcome.error
    record = load_result(outcome.result_path)
    assert validation_errors(record) == []
    assert rederivation_errors(record, outcome.result_path, registry) == []
    metrics = record["metrics"]
    for name in ("loc_word_mass_in_boxes", "loc_word_mass_in_boxes_macro", "mean_distance_domain", "word_beats_eos"):
        entry = metrics[name]
        assert entry["source"] == metric_distribution and entry["description"], name
        assert entry["ci_low"] <= entry["value"] <= entry["ci_high"], name
    assert metrics["mean_distance_domain"]["higher_is_better"] is False
    # the core computed the plugin's per-map value on every line, and the aggregate is their mean
    lines = [json.loads(x) for x in (outcome.result_path.parent / record["per_sample_file"]).read_text().splitlines()]
    values = [line["metrics"]["loc_word_mass_in_boxes"] for line in lines]
    assert metrics["loc_word_mass_in_boxes"]["value"] == pytest.approx(np.nanmean(values))
    assert "source" not in metrics["loc_word_auc_roc"] and "source" not in metrics["fid_domain"]
    # on the leaderboard
    entry = build_leaderboard([load_result(outcome.result_path)]).track("smoke").entries[0]
    assert entry.metrics["mean_distance_domain"].mean == metrics["mean_distance_domain"]["value"]
    # an edited plugin figure is refused like a built-in one
    record["metrics"]["mean_distance_domain"]["value"] *= 1.01
    assert any("mean_distance_domain value" in p for p in rederivation_errors(record, outcome.result_path, registry))


@pytest.mark.slow
def test_a_result_with_metrics_of_a_plugin_not_installed_here_is_refused(tmp_path, metric_distribution):
    [outcome] = run_benchmark(["dummy"], SMOKE, [0], tmp_path / "results", tmp_path / "work", registry=_registry(),
                              show_progress=False)
    without = build_registry(extra_plugins=(("models-under-test", plugin_for(DummyModel)),))
    without.metrics = {k: v for k, v in without.metrics.items() if v.source is None}
    problems = rederivation_errors(load_result(outcome.result_path), outcome.result_path, without)
    assert any("'cxrbench-example-metrics', which is not installed here" in p for p in problems), problems


@pytest.mark.slow
def test_rescore_adds_a_new_metric_from_the_kept_outputs_without_fitting_again(tmp_path, fake_distribution):
    FitCountingModel.fits = 0
    [outcome] = run_benchmark(["fit-counting"], SMOKE, [0], tmp_path / "results", tmp_path / "work",
                              registry=_registry(), show_progress=False)
    assert outcome.status == "ok" and FitCountingModel.fits == 1
    before = load_result(outcome.result_path)
    fake_distribution("cxrbench-example-metrics", "example_metrics", "cxrbench_example_metrics", METRIC_PLUGIN)
    registry = _registry()
    result = rescore_result(outcome.result_path, tmp_path / "work", registry)
    after = load_result(outcome.result_path)
    assert FitCountingModel.fits == 1  # nothing trained again
    assert "loc_word_mass_in_boxes" in result.changed and "mean_distance_domain" in after["metrics"]
    for name, entry in before["metrics"].items():  # what was there re-scores identically
        assert after["metrics"][name]["value"] == entry["value"] or (
            entry["value"] is None and after["metrics"][name]["value"] is None), name
    assert after["rescored"]["metric_versions_before"] == before["metric_versions"]
    assert validation_errors(after) == [] and rederivation_errors(after, outcome.result_path, registry) == []
    (tmp_path / "work" / outcome.result_path.name.removesuffix(".json") / "maps.npz").unlink()
    with pytest.raises(ResultError, match=r"maps\.npz"):
        rescore_result(outcome.result_path, tmp_path / "work", registry)
    assert load_result(outcome.result_path)["metrics"] == after["metrics"]  # a refused rescore writes nothing


@pytest.mark.slow
def test_a_plugin_metric_that_raises_is_reported_and_the_run_goes_on(tmp_path, fake_distribution):
    fake_distribution("cxrbench-raising-metric", "raising_metric", "cxrbench_raising_metric", '''
from cxrbench.hookspecs import hookimpl
from cxrbench.metric import FEATURES, Metric

def broken(real, generated, prompt_ids, seed):
    raise RuntimeError("needs a GPU")

@hookimpl
def cxrbench_register_metrics(register):
    register(Metric("broken_metric", FEATURES, broken))
''')
    [outcome] = run_benchmark(["dummy"], SMOKE, [0], tmp_path / "results", tmp_path / "work", registry=_registry(),
                              show_progress=False)
    assert outcome.status == "ok", outcome.error
    entry = load_result(outcome.result_path)["metrics"]["broken_metric_domain"]
    assert entry["value"] is None and "needs a GPU" in entry["note"]
    assert not math.isnan(load_result(outcome.result_path)["metrics"]["fid_domain"]["value"])


def test_metric_declarations_are_checked():
    assert Metric("ok_name", MAPS, abs).problems() == []
    problems = Metric("x", MAPS, abs, outputs={"a": "up", "B c": True}).problems()
    assert any("direction must be True or False" in p for p in problems)
    assert any("output names must match" in p and "'B c'" in p for p in problems)


@pytest.mark.slow
def test_the_contributing_guide_s_metric_plugin_runs_as_printed(tmp_path, fake_distribution):
    import re
    from pathlib import Path

    guide = (Path(__file__).resolve().parent.parent / "CONTRIBUTING.md").read_text()
    section = guide[guide.index("## A metric plugin"):]
    source = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    fake_distribution("my-metrics", "my-metrics", "my_metrics", source)
    [outcome] = run_benchmark(["dummy"], SMOKE, [0], tmp_path / "results", tmp_path / "work", registry=_registry(),
                              show_progress=False)
    metrics = load_result(outcome.result_path)["metrics"]
    assert metrics["loc_word_peak_in_box"]["source"] == "my-metrics"
    assert 0.0 <= metrics["loc_word_peak_in_box"]["value"] <= 1.0
    assert metrics["mean_gap_domain"]["higher_is_better"] is False and metrics["mean_gap_domain"]["value"] > 0
