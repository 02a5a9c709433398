"""The built-in model plugins are installed distributions that follow the contract."""

from __future__ import annotations

import pickle

import pytest

from cxrbench.registry import build_registry
from cxrbench.testing import assert_model_compliant

BUILT_IN = {
    "frozen-encoder": ("cxrbench-frozen-encoder", False),
    "learnable-encoder": ("cxrbench-learnable-encoder", True),
}


@pytest.fixture(scope="module")
def registry():
    return build_registry()


@pytest.mark.parametrize("model_id", sorted(BUILT_IN))
def test_built_in_plugin_is_registered_from_its_own_distribution(registry, model_id):
    entry = registry.model(model_id)
    distribution, trains_encoder = BUILT_IN[model_id]
    assert entry.plugin.distribution == distribution
    assert entry.capabilities == ("generate", "localize")
    assert entry.cls({}).options.train_text_encoder is trains_encoder


@pytest.mark.slow
@pytest.mark.parametrize("model_id", sorted(BUILT_IN))
def test_built_in_plugin_is_compliant(registry, model_id):
    assert_model_compliant(registry.model(model_id).cls, steps=2)


def test_strategy_is_fixed_by_the_model_id(registry):
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        registry.model("frozen-encoder").cls({"train_text_encoder": True})
    options = registry.model("frozen-encoder").cls({"attention_heads": 4}).options
    assert pickle.loads(pickle.dumps(options)) == options  # options travel to worker processes
