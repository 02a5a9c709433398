from __future__ import annotations

from pathlib import Path

import pytest

from cxrbench.cli import main
from cxrbench.compare import compare_models, comparison_table
from cxrbench.errors import ResultError
from cxrbench.protocol import get_track
from cxrbench.runner import run_benchmark
from cxrbench.testing import DummyModel, registry_with


class InvertedPriorModel(DummyModel):
    """Points attention away from where boxes usually are."""

    model_id = "inverted-prior"

    def localize(self, images, queries, extraction):
        return [{"word": 1.0 - maps["word"], "eos": maps["eos"]} for maps in super().localize(images, queries, extraction)]


class CopyModel(DummyModel):
    model_id = "dummy-copy"


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("compare")
    reg = registry_with(DummyModel, InvertedPriorModel, CopyModel)
    outcomes = run_benchmark(["dummy", "inverted-prior", "dummy-copy"], get_track("smoke"), [0, 1], tmp / "r",
                             tmp / "w", registry=reg, show_progress=False)
    assert all(o.status == "ok" for o in outcomes)
    return tmp / "r"


@pytest.mark.slow
def test_paired_localization_difference_favours_the_box_prior(results):
    rows = {r["metric"]: r for r in compare_models(results, "dummy", "inverted-prior", "smoke", [0, 1])}
    auc = rows["loc_word_auc_roc"]
    assert auc["a"] > 0.5 > auc["b"]
    assert auc["a_minus_b"] == pytest.approx(auc["a"] - auc["b"])
    assert auc["ci_low"] > 0 and auc["verdict"] == "A better"
    assert auc["paired_over"].startswith("pairs") and auc["n"] > 10
    # Both generate the same images, so set-level fidelity differences are exactly zero.
    assert rows["fid_domain"]["a_minus_b"] == 0.0 and rows["fid_domain"]["verdict"] == "no clear difference"


@pytest.mark.slow
def test_identical_models_show_no_difference(results):
    rows = compare_models(results, "dummy", "dummy-copy", "smoke", [0, 1])
    assert rows and all(r["a_minus_b"] == 0.0 for r in rows)
    assert "no clear difference" in comparison_table(rows, "dummy", "dummy-copy")


@pytest.mark.slow
def test_missing_result_is_named(results):
    with pytest.raises(ResultError, match=r"nobody__smoke__seed0\.json"):
        compare_models(results, "dummy", "nobody", "smoke", [0])


@pytest.mark.slow
def test_compare_cli_without_running(results, capsys):
    assert main(["compare", "dummy", "inverted-prior", "--track", "smoke", "--seeds", "0", "1",
                 "--results", str(results), "--no-run"]) == 0
    out = capsys.readouterr().out
    assert "loc_word_auc_roc" in out and "A better" in out


@pytest.mark.slow
def test_localization_difference_gets_a_seed_interval_and_needs_it_for_a_verdict(results):
    rows = {r["metric"]: r for r in compare_models(results, "dummy", "inverted-prior", "smoke", [0, 1])}
    auc = rows["loc_word_auc_roc"]
    assert auc["seed_ci_low"] - 1e-9 <= auc["a_minus_b"] <= auc["seed_ci_high"] + 1e-9
    # the dummy's maps do not depend on the seed, so both seeds give the same difference: a zero-width interval
    assert auc["seed_ci_high"] - auc["seed_ci_low"] == pytest.approx(0.0, abs=1e-9)
    single = {r["metric"]: r for r in compare_models(results, "dummy", "inverted-prior", "smoke", [0])}
    assert "seed_ci_low" not in single["loc_word_auc_roc"]
    table = comparison_table(list(rows.values()), "dummy", "inverted-prior")
    assert "95% interval, seeds" in table and "95% interval, samples" in table
    assert "detectable across seeds" in table


def test_samples_alone_do_not_decide_when_seeds_disagree(monkeypatch):
    import numpy as np

    import cxrbench.compare as compare

    # two seeds whose paired differences have opposite signs: pooled, A looks better; across seeds, unclear
    data = {"metrics": {"loc_word_auc_roc": {"higher_is_better": True}}}
    samples = {
        ("A", 0): {(0, f"s{i}", "L", "p"): {"loc_word_auc_roc": 0.9} for i in range(40)},
        ("B", 0): {(0, f"s{i}", "L", "p"): {"loc_word_auc_roc": 0.5} for i in range(40)},
        ("A", 1): {(1, f"s{i}", "L", "p"): {"loc_word_auc_roc": 0.5} for i in range(40)},
        ("B", 1): {(1, f"s{i}", "L", "p"): {"loc_word_auc_roc": 0.45} for i in range(40)},
    }
    monkeypatch.setattr(compare, "_load_pair", lambda d, model, track, seed: (data, samples[(model, seed)]))
    monkeypatch.setattr(compare, "SET_LEVEL", ())
    [row] = [r for r in compare.compare_models(Path("."), "A", "B", "smoke", [0, 1])
             if r["metric"] == "loc_word_auc_roc"]
    assert row["ci_low"] > 0  # pooled pairs: clearly positive
    assert row["seed_ci_low"] < 0 < row["seed_ci_high"]  # two seeds, 0.4 and 0.05: t-interval spans 0
    assert row["verdict"] == "no clear difference across seeds"
    assert np.isclose(row["a_minus_b"], (0.4 + 0.05) / 2)
    # the smallest difference two seeds with this spread could call: the t-interval's half-width,
    # t(0.975, 1) * sd / sqrt(2) with sd of (0.4, 0.05)
    from scipy import stats
    expected = stats.t.ppf(0.975, 1) * np.std([0.4, 0.05], ddof=1) / np.sqrt(2)
    assert np.isclose(row["detectable"], expected)
    assert row["detectable"] > abs(row["a_minus_b"])  # hence no verdict across seeds
