"""GPU figures of the paper track's scale: an SD2-base-size UNet's training throughput and extraction time.

Builds a diffusers ``UNet2DConditionModel`` with the Stable Diffusion 2 base configuration (written
below; 866M parameters, random weights: nothing is downloaded) and measures, printing JSON:

- training: images per second of one optimizer step (noise-prediction MSE on random latents and text
  states, fused AdamW, float32 weights under bf16 autocast, as accelerate's bf16 mixed precision does)
  at batch 64, eager and with ``torch.compile``; the step's FLOPs counted once with
  ``torch.utils.flop_counter.FlopCounterMode`` give the achieved TFLOP/s and the fraction of the bf16
  peak (``--peak-tflops``, default 989: H100 SXM dense bf16);
- extraction: seconds per image of ``cxrbench.attention.extract_cross_attention`` over the seed
  paper's 40 timesteps, batched (``--rows-per-forward`` rows a forward) vs one forward per timestep,
  and the cost of one forward with attn2 captured vs a plain (SDPA) forward.

Run on a GPU machine from the repository root::

    python scripts/gpu_bench.py                       # H100 / H200, bf16, batch 64
    python scripts/gpu_bench.py --peak-tflops 989 --batch 64 --steps 10

``--tiny`` runs a small UNet on the CPU in seconds (what the tests do). docs/performance.md has the
reference figures and the table these runs fill in.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

#: Stable Diffusion 2 base (stabilityai/stable-diffusion-2-base, unet/config.json), the UNet's shape only.
SD2_BASE_UNET: dict[str, Any] = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2,
    "attention_head_dim": [5, 10, 20, 20],
    "cross_attention_dim": 1024,
    "use_linear_projection": True,
    "norm_num_groups": 32,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "act_fn": "silu",
}
#: The same block structure at toy width, for CPU tests.
TINY_UNET: dict[str, Any] = {
    **SD2_BASE_UNET,
    "sample_size": 8,
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [32, 64],
    "layers_per_block": 1,
    "attention_head_dim": [2, 4],
    "cross_attention_dim": 32,
}
TEXT_TOKENS = 77  # CLIP's context length, as Stable Diffusion pads every prompt


def _significant(value: float, digits: int = 4) -> float:
    return float(f"{value:.{digits}g}")


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_seconds(fn: Callable[[], Any], device: torch.device, repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _synchronize(device)
        t0 = time.perf_counter()
        fn()
        _synchronize(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def build_unet(config: dict[str, Any], device: torch.device) -> torch.nn.Module:
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(**config).to(device)


def measure_training(unet: torch.nn.Module, config: dict[str, Any], batch: int, steps: int, warmup: int,
                     compile_model: bool, precision: str, device: torch.device, peak_tflops: float) -> dict[str, Any]:
    """Images per second of one training step, its FLOPs and the fraction of the bf16 peak."""
    from torch.utils.flop_counter import FlopCounterMode

    g = torch.Generator(device="cpu").manual_seed(1)
    size = config["sample_size"]
    latents = torch.randn((batch, config["in_channels"], size, size), generator=g).to(device)
    text = torch.randn((batch, TEXT_TOKENS, config["cross_attention_dim"]), generator=g).to(device)
    noise = torch.randn(latents.shape, generator=g).to(device)
    timesteps = torch.randint(0, 1000, (batch,), generator=g).to(device)
    unet.train()
    optimizer = torch.optim.AdamW(unet.parameters(), lr=5e-5, fused=device.type in ("cuda", "cpu"))
    model = torch.compile(unet) if compile_model else unet
    dtype = torch.bfloat16 if precision == "bf16" else None

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            prediction = model(latents, timesteps, encoder_hidden_states=text).sample
        loss = torch.nn.functional.mse_loss(prediction.float(), noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    flops = None
    if not compile_model:
        with FlopCounterMode(display=False) as counter:
            step()
        flops = counter.get_total_flops()
    seconds = _median_seconds(step, device, steps, warmup)
    out = {"step_s": round(seconds, 4), "img_per_s": round(batch / seconds, 2), "flops_per_step": flops}
    if flops is not None:
        out["tflops"] = _significant(flops / seconds / 1e12)
        out["fraction_of_peak"] = _significant(flops / seconds / 1e12 / peak_tflops)
    del optimizer
    return out


def measure_extraction(unet: torch.nn.Module, config: dict[str, Any], images: int, timesteps: int,
                       rows_per_forward: int, precision: str, device: torch.device, repeats: int) -> dict[str, Any]:
    """Seconds per image of batched vs sequential extraction, and a captured vs plain forward."""
    from diffusers import DDPMScheduler

    from cxrbench.attention import capture_cross_attention, extract_cross_attention
    from cxrbench.protocol import last_ddim_timesteps

    unet.eval()
    g = torch.Generator(device="cpu").manual_seed(2)
    size = config["sample_size"]
    clean = torch.randn((images, config["in_channels"], size, size), generator=g).to(device)
    text = torch.randn((images, TEXT_TOKENS, config["cross_attention_dim"]), generator=g).to(device)
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear")
    steps = last_ddim_timesteps(timesteps)
    dtype = torch.bfloat16 if precision == "bf16" else None

    def extract(rows: int) -> torch.Tensor:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            return extract_cross_attention(unet, clean, text, steps, scheduler, list(range(images)),
                                           rows_per_forward=rows)

    batched = _median_seconds(lambda: extract(rows_per_forward), device, repeats, 1)
    sequential = _median_seconds(lambda: extract(1), device, max(1, repeats // 2), 1)
    difference = float((extract(rows_per_forward) - extract(1)).abs().max())

    rows = min(rows_per_forward, images * len(steps))
    index = torch.arange(rows, device=device) % images
    t = torch.tensor(steps, device=device)[torch.arange(rows, device=device) % len(steps)]
    noisy = scheduler.add_noise(clean[index], torch.randn_like(clean[index]), t)

    def plain() -> None:
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            unet(noisy, t, encoder_hidden_states=text[index])

    def captured() -> None:
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            store.set_rows(index)
            unet(noisy, t, encoder_hidden_states=text[index])

    plain_s = _median_seconds(plain, device, repeats, 1)
    # The capture processors stay installed for all the forwards, as during an extraction.
    with capture_cross_attention(unet) as store:
        store.accumulate(images)
        captured_s = _median_seconds(captured, device, repeats, 1)
    return {
        "images": images,
        "timesteps": len(steps),
        "rows_per_forward": rows_per_forward,
        "batched_s_per_image": round(batched / images, 4),
        "sequential_s_per_image": round(sequential / images, 4),
        "speedup": round(sequential / batched, 2),
        "max_abs_diff": difference,
        "plain_forward_s": round(plain_s, 4),
        "captured_forward_s": round(captured_s, 4),
        "capture_overhead": round(captured_s / plain_s, 3),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a toy UNet on the CPU (for tests), no compile")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--batch", type=int, default=None, help="training batch (default 64; --tiny: 2)")
    parser.add_argument("--steps", type=int, default=None, help="timed training steps (default 10; --tiny: 2)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 3; --tiny: 1)")
    parser.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    parser.add_argument("--compile", dest="compile", action="store_true", default=None,
                        help="also time a torch.compile'd step (default on, except with --tiny)")
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    parser.add_argument("--peak-tflops", type=float, default=989.0,
                        help="dense bf16 peak of the GPU (default 989: H100 SXM; H200 is the same chip)")
    parser.add_argument("--extraction-images", type=int, default=None, help="default 4; --tiny: 2")
    parser.add_argument("--timesteps", type=int, default=None, help="extraction timesteps (default 40; --tiny: 4)")
    parser.add_argument("--rows-per-forward", type=int, default=40, help="extraction rows per batched forward")
    parser.add_argument("--repeats", type=int, default=None, help="timed extraction repeats (default 5; --tiny: 1)")
    args = parser.parse_args(argv)

    tiny = args.tiny
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() and not tiny else "cpu"))
    config = TINY_UNET if tiny else SD2_BASE_UNET
    batch = args.batch or (2 if tiny else 64)
    steps = args.steps or (2 if tiny else 10)
    warmup = args.warmup if args.warmup is not None else (1 if tiny else 3)
    compile_model = (not tiny) if args.compile is None else args.compile
    repeats = args.repeats or (1 if tiny else 5)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    unet = build_unet(config, device)
    result: dict[str, Any] = {
        "unet": "tiny" if tiny else "sd2-base",
        "parameters": sum(p.numel() for p in unet.parameters()),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine(),
        "precision": args.precision,
        "batch": batch,
        "peak_tflops": args.peak_tflops,
        "torch": torch.__version__,
    }
    try:
        import diffusers

        result["diffusers"] = diffusers.__version__
    except ImportError:  # pragma: no cover - diffusers is a dependency
        pass
    result["train_eager"] = measure_training(unet, config, batch, steps, warmup, False, args.precision, device,
                                             args.peak_tflops)
    if compile_model:
        compiled = measure_training(unet, config, batch, steps, warmup, True, args.precision, device,
                                    args.peak_tflops)
        flops = result["train_eager"]["flops_per_step"]
        compiled["flops_per_step"] = flops
        compiled["tflops"] = _significant(flops / compiled["step_s"] / 1e12)
        compiled["fraction_of_peak"] = _significant(flops / compiled["step_s"] / 1e12 / args.peak_tflops)
        result["train_compiled"] = compiled
    else:
        result["train_compiled"] = None
    if device.type == "cuda":
        torch.cuda.empty_cache()
    result["extraction"] = measure_extraction(
        unet, config, args.extraction_images or (2 if tiny else 4), args.timesteps or (4 if tiny else 40),
        args.rows_per_forward, args.precision, device, repeats)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
