"""Built-in models and baselines cannot be shadowed by a plugin, and results cannot claim to be them."""

from __future__ import annotations

import json
import types
from pathlib import Path

import pytest
import tomllib

from cxrbench import registry as registry_module
from cxrbench.box_prior import BoxPriorModel
from cxrbench.cli import main
from cxrbench.hookspecs import hookimpl
from cxrbench.model import Model
from cxrbench.nearest_report import NearestReportModel
from cxrbench.protocol import get_track
from cxrbench.registry import build_registry
from cxrbench.results import load_result, validation_errors
from cxrbench.runner import run_benchmark

ROOT = Path(__file__).resolve().parent.parent
IMPOSTOR_DIST = "cxrbench-broken-duplicate"

IMPOSTOR_PLUGIN = '''
import numpy as np
from cxrbench import Model, hookimpl

class Impostor(Model):
    model_id = "box-prior"
    capabilities = frozenset({"localize"})

    def localize(self, images, queries, extraction):
        return [{"word": np.ones(image.shape, np.float32)} for image in images]

class Companion(Model):
    model_id = "duplicate-companion"
    capabilities = frozenset({"generate"})

@hookimpl
def cxrbench_register_models(register):
    register(Impostor)
    register(Companion)
'''


def test_plugin_registering_a_builtin_id_is_refused_by_name_and_the_builtins_still_load(fake_distribution):
    fake_distribution(IMPOSTOR_DIST, "broken_duplicate", "cxrbench_broken_duplicate_mod", IMPOSTOR_PLUGIN)
    reg = build_registry()
    assert reg.models["box-prior"].cls is BoxPriorModel
    assert reg.models["box-prior"].plugin.distribution == "cxrbench"
    assert reg.models["nearest-report"].cls is NearestReportModel
    assert "real-images" in reg.models
    refused = [e for e in reg.errors if e.distribution == IMPOSTOR_DIST]
    assert [e.plugin for e in refused] == ["broken_duplicate"]
    assert "'box-prior'" in refused[0].error and "cxrbench.builtins" in refused[0].error  # the id and its owner
    assert not [e for e in reg.errors if e.distribution == "cxrbench"]
    # only the clashing id is refused: the plugin's other model loads
    assert reg.models["duplicate-companion"].plugin.distribution == IMPOSTOR_DIST


def test_built_in_distribution_wins_over_a_third_party_whatever_their_entry_point_names(fake_distribution,
                                                                                          monkeypatch):
    source = ("from cxrbench import Model, hookimpl\n"
              "class Twin(Model):\n    model_id = 'contested'\n    capabilities = frozenset({'generate'})\n"
              "@hookimpl\ndef cxrbench_register_models(register):\n    register(Twin)\n")
    fake_distribution("cxrbench-aaa-third-party", "aaa", "cxrbench_aaa_mod", source)
    fake_distribution("cxrbench-own-plugin", "zzz", "cxrbench_zzz_mod", source)
    fake_distribution("cxrbench-zzz-third-party", "zzzz", "cxrbench_zzzz_mod", source)
    monkeypatch.setattr(registry_module, "BUILT_IN_DISTRIBUTIONS", ("cxrbench-own-plugin",))
    reg = build_registry()
    assert reg.models["contested"].plugin.distribution == "cxrbench-own-plugin"
    refused = {e.distribution for e in reg.errors if "'contested'" in e.error}
    assert refused == {"cxrbench-aaa-third-party", "cxrbench-zzz-third-party"}


def test_built_in_distributions_are_the_plugins_the_repository_ships():
    shipped = {tomllib.loads(p.read_text())["project"]["name"] for p in ROOT.glob("plugins/*/pyproject.toml")}
    assert set(registry_module.BUILT_IN_DISTRIBUTIONS) == shipped


class _Impostor(Model):
    model_id = "box-prior"
    capabilities = frozenset({"localize"})


@hookimpl
def _register_impostor(register):
    register(_Impostor)


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory):
    """box-prior and nearest-report run on the smoke track with an impostor plugin loaded after the entry points."""
    impostor = types.SimpleNamespace(cxrbench_register_models=_register_impostor, __name__="cxrbench_impostor")
    reg = build_registry(extra_plugins=(("impostor", impostor),))
    out = tmp_path_factory.mktemp("results")
    outcomes = run_benchmark(["box-prior", "nearest-report"], get_track("smoke"), [0], out,
                             tmp_path_factory.mktemp("work"), registry=reg, show_progress=False)
    return reg, outcomes


@pytest.mark.slow
def test_baselines_still_run_with_an_impostor_loaded(smoke_results):
    reg, outcomes = smoke_results
    assert [e.plugin for e in reg.errors if "'box-prior'" in e.error] == ["impostor"]
    assert [(o.model, o.status) for o in outcomes] == [("box-prior", "ok"), ("nearest-report", "ok")]
    prior, nearest = (load_result(o.result_path) for o in outcomes)
    assert prior["plugin"]["distribution"] == "cxrbench"
    assert prior["plugin"]["baseline"] == BoxPriorModel.baseline
    assert nearest["plugin"]["baseline"] == NearestReportModel.baseline
    assert prior["metrics"]["loc_word_auc_roc"]["value"] != 0.5  # the impostor's all-ones map scores exactly 0.5
    assert validation_errors(prior) == [] and validation_errors(nearest) == []


@pytest.mark.slow
def test_validate_refuses_a_result_whose_plugin_contradicts_the_registry(smoke_results, tmp_path, capsys):
    record = load_result(smoke_results[1][0].result_path)
    impostor = {**record, "plugin": {**record["plugin"], "distribution": IMPOSTOR_DIST, "baseline": None}}
    problems = validation_errors(impostor)
    assert any(IMPOSTOR_DIST in p and "'cxrbench'" in p and "'box-prior'" in p for p in problems), problems
    assert any("baseline" in p and BoxPriorModel.baseline in p for p in problems), problems

    # a model that is not a registered baseline cannot take a baseline's label
    pretender = {**record, "plugin": {**record["plugin"], "model": "my-prior", "distribution": "my-dist"}}
    assert any("'my-prior'" in p and BoxPriorModel.baseline in p for p in validation_errors(pretender))
    # a model this installation does not know is not checked against the registry
    unknown = {**record, "plugin": {**record["plugin"], "model": "my-prior", "distribution": "my-dist",
                                    "baseline": None}}
    assert validation_errors(unknown) == []

    path = tmp_path / "box-prior__smoke__seed0.json"
    path.write_text(json.dumps(impostor))
    assert main(["validate", str(path)]) == 1
    assert IMPOSTOR_DIST in capsys.readouterr().err
    assert main(["validate", str(smoke_results[1][0].result_path)]) == 0
