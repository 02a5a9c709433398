"""The encoder-strategy plugins at toy sizes: each follows the model contract and has its defining property.

plugins/token-embedding, lora-encoder, partial-encoder, encoder-schedule (two models) and causal-encoder
(two models). Every model is fitted once per module at 16 px for a few steps and shared by the tests.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cxrbench.diffusion import DiffusionModel, TextConditioner, load_text_encoder
from cxrbench.errors import ProtocolError
from cxrbench.model import FitContext, TrainingBudget
from cxrbench.registry import build_registry
from cxrbench.testing import assert_model_compliant, tiny_samples

REPO = Path(__file__).resolve().parents[1]
SIZE = 16
TINY = {"unshuffle_factor": 2, "block_out_channels": (32, 32), "max_tokens": 16}
#: A narrower causal encoder than the default (384 wide, 4 layers): its initialization dominates a toy fit.
SMALL_CAUSAL = {"encoder_hidden_size": 64, "encoder_heads": 2, "encoder_layers": 2}
BUDGET = TrainingBudget(steps=4, batch_size=4, unet_learning_rate=1e-3, text_encoder_learning_rate=1e-3)
SWITCH = 2  # round(0.5 * BUDGET.steps)

STRATEGIES = {  # model id: (folder, module, distribution)
    "token-embedding": ("token-embedding", "cxrbench_token_embedding", "cxrbench-token-embedding"),
    "lora-encoder": ("lora-encoder", "cxrbench_lora_encoder", "cxrbench-lora-encoder"),
    "partial-encoder": ("partial-encoder", "cxrbench_partial_encoder", "cxrbench-partial-encoder"),
    "frozen-then-learnable": ("encoder-schedule", "cxrbench_encoder_schedule", "cxrbench-encoder-schedule"),
    "learnable-then-frozen": ("encoder-schedule", "cxrbench_encoder_schedule", "cxrbench-encoder-schedule"),
    "causal-encoder-frozen": ("causal-encoder", "cxrbench_causal_encoder", "cxrbench-causal-encoder"),
    "causal-encoder-learnable": ("causal-encoder", "cxrbench_causal_encoder", "cxrbench-causal-encoder"),
}


def _module(model_id: str):
    """The plugin module from this checkout (installed or not)."""
    folder, name, _ = STRATEGIES[model_id]
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "plugins" / folder / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _model_class(model_id: str) -> type[DiffusionModel]:
    registered: list[type] = []
    _module(model_id).cxrbench_register_models(register=registered.append)
    (cls,) = [c for c in registered if c.model_id == model_id]
    return cls


def _options(model_id: str) -> dict:
    return {**TINY, **(SMALL_CAUSAL if model_id.startswith("causal") else {})}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The models are tiny: a second thread only adds synchronization (and spinning on busy cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pretrained() -> dict[str, torch.Tensor]:
    return load_text_encoder()[1].state_dict()


@pytest.fixture(scope="module")
def fitted():
    """model id -> (model fitted for BUDGET, text encoder state after SWITCH steps), fitted on first use."""
    train = tiny_samples(n_train=8, n_test=1, image_size=SIZE)[0]
    done: dict[str, tuple[DiffusionModel, dict[str, torch.Tensor]]] = {}

    def get(model_id: str):
        if model_id not in done:
            model = _model_class(model_id)(_options(model_id))
            at_switch: dict[str, torch.Tensor] = {}

            def progress(step: int, logs: dict) -> None:
                if step == SWITCH:
                    at_switch.update({k: v.detach().clone() for k, v in model.text.state_dict().items()})

            model.fit(train, BUDGET, FitContext(0, Path("unused"), SIZE, progress))
            done[model_id] = model, at_switch
        return done[model_id]

    return get


def _changed(state: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> set[str]:
    return {k for k in reference if not torch.equal(state[k], reference[k])}


# ------------------------------------------------------------------------------------------- contract


@pytest.fixture(scope="module")
def registry():
    return build_registry()


@pytest.mark.parametrize("model_id", sorted(STRATEGIES))
def test_strategy_is_registered_from_its_own_distribution(registry, model_id):
    entry = registry.model(model_id)
    assert entry.plugin.distribution == STRATEGIES[model_id][2]
    assert entry.capabilities == ("generate", "localize")
    assert issubclass(entry.cls, DiffusionModel) and entry.cls.description
    with pytest.raises(ValueError, match="extra"):
        entry.cls({"no_such_option": 1})


@pytest.mark.slow
@pytest.mark.parametrize("model_id", sorted(STRATEGIES))
def test_strategy_follows_the_contract(model_id):
    options = {"block_out_channels": (16, 16), "norm_num_groups": 8, "unshuffle_factor": 4, "max_tokens": 16}
    if model_id.startswith("causal"):
        options.update(SMALL_CAUSAL)
    assert_model_compliant(_model_class(model_id), options, image_size=32, steps=2)


# ------------------------------------------------------------------------------------- token-embedding


@pytest.mark.slow
def test_token_embedding_state_of_a_token_ignores_the_other_words(fitted, pretrained):
    model, _ = fitted("token-embedding")
    prompts = ["Small left pleural effusion.", "Large left pleural effusion."]
    ids = model.text.tokenizer(prompts)["input_ids"]
    assert len(ids[0]) == len(ids[1]) and ids[0][1] != ids[1][1] and ids[0][2:] == ids[1][2:]
    with torch.no_grad():
        hidden, _ = model.text.encode(prompts)
    assert torch.equal(hidden[0, 2:], hidden[1, 2:])  # every token after the changed word: bit-identical
    assert not torch.equal(hidden[0, 1], hidden[1, 1])
    # The contextual encoder, for contrast: the same tokens' states do change.
    tokenizer, minilm = load_text_encoder()
    contextual, _ = TextConditioner(tokenizer, minilm, 16, trainable=False).encode(prompts)
    assert not torch.allclose(contextual[0, 2:len(ids[0])], contextual[1, 2:len(ids[0])], atol=1e-3)
    # The table started as MiniLM's word embeddings and learned.
    learned = model.text.encoder.embeddings.weight
    assert learned.shape == pretrained["embeddings.word_embeddings.weight"].shape
    assert not torch.equal(learned, pretrained["embeddings.word_embeddings.weight"])


@pytest.mark.slow
def test_token_embedding_can_keep_minilm_word_embeddings(pretrained):
    cls = _model_class("token-embedding")
    text = cls({**TINY, "train_text_encoder": False}).build_text_conditioner()
    assert not text.trainable and not text.parameters()
    assert torch.equal(text.encoder.embeddings.weight, pretrained["embeddings.word_embeddings.weight"])


# ---------------------------------------------------------------------------------------- lora-encoder


@pytest.mark.slow
def test_lora_trains_only_the_adapters_and_moves_the_output(fitted, pretrained, tmp_path):
    model, _ = fitted("lora-encoder")
    state = model.text.encoder.state_dict()
    adapters = {k for k in state if "lora_" in k}
    assert len(adapters) == 2 * 3 * 6  # A and B of query, key and value in 6 layers
    base = {k.replace(".base_layer", ""): v for k, v in state.items() if k not in adapters}
    assert base.keys() == pretrained.keys()
    assert not _changed(base, pretrained)  # the pretrained weights are bit-identical after the fit
    assert {k for k in adapters if ".lora_B." in k} <= {k for k in adapters if state[k].abs().max() > 0}

    prompts = ["Small left pleural effusion.", "No pneumothorax."]
    tokenizer, minilm = load_text_encoder()
    with torch.no_grad():
        adapted, _ = model.text.encode(prompts)
        original, _ = TextConditioner(tokenizer, minilm, 16, trainable=False).encode(prompts)
    assert (adapted - original).abs().max() > 1e-4

    assert model.save(tmp_path)
    assert set(load_file(str(tmp_path / "text_encoder.safetensors"))) == adapters
    restored = type(model)(model.options)
    assert restored.load(tmp_path)
    assert not _changed(restored.text.encoder.state_dict(), state)


@pytest.mark.slow
def test_lora_initialization_leaves_the_unet_initialization_alone():
    unets = []
    for cls in (DiffusionModel, _model_class("lora-encoder")):
        torch.manual_seed(3)
        model = cls(TINY)
        model.build(SIZE, "cpu")
        unets.append(model.unet.state_dict())
    assert not _changed(*unets)


def test_lora_adapters_are_drawn_from_the_fit_seed_whatever_the_global_generator():
    adapters = []
    for fit_seed, global_seed in ((4, 0), (4, 9), (5, 0)):
        torch.manual_seed(global_seed)
        model = _model_class("lora-encoder")(TINY)
        model.fit_seed = fit_seed
        model.build(SIZE, "cpu")
        adapters.append(model.text.state_dict())
    assert set(adapters[0]) and all(".lora_" in name for name in adapters[0])
    assert not _changed(adapters[0], adapters[1])
    assert _changed(adapters[0], adapters[2])


# ------------------------------------------------------------------------------------- partial-encoder


@pytest.mark.slow
def test_partial_encoder_trains_only_its_last_layers(fitted, pretrained, tmp_path):
    model, _ = fitted("partial-encoder")
    changed = _changed(model.text.encoder.state_dict(), pretrained)
    last_two = ("encoder.layer.4.", "encoder.layer.5.")
    assert changed and all(k.startswith(last_two) for k in changed)
    assert all(any(k.startswith(p) for k in changed) for p in last_two)
    assert model.save(tmp_path)
    assert all(k.startswith(last_two) for k in load_file(str(tmp_path / "text_encoder.safetensors")))
    with pytest.raises(ProtocolError, match="trainable_layers"):
        type(model)({**TINY, "trainable_layers": 7}).build_text_conditioner()


# ------------------------------------------------------------------------------------ encoder-schedule


@pytest.mark.slow
def test_frozen_then_learnable_changes_the_encoder_only_after_the_switch(fitted, pretrained):
    model, at_switch = fitted("frozen-then-learnable")
    assert model.switch_step(BUDGET) == SWITCH
    assert not _changed(at_switch, pretrained)
    assert len(_changed(model.text.state_dict(), at_switch)) > len(pretrained) // 2


@pytest.mark.slow
def test_learnable_then_frozen_changes_the_encoder_only_before_the_switch(fitted, pretrained):
    model, at_switch = fitted("learnable-then-frozen")
    assert len(_changed(at_switch, pretrained)) > len(pretrained) // 2
    assert not _changed(model.text.state_dict(), at_switch)


# -------------------------------------------------------------------------------------- causal-encoder


@pytest.mark.slow
def test_causal_encoder_state_of_a_token_ignores_later_tokens(fitted):
    model, _ = fitted("causal-encoder-learnable")
    prompts = ["Small left pleural effusion.", "Small left pleural nodule."]
    ids = model.text.tokenizer(prompts, padding="max_length", max_length=16)["input_ids"]
    first_change = next(i for i, (a, b) in enumerate(zip(*ids)) if a != b)
    with torch.no_grad():
        hidden, _ = model.text.encode(prompts)
    torch.testing.assert_close(hidden[0, :first_change], hidden[1, :first_change], rtol=0, atol=1e-6)
    assert not torch.allclose(hidden[0, first_change], hidden[1, first_change], atol=1e-4)
    # Word spans and the end-of-text token are the MiniLM tokenizer's: [SEP] ends the prompt.
    spans = model.text.token_spans(prompts[0])
    assert ids[0][spans.end_token] == model.text.tokenizer.sep_token_id
    assert spans.end_token == max(spans.real_tokens)


@pytest.mark.slow
def test_causal_encoder_is_fixed_by_its_seed_and_learns_only_when_learnable(fitted):
    frozen, _ = fitted("causal-encoder-frozen")
    learnable, _ = fitted("causal-encoder-learnable")
    tokenizer = frozen.text.tokenizer
    rng = torch.get_rng_state()
    initial = _module("causal-encoder-frozen").build_causal_encoder(tokenizer, frozen.options).state_dict()
    assert torch.equal(torch.get_rng_state(), rng)  # built in a generator of its own
    assert not _changed(frozen.text.encoder.state_dict(), initial)
    assert len(_changed(learnable.text.encoder.state_dict(), initial)) > len(initial) // 2
    config = frozen.text.encoder.config
    assert (config.vocab_size, config.eos_token_id, config.pad_token_id) == (
        len(tokenizer), tokenizer.sep_token_id, tokenizer.pad_token_id)



@pytest.mark.slow
def test_a_schedule_resumed_across_the_switch_ends_as_an_uninterrupted_fit(fitted, tmp_path):
    reference, _ = fitted("learnable-then-frozen")
    cls = type(reference)
    train = tiny_samples(n_train=8, n_test=1, image_size=SIZE)[0]

    def interrupt(step: int, logs: dict) -> None:
        if step == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cls(_options("learnable-then-frozen")).fit(
            train, BUDGET, FitContext(0, tmp_path, SIZE, interrupt, checkpoint_every=1))
    resumed, steps = cls(_options("learnable-then-frozen")), []
    resumed.fit(train, BUDGET, FitContext(0, tmp_path, SIZE, lambda step, logs: steps.append(step)))
    assert steps == [2, 3, 4]
    assert not _changed(resumed.text.state_dict(), reference.text.state_dict())
    assert not _changed(resumed.unet.state_dict(), reference.unet.state_dict())
