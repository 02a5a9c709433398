"""Each candidate lever for the default track's training step, measured in one process against the same
baseline: what it buys, and the share of the machine's float32 matmul peak the step reaches with it.

    python scripts/speed_levers.py [--repeats 10] [--compile] [--json FILE]

The baseline is a frozen-encoder training step as a default-track fit runs it (``training_step``: batch 32,
the (32, 64)-channel UNet on the 16 x 16 x 16 grid, SDPA attention, fused AdamW, text states from the
frozen encoder's cache). Every lever is a variant of that step that computes the same thing (or, marked
"model change", a different UNet at the same image size); all variants take turns in every repetition, so
a noisy machine slows them alike. Figures are medians; ``gain`` = baseline seconds / variant seconds.
docs/performance.md holds the table this prints.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
from collections.abc import Callable
from typing import Any

import torch

from cxrbench.bench.common import count_flops, interleaved_medians, machine, matmul_peak_gflops, timed
from cxrbench.diffusion.acceleration import compiled
from cxrbench.diffusion.model import DiffusionModel
from cxrbench.diffusion.timing import disk_samples
from cxrbench.diffusion.training import StepSettings, step_settings, training_step
from cxrbench.protocol import get_track

TRACK = get_track("default")


class _Step:
    """A frozen training step on fixed inputs, for one UNet (and optional changes to how it runs)."""

    def __init__(self, model: DiffusionModel, unet: torch.nn.Module, forward: Any = None,
                 fused: bool = True, cached_text: bool = True, threads: int | None = None) -> None:
        g = torch.Generator().manual_seed(0)
        budget = TRACK.budget
        self.model, self.unet = model, unet
        self.forward = unet if forward is None else forward
        self.prompts = [s.report for s in disk_samples(budget.batch_size, TRACK.image_size)]
        self.x0 = torch.rand((budget.batch_size, *model.space.sample_shape(TRACK.image_size)), generator=g) * 2 - 1
        self.noise = torch.randn(self.x0.shape, generator=g)
        self.t = torch.randint(0, 1000, (budget.batch_size,), generator=g)
        self.settings: StepSettings = step_settings(unet, model.text, budget, budget.text_encoder_learning_rate, 1.0)
        if not fused:
            groups = [{"params": g["params"], "lr": g["lr"]} for g in self.settings.optimizer.param_groups]
            self.settings.optimizer = torch.optim.AdamW(groups, weight_decay=budget.weight_decay, foreach=True)
            self.settings.schedule = None  # constant learning rate after warmup, as the baseline's at this point
        self.cached_text, self.threads = cached_text, threads
        unet.train()

    def __call__(self) -> float:
        saved = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        if not self.cached_text:
            self.model.text._cache.clear()
        try:
            return training_step(self.forward, self.model.text, self.model.noise_scheduler, self.x0, self.noise,
                                 self.t, self.prompts, self.settings)
        finally:
            torch.set_num_threads(saved)


def _model(**options: Any) -> DiffusionModel:
    torch.manual_seed(0)
    model = DiffusionModel(options)
    model.build(TRACK.image_size, "cpu")
    return model


def _levers(with_compile: bool) -> dict[str, tuple[str, Callable[[], float]]]:
    """name -> (what it is, its step). The first is the baseline."""
    from diffusers.models.attention_processor import AttnProcessor

    base = _model()
    math_attention = copy.deepcopy(base.unet)
    math_attention.set_attn_processor(AttnProcessor())
    levers = {
        "baseline": ("eager, SDPA attention, fused AdamW, cached frozen text states, 2 threads",
                     _Step(base, base.unet)),
        "channels_last": ("UNet weights and activations in NHWC layout",
                          _Step(base, copy.deepcopy(base.unet).to(memory_format=torch.channels_last))),
        "math_attention": ("attention as matmul + softmax (diffusers AttnProcessor) instead of SDPA",
                           _Step(base, math_attention)),
        "foreach_adamw": ("AdamW with foreach instead of the fused kernel", _Step(base, copy.deepcopy(base.unet),
                                                                                   fused=False)),
        "no_text_cache": ("frozen encoder run on every batch instead of once per prompt",
                          _Step(base, copy.deepcopy(base.unet), cached_text=False)),
        "one_thread": ("1 thread (as each of --jobs 2 runs has)", _Step(base, copy.deepcopy(base.unet), threads=1)),
    }
    wide = _model(block_out_channels=(24, 48), norm_num_groups=24)
    levers["model_24_48"] = ("model change: (24, 48) channels instead of (32, 64)", _Step(wide, wide.unet))
    grid8 = _model(unshuffle_factor=8, block_out_channels=(64, 128))
    levers["model_grid_8"] = ("model change: 8 x 8 x 64 grid, (64, 128) channels", _Step(grid8, grid8.unet))
    if with_compile:
        unet = copy.deepcopy(base.unet)
        levers["compile"] = ("torch.compile (inductor), compiled once before timing", _Step(base, unet, compiled(unet)))
    return levers


def measure(repeats: int, with_compile: bool) -> dict[str, Any]:
    levers = _levers(with_compile)
    device = torch.device("cpu")
    compile_s = timed(levers["compile"][1], device) if with_compile else None
    peak = matmul_peak_gflops(device)
    samples = interleaved_medians({k: v[1] for k, v in levers.items()}, repeats, 2, device)
    median = {k: statistics.median(v) for k, v in samples.items()}
    rows = []
    for name, (what, step) in levers.items():
        flops = count_flops(step)
        rows.append({"lever": name, "what": what, "step_s": round(median[name], 4),
                     "gain": round(median["baseline"] / median[name], 3), "gflop": round(flops / 1e9, 2),
                     "fraction_of_peak": round(flops / median[name] / 1e9 / peak, 3)})
    return {"peak_gflops_per_s": round(peak, 1), "compile_s": compile_s, "levers": rows,
            "samples_s": {k: [round(x, 4) for x in v] for k, v in samples.items()}, "machine": machine()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--compile", action="store_true", help="also the torch.compile lever (minutes to compile)")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args(argv)
    figures = measure(args.repeats, args.compile)
    print(f"float32 matmul peak {figures['peak_gflops_per_s']} GFLOP/s, {figures['machine']['threads']} threads")
    print("| lever | what | s / step | gain | GFLOP / step | share of peak |")
    print("|---|---|---|---|---|---|")
    for r in figures["levers"]:
        print(f"| {r['lever']} | {r['what']} | {r['step_s']:.3f} | {r['gain']:.2f}x | {r['gflop']:.1f} | "
              f"{100 * r['fraction_of_peak']:.0f}% |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
