"""Built-in datasets and feature extractors, registered through the same hooks as any plugin."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cxrbench.hookspecs import hookimpl


def _synthcxr(**params: Any) -> Any:
    from cxrbench.data.synthcxr import SynthCXR

    return SynthCXR(**params)


def _domain_evaluator() -> Any:
    from cxrbench.metrics.evaluator import DomainEvaluator

    return DomainEvaluator.load()


@hookimpl
def cxrbench_register_datasets(register: Callable[[str, Callable[..., object]], None]) -> None:
    register("synthcxr", _synthcxr)


@hookimpl
def cxrbench_register_feature_extractors(register: Callable[[str, Callable[..., object]], None]) -> None:
    register("domain", _domain_evaluator)
