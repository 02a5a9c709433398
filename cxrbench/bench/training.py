"""Speed of a default-track run's three heavy parts against the machine's own peak:
``cxrbench bench training [--json] [--compile]``.

One process builds the default track's model (``cxrbench.diffusion.DiffusionModel`` with its default
options at the track's image size) and measures, on the same inputs:

- a **frozen step** (UNet forward, backward, gradient clipping and fused AdamW; text states from the
  frozen encoder's cache) and a **learnable step** (the same with all-MiniLM-L6-v2 trained too), at the
  track's batch size, through ``cxrbench.diffusion.training.training_step``, the code a fit runs;
- one **DDIM sampling step** of the generation batch (``generation_batch_size`` images, no gradients);
- one **batched extraction forward** (``extraction_rows_per_forward`` (image, timestep) rows with
  ``attn2`` captured, as ``localize`` runs it).

Each is timed in up to three variants that compute the same thing: ``eager`` (plain PyTorch, what a run
does by default), ``channels_last`` (the UNet's weights in NHWC layout, a lever measured and not used)
and, with ``--compile``, ``compiled`` (``torch.compile``, what ``cxrbench run --compile`` does; its first
call's compilation is timed apart). The variants take turns in every repetition; figures are medians.
FLOPs are counted once per part with ``torch.utils.flop_counter.FlopCounterMode``; the peak is a 2048 x
2048 float32 matmul timed in the same process, so ``fraction_of_peak`` and ``speedup_vs_eager`` are ratios
taken in one run. The headline figures are those of the run's path (``compiled`` with ``--compile``, else
``eager``); ``variants_s`` has every variant's.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch

from cxrbench.bench.common import count_flops, interleaved_medians, machine, matmul_peak_gflops, timed
from cxrbench.diffusion.acceleration import compiled
from cxrbench.diffusion.model import DiffusionModel
from cxrbench.diffusion.sampling import make_sampler
from cxrbench.diffusion.timing import disk_samples
from cxrbench.diffusion.training import step_settings, training_step
from cxrbench.protocol import get_track

TRACK = "default"


def _unet_variants(unet: torch.nn.Module, with_compile: bool) -> dict[str, torch.nn.Module]:
    """Copies of ``unet`` (same weights) in each layout; ``compiled`` wraps the channels-last copy."""
    eager = copy.deepcopy(unet)
    variants: dict[str, Any] = {"eager": eager,
                                "channels_last": copy.deepcopy(unet).to(memory_format=torch.channels_last)}
    if with_compile:
        variants["compiled"] = (eager, compiled(eager))
    return variants


def _forward_of(variant: Any) -> tuple[torch.nn.Module, Any]:
    """(module that owns the weights, what runs the forward) of a variant (``compiled`` shares ``eager``'s)."""
    return variant if isinstance(variant, tuple) else (variant, variant)


def _training_calls(train_text_encoder: bool, with_compile: bool, seed: int) -> tuple[dict[str, Callable], int]:
    """One training step per variant as a call, and that step's FLOPs."""
    track = get_track(TRACK)
    torch.manual_seed(seed)
    model = DiffusionModel({"train_text_encoder": train_text_encoder})
    model.build(track.image_size, "cpu")
    budget = track.budget
    g = torch.Generator().manual_seed(seed)
    prompts = [s.report for s in disk_samples(budget.batch_size, track.image_size)]
    x0 = torch.rand((budget.batch_size, *model.space.sample_shape(track.image_size)), generator=g) * 2 - 1
    noise = torch.randn(x0.shape, generator=g)
    timesteps = torch.randint(0, model.noise_scheduler.config.num_train_timesteps, (len(prompts),), generator=g)
    model.text.encode(prompts)  # a frozen encoder's cache is filled once per prompt, as in a fit
    calls = {}
    for name, variant in _unet_variants(model.unet, with_compile).items():
        owner, forward = _forward_of(variant)
        owner.train()
        settings = step_settings(owner, model.text, budget, budget.text_encoder_learning_rate, max_grad_norm=1.0)
        calls[name] = (lambda f=forward, s=settings:
                       training_step(f, model.text, model.noise_scheduler, x0, noise, timesteps, prompts, s))
    return calls, count_flops(calls["eager"])


def _sampling_calls(with_compile: bool, seed: int) -> tuple[dict[str, Callable], int]:
    """One DDIM step of the generation batch per variant, and its FLOPs."""
    track = get_track(TRACK)
    torch.manual_seed(seed)
    model = DiffusionModel()
    model.build(track.image_size, "cpu")
    batch = model.options.generation_batch_size
    prompts = [s.report for s in disk_samples(batch, track.image_size)]
    hidden, mask = model.text.encode(prompts)
    scheduler = make_sampler(track.sampler, model.noise_scheduler.config)
    t = scheduler.timesteps[0]
    x = torch.randn((batch, *model.space.sample_shape(track.image_size)), generator=torch.Generator().manual_seed(seed))
    timestep = torch.full((batch,), int(t), dtype=torch.long)

    def step(forward: Any) -> Any:
        with torch.no_grad():
            out = forward(scheduler.scale_model_input(x, t), timestep, encoder_hidden_states=hidden,
                          encoder_attention_mask=mask).sample
            return scheduler.step(out, t, x).prev_sample

    calls = {name: (lambda v=variant: step(_forward_of(v)[1]))
             for name, variant in _unet_variants(model.unet, with_compile).items()}
    return calls, count_flops(calls["eager"])


def _extraction_calls(seed: int) -> tuple[dict[str, Callable], int]:
    """One batched extraction forward (attn2 captured) per layout, and its FLOPs. Extraction is never
    compiled (it swaps attention processors)."""
    from cxrbench.attention import extract_cross_attention
    from cxrbench.bench.extraction import build_extraction_setup

    track = get_track(TRACK)
    rows = DiffusionModel().options.extraction_rows_per_forward
    timesteps = len(track.extraction.timesteps)
    setup = build_extraction_setup(images=max(1, rows // timesteps), timesteps=timesteps, rows_per_forward=rows,
                                   seed=seed)
    setup = replace(setup, timesteps=tuple(track.extraction.timesteps))

    def extract(unet: torch.nn.Module) -> Any:
        return extract_cross_attention(unet, setup.clean, setup.text, setup.timesteps, setup.scheduler,
                                       setup.noise_seeds, encoder_attention_mask=setup.mask, rows_per_forward=rows)

    calls = {name: (lambda u=unet: extract(u)) for name, unet in _unet_variants(setup.unet, False).items()}
    return calls, count_flops(calls["eager"])


def _figures(samples: dict[str, list[float]], flops: int, peak: float, path: str) -> dict[str, Any]:
    median = {name: statistics.median(values) for name, values in samples.items()}
    step = median[path]
    return {
        "step_s": round(step, 4),
        "gflops_per_s": round(flops / step / 1e9, 2),
        "fraction_of_peak": round(flops / step / 1e9 / peak, 3),
        "speedup_vs_eager": round(median["eager"] / step, 3),
        "gflop": round(flops / 1e9, 3),
        "path": path,
        "variants_s": {name: round(value, 4) for name, value in median.items()},
        "samples_s": {name: [round(v, 4) for v in values] for name, values in samples.items()},
    }


def run_training_bench(repeats: int = 10, warmup: int = 2, threads: int | None = None,
                       with_compile: bool = False, seed: int = 0) -> dict[str, Any]:
    """Measure every part (see the module docstring); JSON-ready figures."""
    if threads:
        torch.set_num_threads(int(threads))
    device = torch.device("cpu")
    path = "compiled" if with_compile else "eager"
    parts: dict[str, Any] = {}
    compile_s: dict[str, float] = {}
    builders = {
        "frozen": lambda: _training_calls(False, with_compile, seed),
        "learnable": lambda: _training_calls(True, with_compile, seed),
        "sampling": lambda: _sampling_calls(with_compile, seed),
        "extraction": lambda: _extraction_calls(seed),
    }
    peak = matmul_peak_gflops(device)
    for part, build in builders.items():
        calls, flops = build()
        if "compiled" in calls:
            compile_s[part] = round(timed(calls["compiled"], device), 1)
        samples = interleaved_medians(calls, repeats, warmup, device)
        parts[part] = _figures(samples, flops, peak, path if part != "extraction" else "eager")
    frozen = parts["frozen"]
    return {
        "train_step_s": frozen["step_s"],
        "train_gflops_per_s": frozen["gflops_per_s"],
        "peak_gflops_per_s": round(peak, 2),
        "fraction_of_peak": frozen["fraction_of_peak"],
        "speedup_vs_eager": frozen["speedup_vs_eager"],
        **parts,
        "compile_s": compile_s,
        "repeats": repeats,
        "warmup": warmup,
        "measured_at": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
    }


def describe(figures: dict[str, Any]) -> str:
    """The figures as a few lines of text."""
    peak = f"float32 matmul peak: {figures['peak_gflops_per_s']:.0f} GFLOP/s ({figures['machine']['threads']} threads)"
    lines = [peak]
    for part in ("frozen", "learnable", "sampling", "extraction"):
        f = figures[part]
        variants = ", ".join(f"{k} {v:.3f} s" for k, v in f["variants_s"].items())
        lines.append(f"{part:10s} {f['gflop']:7.2f} GFLOP  {variants}  -> {f['gflops_per_s']:.0f} GFLOP/s, "
                     f"{100 * f['fraction_of_peak']:.0f}% of peak, {f['speedup_vs_eager']:.2f}x eager")
    if figures["compile_s"]:
        lines.append("first compiled call (s): " + ", ".join(f"{k} {v}" for k, v in figures["compile_s"].items()))
    return "\n".join(lines)
