"""Speed of attention extraction, measured: ``cxrbench bench extraction [--json]``.

``extraction`` builds the UNet of ``cxrbench.diffusion`` at the default track's size (64 px images
pixel-unshuffled to 16 x 16 x 16, the ``DiffusionOptions`` defaults, all-MiniLM-L6-v2's 384-d text
states), with random weights from a fixed seed and random text states of the right shape behind a
padding mask, and measures on the same inputs:

- (a) batched extraction: ``extract_cross_attention`` with every (image, timestep) row in batched
  forwards of ``rows_per_forward`` rows (the model's default);
- (b) sequential extraction: the same call with one UNet forward per (image, timestep), as the seed
  paper's code loops over timesteps;
- (c) one UNet forward of ``rows_per_forward`` rows with the UNet's own attention processors (SDPA)
  vs the same forward with the cross-attention (``attn2``) captured into running sums (on a copy of
  the UNet whose capture processors stay installed, as during an extraction).

Timesteps default to the seed paper's: the last 40 of 50 DDIM steps (781 ... 1). (a) and (b), and the
two forwards of (c), alternate within every repetition so that other load on the machine affects both;
each figure is the median over the repetitions after a warm-up. ``speedup`` = (b) / (a);
``capture_overhead`` = captured / plain forward; ``max_abs_diff``: the largest difference between the
maps of (a) and (b), which must agree to 1e-5. docs/performance.md has measured figures.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cxrbench.protocol import last_ddim_timesteps

#: Hidden size of all-MiniLM-L6-v2, the default text encoder (the UNet's cross-attention width).
MINILM_HIDDEN = 384
#: The checks ``cxrbench bench extraction`` reports.
MAX_ABS_DIFF = 1e-5
MIN_SPEEDUP = 5.0
MAX_CAPTURE_OVERHEAD = 1.2


@dataclass
class ExtractionSetup:
    """The UNet, scheduler and inputs every extraction measurement uses."""

    unet: Any
    scheduler: Any
    clean: Any
    text: Any
    mask: Any
    timesteps: tuple[int, ...]
    noise_seeds: list[int]
    rows_per_forward: int
    device: Any

    def extract(self, rows_per_forward: int | None) -> Any:
        from cxrbench.attention import extract_cross_attention

        return extract_cross_attention(self.unet, self.clean, self.text, self.timesteps, self.scheduler,
                                       self.noise_seeds, encoder_attention_mask=self.mask,
                                       rows_per_forward=rows_per_forward)

    def forward_inputs(self) -> tuple[Any, Any, Any, Any, Any]:
        """One forward's worth of rows, ``rows_per_forward`` of them cycling over images and timesteps:
        (image of each row, noisy samples, timesteps, text states, mask)."""
        import torch

        rows = self.rows_per_forward
        n, num_t = self.clean.shape[0], len(self.timesteps)
        image = torch.arange(rows, device=self.device) % n
        t = torch.tensor(self.timesteps, device=self.device)[torch.arange(rows, device=self.device) % num_t]
        noise = torch.randn((rows, *self.clean.shape[1:]), generator=torch.Generator().manual_seed(1))
        noisy = self.scheduler.add_noise(self.clean[image], noise.to(self.device), t)
        return image, noisy, t, self.text[image], self.mask[image]


def build_extraction_setup(images: int = 4, timesteps: int = 40, rows_per_forward: int | None = None,
                           device: str = "cpu", seed: int = 0) -> ExtractionSetup:
    """The default track's UNet with random weights (``seed``) and ``images`` random inputs."""
    import torch
    from diffusers import DDPMScheduler

    from cxrbench.diffusion.model import DiffusionOptions
    from cxrbench.diffusion.unet import build_unet, unshuffle_factor_for
    from cxrbench.protocol import get_track

    opts = DiffusionOptions()
    size = get_track("default").image_size
    factor = unshuffle_factor_for(size, opts.unshuffle_factor, len(opts.block_out_channels))
    torch.manual_seed(seed)
    unet = build_unet(in_channels=factor**2, cross_attention_dim=MINILM_HIDDEN,
                      block_out_channels=tuple(opts.block_out_channels), layers_per_block=opts.layers_per_block,
                      attention_heads=opts.attention_heads, norm_num_groups=opts.norm_num_groups)
    unet = unet.to(device).eval()
    g = torch.Generator().manual_seed(seed + 1)
    grid = size // factor
    clean = torch.rand((images, factor**2, grid, grid), generator=g) * 2 - 1
    text = torch.randn((images, opts.max_tokens, MINILM_HIDDEN), generator=g)
    # Reports of 10 to 25 tokens padded to max_tokens, as the default track's prompts.
    lengths = torch.randint(10, min(26, opts.max_tokens + 1), (images,), generator=g)
    mask = (torch.arange(opts.max_tokens)[None] < lengths[:, None]).long()
    scheduler = DDPMScheduler(num_train_timesteps=opts.num_train_timesteps, beta_schedule=opts.beta_schedule)
    return ExtractionSetup(
        unet=unet, scheduler=scheduler, clean=clean.to(device), text=text.to(device), mask=mask.to(device),
        timesteps=last_ddim_timesteps(timesteps), noise_seeds=[1000 + i for i in range(images)],
        rows_per_forward=int(rows_per_forward or opts.extraction_rows_per_forward), device=torch.device(device),
    )


