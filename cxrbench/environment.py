"""Provenance of a run: interpreter, platform, library versions, device."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from typing import Any


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def environment_record(device: str = "cpu", world_size: int = 1) -> dict[str, Any]:
    import torch

    record: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(terse=True),
        "machine": platform.machine(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "world_size": world_size,
        "torch_compile": os.environ.get("CXRBENCH_COMPILE", "") == "1",
    }
    for dist in ("cxrbench", "diffusers", "transformers", "numpy", "torchmetrics", "pytorch-fid"):
        record[dist.replace("-", "_")] = _version(dist)
    if device.startswith("cuda") and torch.cuda.is_available():
        record["device_name"] = torch.cuda.get_device_name(0)
    return record
