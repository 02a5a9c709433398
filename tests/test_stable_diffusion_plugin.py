"""The Stable Diffusion plugin (plugins/stable-diffusion) on a tiny random pipeline saved in diffusers format.

The pipeline is built here (UNet2DConditionModel, AutoencoderKL, CLIPTextModel from a tiny config, a
CLIP tokenizer from a vocabulary written to disk), saved with ``StableDiffusionPipeline.save_pretrained``
and loaded back through the plugin's ``weights`` option, as a real checkpoint would be.
"""

from __future__ import annotations

import importlib.util
import json
import string
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from cxrbench.errors import AssetUnavailable
from cxrbench.model import FitContext, SamplerConfig, TrainingBudget
from cxrbench.testing import assert_model_compliant, tiny_samples

REPO = Path(__file__).resolve().parents[1]
SIZE = 32
BUDGET = TrainingBudget(steps=2, batch_size=4, unet_learning_rate=1e-3, text_encoder_learning_rate=1e-3)
REPORT_WORDS = ("small", "right", "left", "pleural", "effusion", "no", "pneumothorax", "heart", "normal")


def _plugin():
    """The plugin module from this checkout (installed or not)."""
    path = REPO / "plugins" / "stable-diffusion" / "cxrbench_stable_diffusion.py"
    spec = importlib.util.spec_from_file_location("cxrbench_stable_diffusion", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


sd = _plugin()


def _write_clip_tokenizer_files(folder: Path) -> None:
    """A CLIP BPE vocabulary: single letters, and whole words for a few report words."""
    folder.mkdir(parents=True)
    alphabet = string.ascii_lowercase + ".,"
    vocab = {s: i for i, s in enumerate([*alphabet, *(c + "</w>" for c in alphabet)])}
    merges = []
    for word in REPORT_WORDS:
        merged, *rest = [*word[:-1], word[-1] + "</w>"]
        for symbol in rest:
            merges.append(f"{merged} {symbol}")
            merged += symbol
            vocab.setdefault(merged, len(vocab))
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")


def save_tiny_stable_diffusion(folder: Path, prediction_type: str = "epsilon") -> Path:
    """A random Stable Diffusion with SD's structure at toy size, written as save_pretrained writes it."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    _write_clip_tokenizer_files(folder / "clip-vocab")
    tokenizer = CLIPTokenizer.from_pretrained(str(folder / "clip-vocab"), model_max_length=77,
                                              pad_token="<|endoftext|>")
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=SIZE // 2, in_channels=4, out_channels=4, block_out_channels=(16, 32), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16, attention_head_dim=2, norm_num_groups=8,
    )
    vae = AutoencoderKL(
        block_out_channels=(8, 16), in_channels=3, out_channels=3, latent_channels=4, sample_size=SIZE,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        norm_num_groups=8,
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    ))
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False,
                              prediction_type=prediction_type)
    pipeline = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                       scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
    pipeline.save_pretrained(str(folder / "sd"))
    return folder / "sd"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The models are tiny: a second thread only adds synchronization (and spinning on busy cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> str:
    return str(save_tiny_stable_diffusion(tmp_path_factory.mktemp("tiny-sd")))


@pytest.fixture(scope="module")
def train():
    return tiny_samples(n_train=8, n_test=2, image_size=SIZE)[0]


def _fit(cls, weights: str, train, workdir: Path, budget: TrainingBudget = BUDGET, **options):
    model = cls({"weights": weights, **options})
    losses: list[float] = []
    model.fit(train, budget, FitContext(0, workdir, SIZE, lambda step, logs: losses.append(logs["loss"])))
    assert len(losses) == budget.steps and np.isfinite(losses).all()
    return model


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> int:
    return sum(not torch.equal(before[k], after[k]) for k in before)


def test_both_models_register_with_the_paper_strategy_fixed_by_the_model_id():
    registered: list[type] = []
    sd.cxrbench_register_models(register=registered.append)
    assert [cls.model_id for cls in registered] == ["sd-frozen-encoder", "sd-learnable-encoder"]
    for cls, trains in zip(registered, (False, True)):
        assert cls.capabilities == frozenset({"generate", "localize"})
        assert cls({"weights": "x"}).options.train_text_encoder is trains
        with pytest.raises(ValueError, match="train_text_encoder"):
            cls({"train_text_encoder": not trains})
        with pytest.raises(ValueError, match="extra"):
            cls({"no_such_option": 1})


def test_installed_distribution_registers_both_models_through_the_entry_point():
    from cxrbench.registry import build_registry

    registry = build_registry()
    for model_id in ("sd-frozen-encoder", "sd-learnable-encoder"):
        assert registry.model(model_id).plugin.distribution == "cxrbench-stable-diffusion"


@pytest.mark.slow
@pytest.mark.parametrize("cls", [sd.SDFrozenEncoderModel, sd.SDLearnableEncoderModel])
def test_model_is_compliant(cls, weights):
    assert_model_compliant(cls, {"weights": weights}, image_size=SIZE, steps=2)


@pytest.fixture(scope="module")
def fitted(weights, train, tmp_path_factory):
    """Both models fitted for two steps, each in its own work folder."""
    work = tmp_path_factory.mktemp("fits")
    return {cls.model_id: (_fit(cls, weights, train, work / cls.model_id), work / cls.model_id)
            for cls in (sd.SDFrozenEncoderModel, sd.SDLearnableEncoderModel)}


@pytest.mark.slow
def test_learnable_encoder_learns_and_the_frozen_one_does_not(weights, fitted):
    pretrained = sd.load_stable_diffusion(weights)
    encoder, vae, unet = (_state(pretrained.text_encoder), _state(pretrained.vae), _state(pretrained.unet))
    frozen, learnable = fitted["sd-frozen-encoder"][0], fitted["sd-learnable-encoder"][0]
    assert _changed(encoder, _state(frozen.text.encoder)) == 0
    assert _changed(encoder, _state(learnable.text.encoder)) > len(encoder) // 2
    for model in (frozen, learnable):
        assert _changed(unet, _state(model.unet)) > len(unet) // 2
        assert _changed(vae, _state(model.space.vae)) == 0


@pytest.mark.slow
def test_training_latents_are_encoded_once_and_reused_from_the_work_folder(
    weights, train, fitted, monkeypatch
):
    from cxrbench.diffusion.spaces import LatentSpace

    first, work = fitted["sd-frozen-encoder"]
    (cached,) = work.glob("latents-*.safetensors")
    assert load_file(str(cached))["latents"].shape == (len(train), 4, SIZE // 2, SIZE // 2)

    def no_encoding(self, images, seeds=None):
        raise AssertionError("the training set was encoded again")

    monkeypatch.setattr(LatentSpace, "encode", no_encoding)
    again = _fit(sd.SDFrozenEncoderModel, weights, train, work)  # fitting again reads the cached latents
    assert all(torch.equal(a, b) for a, b in zip(first.unet.parameters(), again.unet.parameters()))


@pytest.mark.slow
def test_gradient_accumulation_gives_the_whole_batch_step(weights, train, tmp_path):
    initial = torch.cat([p.flatten() for p in sd.load_stable_diffusion(weights).unet.parameters()])
    whole = _fit(sd.SDLearnableEncoderModel, weights, train, tmp_path, replace(BUDGET, steps=1))
    parts = _fit(sd.SDLearnableEncoderModel, weights, train, tmp_path, replace(BUDGET, steps=1),
                 micro_batch_size=1)
    whole_weights, part_weights = (torch.cat([p.detach().flatten() for p in m.unet.parameters()])
                                   for m in (whole, parts))
    # Adam's first step is about lr * sign(gradient): compare the steps, not single near-zero gradients.
    step = (whole_weights - initial).abs().mean()
    assert (part_weights - whole_weights).abs().mean() < 0.01 * step


@pytest.mark.slow
def test_v_prediction_checkpoint_trains_on_the_velocity(tmp_path, train):
    from cxrbench.diffusion.training import regression_target

    weights = str(save_tiny_stable_diffusion(tmp_path / "v", prediction_type="v_prediction"))
    model = _fit(sd.SDFrozenEncoderModel, weights, train, tmp_path / "work", replace(BUDGET, steps=1),
                 gradient_checkpointing=True, mixed_precision="bf16")
    scheduler = model.noise_scheduler
    assert scheduler.config.prediction_type == "v_prediction"
    assert scheduler.config.clip_sample is False  # latents are not images in [-1, 1]
    clean, noise, t = torch.ones(1, 4, 2, 2), torch.zeros(1, 4, 2, 2), torch.tensor([500])
    velocity = regression_target(scheduler, clean, noise, t)
    torch.testing.assert_close(velocity, -(1 - scheduler.alphas_cumprod[500]) ** 0.5 * clean)
    images = model.generate(["Small right pleural effusion."], [1], SIZE, SamplerConfig(steps=2))
    assert images.shape == (1, SIZE, SIZE) and np.isfinite(images).all()


@pytest.mark.slow
def test_ema_weights_are_saved_and_used_after_loading(weights, train, tmp_path):
    model = _fit(sd.SDFrozenEncoderModel, weights, train, tmp_path / "work", replace(BUDGET, steps=1),
                 ema=True, ema_decay=0.5)
    assert _changed(model.raw_unet_state, _state(model.unet)) > 0  # the UNet holds the average
    assert model.save(tmp_path / "saved")
    assert {p.name for p in (tmp_path / "saved").iterdir()} == {"model.json", "unet.safetensors",
                                                               "unet_ema.safetensors"}
    restored = sd.SDFrozenEncoderModel({"weights": weights, "ema": True, "ema_decay": 0.5})
    assert restored.load(tmp_path / "saved")
    sampler = SamplerConfig(steps=2, guidance_scale=3.0)
    np.testing.assert_array_equal(restored.generate(["Small right pleural effusion."], [4], SIZE, sampler),
                                  model.generate(["Small right pleural effusion."], [4], SIZE, sampler))
    assert _changed(model.raw_unet_state, restored.raw_unet_state) == 0
    assert not sd.SDFrozenEncoderModel({"weights": weights}).load(tmp_path / "saved")  # other options


def test_missing_weights_name_the_folder_and_its_subfolders(tmp_path, monkeypatch, train):
    monkeypatch.setenv(sd.WEIGHTS_ENV, str(tmp_path / "nowhere"))
    model = sd.SDFrozenEncoderModel()
    assert model.options.weights == str(tmp_path / "nowhere")
    context = FitContext(0, tmp_path, SIZE)
    with pytest.raises(AssetUnavailable, match="nowhere.*does not exist"):
        model.fit(train, BUDGET, context)
    (tmp_path / "partial" / "unet").mkdir(parents=True)
    with pytest.raises(AssetUnavailable, match="unet, vae, text_encoder, tokenizer, scheduler.*lacks vae"):
        sd.SDFrozenEncoderModel({"weights": str(tmp_path / "partial")}).fit(train, BUDGET, context)
    monkeypatch.delenv(sd.WEIGHTS_ENV)
    with pytest.raises(AssetUnavailable, match=sd.WEIGHTS_ENV):
        sd.SDLearnableEncoderModel().fit(train, BUDGET, context)
