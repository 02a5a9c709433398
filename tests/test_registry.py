from __future__ import annotations

import json

import pytest

from cxrbench.cli import main
from cxrbench.errors import PluginError
from cxrbench.registry import build_registry
from cxrbench.testing import DummyModel, registry_with

GOOD_PLUGIN = '''
from cxrbench import Model, hookimpl

class ThirdPartyModel(Model):
    model_id = "third-party"
    capabilities = frozenset({"generate"})

@hookimpl
def cxrbench_register_models(register):
    register(ThirdPartyModel)
'''


def test_installed_distribution_appears_with_name_and_version(fake_distribution):
    fake_distribution("cxrbench-third-party", "third_party", "cxrbench_third_party_mod", GOOD_PLUGIN, "1.2.3")
    reg = build_registry()
    entry = reg.model("third-party")
    assert entry.plugin.distribution == "cxrbench-third-party"
    assert entry.plugin.version == "1.2.3"
    assert entry.capabilities == ("generate",)


def test_broken_plugin_is_reported_by_name_and_others_still_load(fake_distribution):
    fake_distribution("cxrbench-third-party", "third_party", "cxrbench_third_party_mod", GOOD_PLUGIN)
    fake_distribution("cxrbench-broken", "broken", "cxrbench_broken_mod", "raise ImportError('no module named torch9')\n")
    reg = build_registry()
    assert "third-party" in reg.models
    assert [(e.plugin, e.distribution) for e in reg.errors] == [("broken", "cxrbench-broken")]
    assert "torch9" in reg.errors[0].error


def test_list_json_reports_plugins_and_load_errors(fake_distribution, capsys, monkeypatch):
    fake_distribution("cxrbench-third-party", "third_party", "cxrbench_third_party_mod", GOOD_PLUGIN, "1.2.3")
    fake_distribution("cxrbench-broken", "broken", "cxrbench_broken_mod", "raise RuntimeError('boom')\n")
    monkeypatch.setattr("cxrbench.registry._REGISTRY", None)
    assert main(["list", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    models = {m["name"]: m for m in payload["models"]}
    assert models["third-party"]["distribution"] == "cxrbench-third-party"
    assert models["third-party"]["version"] == "1.2.3"
    assert {"smoke", "default", "paper"} <= {t["name"] for t in payload["tracks"]}
    assert "synthcxr" in {d["name"] for d in payload["datasets"]}
    assert payload["errors"][0]["plugin"] == "broken" and "boom" in payload["errors"][0]["error"]


def test_load_plugins_variable_restricts_third_party_plugins(fake_distribution, monkeypatch):
    fake_distribution("cxrbench-third-party", "third_party", "cxrbench_third_party_mod", GOOD_PLUGIN)
    monkeypatch.setenv("CXRBENCH_LOAD_PLUGINS", "")
    reg = build_registry()
    assert "third-party" not in reg.models
    assert "synthcxr" in reg.datasets  # built-ins always load
    monkeypatch.setenv("CXRBENCH_LOAD_PLUGINS", "cxrbench-third-party")
    assert "third-party" in build_registry().models


def test_invalid_model_classes_are_rejected_with_a_reason():
    class NoCapabilities(DummyModel):
        model_id = "no-caps"
        capabilities = frozenset()

    class BadId(DummyModel):
        model_id = "Bad Id!"

    reg = registry_with(NoCapabilities, name="p1")
    assert "no-caps" not in reg.models
    assert any("capabilities" in e.error for e in reg.errors)
    reg = registry_with(BadId, name="p2")
    assert any("model_id must match" in e.error for e in reg.errors)


def test_duplicate_model_id_is_an_error_naming_both_distributions():
    class Twin(DummyModel):
        pass

    reg = registry_with(DummyModel, Twin)
    assert reg.models["dummy"].cls is DummyModel
    assert any("already registered" in e.error for e in reg.errors)


def test_unknown_model_lists_the_known_ones():
    reg = registry_with(DummyModel)
    with pytest.raises(PluginError, match=r"must be one of .*'dummy'.* but got 'nope'"):
        reg.model("nope")


def test_hook_that_does_not_exist_fails_check_pending(fake_distribution):
    fake_distribution("cxrbench-typo", "typo", "cxrbench_typo_mod",
                      "from cxrbench import hookimpl\n@hookimpl\ndef cxrbench_register_modelz(register):\n    pass\n")
    with pytest.raises(PluginError, match="cxrbench_register_modelz|does not exist"):
        build_registry()


def test_builtins_register_datasets_and_feature_extractors_through_the_hooks():
    reg = build_registry()
    assert reg.datasets["synthcxr"].plugin.distribution == "cxrbench"
    assert reg.feature_extractors["domain"].plugin.name == "cxrbench.builtins"
    impls = reg.plugin_manager.hook.cxrbench_register_feature_extractors.get_hookimpls()
    assert "cxrbench.builtins" in [i.plugin_name for i in impls]


DATA_AND_EXTRACTOR_PLUGIN = '''
from cxrbench import hookimpl

def tiny_dataset(**params):
    return ("tiny", params)

def tiny_extractor():
    return "tiny-extractor"

@hookimpl
def cxrbench_register_datasets(register):
    register("tiny-cxr", tiny_dataset)

@hookimpl
def cxrbench_register_feature_extractors(register):
    register("tiny-features", tiny_extractor)
'''


def test_a_third_party_plugin_registers_a_dataset_and_a_feature_extractor(fake_distribution):
    fake_distribution("cxrbench-tiny", "tiny", "cxrbench_tiny_mod", DATA_AND_EXTRACTOR_PLUGIN, "0.3.0")
    reg = build_registry()
    dataset, extractor = reg.dataset("tiny-cxr"), reg.feature_extractors["tiny-features"]
    assert (dataset.plugin.distribution, dataset.plugin.version) == ("cxrbench-tiny", "0.3.0")
    assert dataset.factory(n_test=2) == ("tiny", {"n_test": 2})
    assert extractor.plugin.distribution == "cxrbench-tiny" and extractor.factory() == "tiny-extractor"
    assert "synthcxr" in reg.datasets and "domain" in reg.feature_extractors  # the built-ins are still there
