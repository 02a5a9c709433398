"""Metric math of cxrbench: localization (per image and phrase), fidelity, bootstrap statistics.

Submodules load on first use, so ``import cxrbench.metrics`` costs no more than numpy:

- :mod:`cxrbench.metrics.localization`: AUC-ROC, CNR, pointing game, GMM IoU/mIoU, BioViL mIoU, ...
- :mod:`cxrbench.metrics.fidelity`: FID, KID, within-prompt MS-SSIM, conditional accuracy.
- :mod:`cxrbench.metrics.manifold`: precision and recall with k-nearest-neighbour manifolds.
- :mod:`cxrbench.metrics.evaluator`, :mod:`cxrbench.metrics.extractors`: the feature extractors (domain
  evaluator; Inception-V3 and torchxrayvision DenseNet-121 from local weights).
- :mod:`cxrbench.metrics.stats`: bootstrap intervals, per-class / macro aggregation, paired differences.

Definitions: docs/metrics.md.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "LOCALIZATION_METRICS": "localization",
    "localization_scores": "localization",
    "FIDELITY_METRICS": "fidelity",
    "fid_from_features": "fidelity",
    "kid_from_features": "fidelity",
    "ms_ssim_within_prompt": "fidelity",
    "conditional_accuracy": "fidelity",
    "precision_recall_from_features": "manifold",
    "aggregate_by_class": "stats",
    "bootstrap_ci": "stats",
    "paired_difference": "stats",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'cxrbench.metrics' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"cxrbench.metrics.{module_name}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
