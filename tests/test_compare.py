from __future__ import annotations

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


def test_paired_localization_difference_favours_the_box_prior(results):
    rows = {r["metric"]: r for r in compare_models(results, "dummy", "inverted-prior", "smoke", [0, 1])}
    auc = rows["loc_word_auc_roc"]
    assert auc["a"] > 0.5 > auc["b"]
    assert auc["a_minus_b"] == pytest.approx(auc["a"] - auc["b"])
    assert auc["ci_low"] > 0 and auc["verdict"] == "A better"
    assert auc["paired_over"].startswith("pairs") and auc["n"] > 10
    # Both generate the same images, so set-level fidelity differences are exactly zero.
    assert rows["fid_domain"]["a_minus_b"] == 0.0 and rows["fid_domain"]["verdict"] == "no clear difference"


def test_identical_models_show_no_difference(results):
    rows = compare_models(results, "dummy", "dummy-copy", "smoke", [0, 1])
    assert rows and all(r["a_minus_b"] == 0.0 for r in rows)
    assert "no clear difference" in comparison_table(rows, "dummy", "dummy-copy")


def test_missing_result_is_named(results):
    with pytest.raises(ResultError, match=r"nobody__smoke__seed0\.json"):
        compare_models(results, "dummy", "nobody", "smoke", [0])


def test_compare_cli_without_running(results, capsys):
    assert main(["compare", "dummy", "inverted-prior", "--track", "smoke", "--seeds", "0", "1",
                 "--results", str(results), "--no-run"]) == 0
    out = capsys.readouterr().out
    assert "loc_word_auc_roc" in out and "A better" in out
