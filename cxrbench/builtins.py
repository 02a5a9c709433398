"""Built-in models (the box-prior, nearest-report and real-images baselines), datasets, feature extractors and metrics, registered
through the same hooks as any plugin."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cxrbench.hookspecs import hookimpl


def _synthcxr(**params: Any) -> Any:
    from cxrbench.data.synthcxr import SynthCXR

    return SynthCXR(**params)


def _synthcxr_base(**params: Any) -> Any:
    from cxrbench.data.synthcxr_base import SynthCXRBase

    return SynthCXRBase(**params)


def _synthcxr_openi(**params: Any) -> Any:
    from cxrbench.data.openi import OpenISynthCXR

    return OpenISynthCXR(**params)


def _real(class_name: str) -> Callable[..., Any]:
    """A lazy factory of a real-dataset adapter (root from ``root`` or its CXRBENCH_*_ROOT variable)."""

    def factory(**params: Any) -> Any:
        from cxrbench.data import adapters

        return getattr(adapters, class_name)(**params)

    return factory


def _domain_evaluator() -> Any:
    from cxrbench.metrics.evaluator import DomainEvaluator

    return DomainEvaluator.load()


def _inception() -> Any:
    from cxrbench.metrics.extractors import InceptionExtractor

    return InceptionExtractor.load()


def _xrv() -> Any:
    from cxrbench.metrics.extractors import XRVExtractor

    return XRVExtractor.load()


@hookimpl
def cxrbench_register_models(register: Callable[[type], None]) -> None:
    from cxrbench.box_prior import BoxPriorModel
    from cxrbench.nearest_report import NearestReportModel
    from cxrbench.real_images import RealImagesModel

    register(BoxPriorModel)
    register(NearestReportModel)
    register(RealImagesModel)


@hookimpl
def cxrbench_register_datasets(register: Callable[[str, Callable[..., object]], None]) -> None:
    register("synthcxr", _synthcxr)
    register("synthcxr-openi", _synthcxr_openi)
    register("synthcxr-base", _synthcxr_base)
    register("mimic-cxr+ms-cxr", _real("MimicCXR"))
    register("chestx-ray14", _real("ChestXray14"))
    register("vindr-cxr", _real("VinDrCXR"))
    register("chexpert", _real("CheXpert"))


@hookimpl
def cxrbench_register_feature_extractors(register: Callable[[str, Callable[..., object]], None]) -> None:
    register("domain", _domain_evaluator)
    register("inception", _inception)
    register("xrv", _xrv)


@hookimpl
def cxrbench_register_metrics(register: Callable[[object], None]) -> None:
    from cxrbench.metrics.builtin import BUILT_IN_METRICS

    for metric in BUILT_IN_METRICS:
        register(metric)
