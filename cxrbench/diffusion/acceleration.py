"""How the UNet runs fast on the machine at hand, at the same math: ``torch.compile``, opt-in per run.

Inductor fuses the hundreds of small operators of a step of the small default-track UNet (norms,
activations, reshapes, the elementwise work around each matmul) into a few kernels; ``cxrbench bench
training --compile`` measures what that buys against eager PyTorch in the same process. Its first
compilation of a graph costs minutes on 2 cores (with a warm cache, in the machine's temporary folder, a
few seconds), so it is asked for per run: ``cxrbench run --compile`` sets ``CXRBENCH_COMPILE=1`` for the
run's processes. Training and sampling forwards are compiled; attention extraction, which swaps
attention processors, stays eager. Channels-last memory layout, the other candidate for the convolutions,
is measured by the same bench and not used (docs/performance.md).
"""

from __future__ import annotations

import os
from typing import Any

import torch

#: Set to "1" to compile the UNet's training and sampling forwards (``cxrbench run --compile``).
COMPILE_ENV = "CXRBENCH_COMPILE"


def compile_requested() -> bool:
    """Whether this process was asked to compile (``CXRBENCH_COMPILE=1``)."""
    return os.environ.get(COMPILE_ENV, "") == "1"


def compiled(unet: torch.nn.Module) -> Any:
    """``unet`` compiled with inductor (static shapes); it shares ``unet``'s parameters. The caller keeps it
    for as long as it runs forwards of the same shapes (compilation happens at the first call)."""
    return torch.compile(unet, dynamic=False)
