"""Feature arrays as the fidelity metrics take them: checked 2-D float64 (samples, features) pairs."""

from __future__ import annotations

from typing import Any

import numpy as np


def as_features(features: Any, name: str) -> np.ndarray:
    """``features`` as a finite 2-D float64 array of at least 2 samples; ValueError naming ``name`` if not."""
    array = np.asarray(features, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"`{name}` must be a 2-D (samples, features) array, but got shape {array.shape}")
    if array.shape[0] < 2:
        raise ValueError(f"`{name}` must hold at least 2 samples, but got {array.shape[0]}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"`{name}` must be finite, but it holds nan/inf")
    return array


def paired_features(real: Any, generated: Any) -> tuple[np.ndarray, np.ndarray]:
    """``real`` and ``generated`` as :func:`as_features` arrays of one feature dimension; ValueError if not."""
    real_array = as_features(real, "real")
    generated_array = as_features(generated, "generated")
    if real_array.shape[1] != generated_array.shape[1]:
        raise ValueError(
            "`real` and `generated` must have the same feature dimension, but got "
            f"{real_array.shape[1]} and {generated_array.shape[1]}"
        )
    return real_array, generated_array
