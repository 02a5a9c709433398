"""What every speed measurement shares: a timer, the machine's matmul peak, FLOP counting, interleaved runs."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.flop_counter import (
    FlopCounterMode,
    register_flop_formula,
    sdpa_backward_flop_count,
    sdpa_flop_count,
)

#: Side of the square float32 matmul whose speed stands for the machine's peak.
PEAK_MATMUL_SIDE = 2048


def _register_cpu_attention_flops() -> None:
    """Count the CPU flash-attention kernels as FlopCounterMode counts the CUDA ones (it lacks formulas for
    the CPU variants, so an attention-heavy step would look cheaper than it is)."""
    aten = torch.ops.aten
    forward = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    backward = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)
    from torch.utils.flop_counter import flop_registry

    if forward is not None and forward not in flop_registry:
        @register_flop_formula(forward)
        def _forward(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
            return sdpa_flop_count(query_shape, key_shape, value_shape)

    if backward is not None and backward not in flop_registry:
        @register_flop_formula(backward)
        def _backward(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None,
                      **kwargs) -> int:
            return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def count_flops(fn: Callable[[], Any]) -> int:
    """Floating-point operations of one call of ``fn`` (FlopCounterMode: matmuls, convolutions, attention)."""
    _register_cpu_attention_flops()
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    """Seconds of one call of ``fn`` (synchronized on CUDA)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def matmul_peak_gflops(device: torch.device, side: int = PEAK_MATMUL_SIDE, repeats: int = 5) -> float:
    """GFLOP/s of a ``side`` x ``side`` float32 matmul on ``device`` (median of ``repeats`` after a warm-up):
    the machine's own peak, measured in the same process as the figures it is compared with."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(side, side, generator=g).to(device)
    b = torch.randn(side, side, generator=g).to(device)
    for _ in range(2):
        a @ b
    seconds = statistics.median(timed(lambda: a @ b, device) for _ in range(repeats))
    return 2 * side**3 / seconds / 1e9


def interleaved_medians(variants: dict[str, Callable[[], Any]], repeats: int, warmup: int,
                        device: torch.device) -> dict[str, list[float]]:
    """Seconds of every call of each variant: ``warmup`` untimed rounds, then ``repeats`` rounds in which
    the variants take turns (the order rotates each round), so other load on the machine affects all alike."""
    names = list(variants)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(warmup + repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            seconds = timed(variants[name], device)
            if round_index >= warmup:
                samples[name].append(seconds)
    return samples


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "device": "cpu" if not torch.cuda.is_available() else torch.cuda.get_device_name(),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
