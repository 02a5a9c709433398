"""Sampling: DDIM (or ancestral DDPM) from per-image seeded noise, with optional classifier-free guidance.

Every image draws its initial noise, and any per-step noise (DDIM with eta > 0, DDPM), from its own
``torch.Generator`` seeded with that image's seed, so a (prompt, seed) pair gives the same image
whatever batch it is in. Guidance (Ho & Salimans, 2022): ``eps = eps(x, "") + g * (eps(x, c) - eps(x, ""))``
for ``guidance_scale`` g > 1; g <= 1 runs the conditional prediction alone. The sampler inherits the
training schedule's configuration, ``prediction_type`` included, so a v-prediction UNet (Stable
Diffusion 2) is combined and stepped the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from cxrbench.diffusion.text import TextConditioner
from cxrbench.errors import ProtocolError
from cxrbench.model import SamplerConfig

SAMPLERS: tuple[str, ...] = ("ddim", "ddpm")


def make_sampler(sampler: SamplerConfig, training_scheduler_config: Any) -> Any:
    """The diffusers scheduler ``sampler.name`` on the training schedule, set to ``sampler.steps`` steps."""
    from diffusers import DDIMScheduler, DDPMScheduler

    if sampler.name not in SAMPLERS:
        raise ProtocolError(f"sampler.name must be one of {list(SAMPLERS)}, but got {sampler.name!r}")
    if sampler.steps < 1:
        raise ProtocolError(f"sampler.steps must be at least 1, but got {sampler.steps}")
    cls = DDIMScheduler if sampler.name == "ddim" else DDPMScheduler
    scheduler = cls.from_config(training_scheduler_config)
    scheduler.set_timesteps(sampler.steps)
    return scheduler


def sample(
    unet: torch.nn.Module,
    text: TextConditioner,
    prompts: Sequence[str],
    seeds: Sequence[int],
    sample_shape: tuple[int, int, int],
    sampler: SamplerConfig,
    training_scheduler_config: Any,
) -> torch.Tensor:
    """Denoise one batch: (N, *sample_shape) samples in the UNet's input space for (prompts[i], seeds[i])."""
    if len(prompts) != len(seeds):
        raise ProtocolError(
            f"prompts and seeds must have the same length, but got {len(prompts)} and {len(seeds)}"
        )
    device = next(unet.parameters()).device
    scheduler = make_sampler(sampler, training_scheduler_config)
    generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds]
    x = torch.cat([torch.randn((1, *sample_shape), generator=g) for g in generators]).to(device)
    x = x * scheduler.init_noise_sigma

    hidden, mask = text.encode(prompts)
    guided = sampler.guidance_scale > 1.0
    if guided:
        empty_hidden, empty_mask = text.encode([""] * len(prompts))
        hidden = torch.cat([empty_hidden, hidden])
        mask = None if mask is None else torch.cat([empty_mask, mask])
    step_kwargs: dict[str, Any] = {"generator": generators}
    if sampler.name == "ddim":
        step_kwargs["eta"] = sampler.eta

    for t in scheduler.timesteps:
        model_input = scheduler.scale_model_input(x, t)
        if guided:
            model_input = torch.cat([model_input, model_input])
        timestep = torch.full((model_input.shape[0],), int(t), dtype=torch.long, device=device)
        output = unet(model_input, timestep, encoder_hidden_states=hidden, encoder_attention_mask=mask).sample
        output = output.float()  # guidance and the scheduler step in float32, also under autocast
        if guided:
            unconditional, conditional = output.chunk(2)
            output = unconditional + sampler.guidance_scale * (conditional - unconditional)
        x = scheduler.step(output, t, x, **step_kwargs).prev_sample
    return x
