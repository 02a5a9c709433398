"""cxrbench models `sd-frozen-encoder` and `sd-learnable-encoder`: the seed paper's pair on Stable Diffusion.

Fine-tunes a Stable Diffusion checkpoint from a local diffusers folder (what
``StableDiffusionPipeline.save_pretrained`` writes: ``unet``, ``vae``, ``text_encoder``, ``tokenizer``,
``scheduler``) on the track's training split, with the CLIP text encoder frozen or learnable. Training,
sampling and attention extraction are those of ``cxrbench.diffusion.DiffusionModel``, here in the latent
space of the frozen VAE (``cxrbench.diffusion.spaces.LatentSpace``): training latents are encoded once
and cached; the UNet learns the scheduler's ``prediction_type`` (epsilon for SD 1.x and SD2-base,
v-prediction for SD2 768); generation decodes through the VAE; localization reads the ``attn2``
probabilities of the UNet on the real image's latent, conditioned on its report. Nothing is downloaded.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field

from cxrbench.diffusion import DiffusionModel
from cxrbench.diffusion.spaces import LatentSpace
from cxrbench.diffusion.text import TextConditioner, hub_offline
from cxrbench.diffusion.training import half_dtype
from cxrbench.errors import AssetUnavailable
from cxrbench.hookspecs import hookimpl
from cxrbench.model import GENERATE, LOCALIZE, ModelOptions, TrainingBudget

#: Environment variable with the default ``weights`` folder.
WEIGHTS_ENV = "CXRBENCH_SD_WEIGHTS"
#: Subfolders a diffusers Stable Diffusion folder has (``StableDiffusionPipeline.save_pretrained``).
SUBFOLDERS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")


class StableDiffusionOptions(ModelOptions):
    """Options of the Stable Diffusion models (unknown keys are an error). Learning rates, batch size,
    steps, sampler and extraction timesteps come from the track."""

    weights: str | None = Field(
        default_factory=lambda: os.environ.get(WEIGHTS_ENV) or None,
        description=f"local diffusers Stable Diffusion folder; default: ${WEIGHTS_ENV}",
    )
    train_text_encoder: bool = False
    mixed_precision: Literal["no", "fp16", "bf16"] = Field(
        "no", description="autocast precision of the UNet and text encoder; the paper used fp16"
    )
    gradient_checkpointing: bool = Field(False, description="recompute UNet activations in backward")
    ema: bool = Field(False, description="generate and localize with an EMA of the UNet weights")
    ema_decay: float = Field(0.9999, gt=0, lt=1)
    micro_batch_size: int | None = Field(
        None, ge=1, description="samples per forward; the track's batch is accumulated over micro-batches"
    )
    max_grad_norm: float | None = Field(1.0, gt=0)
    generation_batch_size: int = Field(8, ge=1, description="images per sampling batch")
    extraction_rows_per_forward: int = Field(
        40, ge=1, description="(image, timestep) rows per UNet forward when localizing"
    )
    vae_batch_size: int = Field(8, ge=1, description="images per VAE encode/decode")


@dataclass
class StableDiffusionParts:
    """The components of a diffusers Stable Diffusion folder, in float32 on the CPU."""

    unet: Any
    vae: Any
    text_encoder: torch.nn.Module
    tokenizer: Any
    noise_scheduler: Any


def load_stable_diffusion(weights: str | os.PathLike | None) -> StableDiffusionParts:
    """Load UNet, VAE, text encoder, tokenizer and training schedule (``DDPMScheduler`` on the folder's
    scheduler config, ``clip_sample`` off) from a local diffusers folder; raise ``AssetUnavailable``
    naming what is missing."""
    what = (f"a local diffusers Stable Diffusion folder (what StableDiffusionPipeline.save_pretrained "
            f"writes) with the subfolders {', '.join(SUBFOLDERS)}")
    if not weights:
        raise AssetUnavailable(f"Stable Diffusion weights are not configured: set {WEIGHTS_ENV} or the "
                               f"option weights to {what}")
    folder = Path(weights).expanduser()
    missing = [name for name in SUBFOLDERS if not (folder / name).is_dir()]
    if missing:
        state = "does not exist" if not folder.is_dir() else f"lacks {', '.join(missing)}"
        raise AssetUnavailable(f"weights must be {what}, but {str(folder)!r} {state}")
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    with hub_offline():
        unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", local_files_only=True)
        vae = AutoencoderKL.from_pretrained(folder, subfolder="vae", local_files_only=True)
        text_encoder = AutoModel.from_pretrained(folder / "text_encoder", local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(folder / "tokenizer", local_files_only=True)
        # Latents are never clipped to [-1, 1] (PNDM configs do not say so; DDPM's default would clip).
        noise_scheduler = DDPMScheduler.from_pretrained(folder, subfolder="scheduler", local_files_only=True,
                                                        clip_sample=False)
    return StableDiffusionParts(unet.float(), vae.float(), text_encoder.float(), tokenizer, noise_scheduler)


class StableDiffusionModel(DiffusionModel):
    """A pretrained Stable Diffusion, fine-tuned on the track; subclasses fix the text-encoder strategy."""

    capabilities: ClassVar[frozenset[str]] = frozenset({GENERATE, LOCALIZE})
    Options: ClassVar[type[ModelOptions]] = StableDiffusionOptions

    def build(self, image_size: int, device: torch.device | str) -> None:
        """Load the folder's components onto ``device``. Under CUDA mixed precision the frozen VAE (unless
        its config asks for float32 with ``force_upcast``) and a frozen text encoder are stored in half
        precision; trained weights stay float32 and run under autocast."""
        opts = self.options
        parts = load_stable_diffusion(opts.weights)
        self.device = torch.device(device)
        self.image_size = int(image_size)
        self.factor = None
        self.mixed_precision = opts.mixed_precision
        half = half_dtype(opts.mixed_precision) if self.device.type == "cuda" else None
        parts.vae.to(self.device)
        if half is not None and not getattr(parts.vae.config, "force_upcast", True):
            parts.vae.to(half)
        self.space = LatentSpace(parts.vae, batch_size=opts.vae_batch_size)
        self.space.sample_shape(self.image_size)  # fails early for an image size the VAE cannot take
        max_tokens = min(int(parts.tokenizer.model_max_length),
                         int(parts.text_encoder.config.max_position_embeddings))
        # As in diffusers' pipeline: prompts padded to max_tokens, no attention mask for encoder or UNet.
        self.text = TextConditioner(parts.tokenizer, parts.text_encoder, max_tokens, opts.train_text_encoder,
                                    use_attention_mask=False, cache=False)
        self.text.to(self.device, None if opts.train_text_encoder else half)
        self.unet = parts.unet.to(self.device)
        self.unet.eval()
        if opts.gradient_checkpointing:
            self.unet.enable_gradient_checkpointing()
        self.noise_scheduler = parts.noise_scheduler

    def training_settings(self, budget: TrainingBudget) -> dict[str, Any]:
        opts = self.options
        return {
            "text_learning_rate": budget.text_encoder_learning_rate,
            "max_grad_norm": opts.max_grad_norm,
            "micro_batch_size": opts.micro_batch_size,
            "ema_decay": opts.ema_decay if opts.ema else None,
        }


#: What both Stable Diffusion models are; each description ends with what learns.
DESCRIPTION = "Stable Diffusion from a local diffusers folder, fine-tuned in the VAE latent space: "


class SDFrozenEncoderModel(StableDiffusionModel, train_text_encoder=False):
    model_id = "sd-frozen-encoder"
    description = DESCRIPTION + "the CLIP text encoder stays frozen; only the UNet learns."


class SDLearnableEncoderModel(StableDiffusionModel, train_text_encoder=True):
    model_id = "sd-learnable-encoder"
    description = DESCRIPTION + "the CLIP text encoder is fine-tuned jointly with the UNet."


@hookimpl
def cxrbench_register_models(register: Callable[[type], None]) -> None:
    register(SDFrozenEncoderModel)
    register(SDLearnableEncoderModel)