def _timer(device: Any) -> Callable[[Callable[[], Any]], tuple[float, Any]]:
    import torch

    def run(fn: Callable[[], Any]) -> tuple[float, Any]:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - t0, out

    return run


def _plain_and_captured_forwards(setup: ExtractionSetup, stack: contextlib.ExitStack
                                 ) -> tuple[Callable[[], Any], Callable[[], Any]]:
    """(c)'s two forwards of the same rows: the UNet's own, and a copy of it with the capture processors
    installed (entered on ``stack``) for the whole measurement, as extraction installs them once for all
    its forwards; each captured forward sets its rows, as extraction does."""
    import torch

    from cxrbench.attention import capture_cross_attention

    image, noisy, t, text, mask = setup.forward_inputs()

    def plain() -> Any:
        with torch.no_grad():
            return setup.unet(noisy, t, encoder_hidden_states=text, encoder_attention_mask=mask).sample

    capturing = copy.deepcopy(setup.unet)
    store = stack.enter_context(capture_cross_attention(capturing))
    store.accumulate(len(setup.clean))

    def captured() -> Any:
        with torch.no_grad():
            store.set_rows(image)
            return capturing(noisy, t, encoder_hidden_states=text, encoder_attention_mask=mask).sample

    return plain, captured


def _measure(setup: ExtractionSetup, repeats: int, warmup: int, plain: Callable[[], Any],
             captured: Callable[[], Any]) -> tuple[dict[str, list[float]], float]:
    """Seconds of every measured repetition of (a), (b) and (c)'s two forwards, and the largest difference
    between the maps of (a) and (b)."""
    timed = _timer(setup.device)
    measured: dict[str, list[float]] = {"batched": [], "sequential": [], "plain": [], "captured": []}
    maps: dict[str, Any] = {}
    for repetition in range(warmup + repeats):
        # Alternate which goes first, so that a burst of other load does not always hit the same one.
        order = ("batched", "sequential") if repetition % 2 == 0 else ("sequential", "batched")
        for name in order:
            rows = setup.rows_per_forward if name == "batched" else 1
            seconds, maps[name] = timed(functools.partial(setup.extract, rows))
            if repetition >= warmup:
                measured[name].append(seconds)
        for name in (("plain", "captured") if repetition % 2 == 0 else ("captured", "plain")):
            seconds, _ = timed(plain if name == "plain" else captured)
            if repetition >= warmup:
                measured[name].append(seconds)
    return measured, float((maps["batched"] - maps["sequential"]).abs().max())


def run_extraction_bench(images: int = 4, timesteps: int = 40, rows_per_forward: int | None = None,
                         repeats: int = 5, warmup: int = 1, device: str = "cpu",
                         threads: int | None = None) -> dict[str, Any]:
    """Measure (a) batched vs (b) sequential extraction and (c) plain vs captured forwards; see the module
    docstring. Returns the figures as a JSON-ready dict."""
    import torch

    if threads:
        torch.set_num_threads(int(threads))
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    setup = build_extraction_setup(images, timesteps, rows_per_forward, device)
    with contextlib.ExitStack() as stack:
        plain, captured = _plain_and_captured_forwards(setup, stack)
        measured, max_abs_diff = _measure(setup, repeats, warmup, plain, captured)
    return {
        **_bench_figures(measured, max_abs_diff, images),
        "samples_s": {k: [round(x, 4) for x in v] for k, v in measured.items()},
        "images": images,
        "timesteps": len(setup.timesteps),
        "timestep_values": list(setup.timesteps),
        "rows_per_forward": setup.rows_per_forward,
        "forwards_batched": -(-images * len(setup.timesteps) // setup.rows_per_forward),
        "forwards_sequential": images * len(setup.timesteps),
        "repeats": repeats,
        "warmup": warmup,
        "unet_parameters": sum(p.numel() for p in setup.unet.parameters()),
        "device": str(setup.device),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_1min": [load_before, os.getloadavg()[0] if hasattr(os, "getloadavg") else None],
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def _bench_figures(measured: dict[str, list[float]], max_abs_diff: float, images: int) -> dict[str, Any]:
    """Speedup, capture overhead, the checks on them and the median seconds."""
    median = {k: statistics.median(v) for k, v in measured.items()}
    speedup = median["sequential"] / median["batched"]
    overhead = median["captured"] / median["plain"]
    return {
        "speedup": round(speedup, 2),
        "max_abs_diff": max_abs_diff,
        "capture_overhead": round(overhead, 3),
        "checks": {
            f"max_abs_diff<={MAX_ABS_DIFF:g}": max_abs_diff <= MAX_ABS_DIFF,
            f"speedup>={MIN_SPEEDUP:g}": speedup >= MIN_SPEEDUP,
            f"capture_overhead<={MAX_CAPTURE_OVERHEAD:g}": overhead <= MAX_CAPTURE_OVERHEAD,
        },
        "batched_s": round(median["batched"], 4),
        "sequential_s": round(median["sequential"], 4),
        "batched_s_per_image": round(median["batched"] / images, 4),
        "sequential_s_per_image": round(median["sequential"] / images, 4),
        "plain_forward_s": round(median["plain"], 4),
        "captured_forward_s": round(median["captured"], 4),
    }
