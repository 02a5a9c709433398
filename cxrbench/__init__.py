"""cxrbench: fine-tune chest X-ray text-to-image models under one protocol; score fidelity and grounding."""

from cxrbench.hookspecs import hookimpl
from cxrbench.model import (
    ExtractionConfig,
    FitContext,
    LocalizationQuery,
    Model,
    ModelOptions,
    SamplerConfig,
    TrainingBudget,
)

__version__ = "0.1.0"

__all__ = [
    "ExtractionConfig", "FitContext", "LocalizationQuery", "Model", "ModelOptions", "SamplerConfig",
    "TrainingBudget", "hookimpl", "__version__",
]
