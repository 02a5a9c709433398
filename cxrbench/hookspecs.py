"""Hook specifications: the only contract a plugin sees.

A plugin is a module with functions marked ``@cxrbench.hookimpl`` whose names are hooks below; it is
found through the ``cxrbench`` entry-point group. Collection hooks take a ``register`` callback, so the
core validates and de-duplicates everything in one place.
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

hookspec = pluggy.HookspecMarker("cxrbench")
hookimpl = pluggy.HookimplMarker("cxrbench")


@hookspec
def cxrbench_register_models(register: Callable[[type], None]) -> None:
    """Register model classes (subclasses of ``cxrbench.Model``) by calling ``register(cls)``."""


@hookspec
def cxrbench_register_datasets(register: Callable[[str, Callable[..., object]], None]) -> None:
    """Register dataset factories: ``register(name, factory)``; ``factory(**params)`` returns a Dataset."""


@hookspec
def cxrbench_register_feature_extractors(register: Callable[[str, Callable[..., object]], None]) -> None:
    """Register fidelity feature extractors: ``register(name, factory)``; ``factory()`` returns one.

    A factory raises ``cxrbench.errors.AssetUnavailable`` when its local weights are missing; the metric
    is then reported as unavailable and the run goes on.
    """


@hookspec
def cxrbench_register_metrics(register: Callable[[object], None]) -> None:
    """Register metrics: ``register(cxrbench.metric.Metric(...))``.

    A metric declares what it needs (attention maps and boxes, generated and real features, or per-sample
    scores), its direction and how it is computed; the core computes its intervals, writes it into every
    result and puts it on the leaderboard (``cxrbench.metric``). Its name and outputs must be new: a name
    that is already registered is refused, as for models.
    """
