"""The plugin manager: built-ins and third-party plugins load the same way, lazily and once.

Built-ins are a tuple of module paths registered like any entry point of the ``cxrbench`` group.
``CXRBENCH_LOAD_PLUGINS`` (comma-separated entry-point or distribution names; empty = none) restricts which
third-party plugins load; ``CXRBENCH_TRACE_PLUGINS=1`` prints every hook call. A plugin that fails to
import is recorded by name with its error, and the others still load.

Built-ins cannot be shadowed: ``cxrbench.builtins`` registers first, then the plugins the project ships
(``BUILT_IN_DISTRIBUTIONS``), then every other plugin. A name (model id, dataset, feature extractor, metric) that is
already registered (a metric's outputs included) is refused for the newcomer, recorded as a load error naming its plugin and the name;
the newcomer's other registrations still load.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from cxrbench import hookspecs
from cxrbench.errors import PluginError
from cxrbench.metric import Metric
from cxrbench.model import CAPABILITIES, Model

DEFAULT_PLUGINS: tuple[str, ...] = ("cxrbench.builtins",)
#: The model plugins shipped in the repository's ``plugins/`` folder: their entry points load before any
#: other plugin's, so no third-party plugin can take their model ids.
BUILT_IN_DISTRIBUTIONS: tuple[str, ...] = (
    "cxrbench-causal-encoder",
    "cxrbench-encoder-schedule",
    "cxrbench-frozen-encoder",
    "cxrbench-learnable-encoder",
    "cxrbench-lora-encoder",
    "cxrbench-partial-encoder",
    "cxrbench-stable-diffusion",
    "cxrbench-token-embedding",
)
ENTRY_POINT_GROUP = "cxrbench"
MODEL_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
#: Dataset and feature-extractor names: as model ids, and "+" for combined datasets ("mimic-cxr+ms-cxr").
FACTORY_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._+-]{0,63}$")


@dataclass(frozen=True)
class PluginInfo:
    name: str
    distribution: str
    version: str


@dataclass(frozen=True)
class ModelEntry:
    model_id: str
    cls: type[Model]
    plugin: PluginInfo

    @property
    def capabilities(self) -> tuple[str, ...]:
        return tuple(sorted(self.cls.capabilities))


@dataclass(frozen=True)
class FactoryEntry:
    name: str
    factory: Callable[..., Any]
    plugin: PluginInfo


@dataclass(frozen=True)
class MetricEntry:
    metric: Metric
    plugin: PluginInfo

    @property
    def source(self) -> str | None:
        """The distribution that registered a third-party metric; None for a built-in one."""
        return None if self.plugin.distribution == "cxrbench" else self.plugin.distribution


@dataclass(frozen=True)
class LoadError:
    plugin: str
    distribution: str
    error: str


@dataclass
class Registry:
    plugin_manager: pluggy.PluginManager
    plugins: dict[str, PluginInfo] = field(default_factory=dict)
    models: dict[str, ModelEntry] = field(default_factory=dict)
    datasets: dict[str, FactoryEntry] = field(default_factory=dict)
    feature_extractors: dict[str, FactoryEntry] = field(default_factory=dict)
    metrics: dict[str, MetricEntry] = field(default_factory=dict)
    errors: list[LoadError] = field(default_factory=list)

    def model(self, model_id: str) -> ModelEntry:
        try:
            return self.models[model_id]
        except KeyError:
            raise PluginError(
                f"model must be one of {sorted(self.models)}, but got {model_id!r}"
                + self._errors_hint()
            ) from None

    def dataset(self, name: str) -> FactoryEntry:
        try:
            return self.datasets[name]
        except KeyError:
            raise PluginError(f"dataset must be one of {sorted(self.datasets)}, but got {name!r}") from None

    def metrics_needing(self, needs: str) -> list[MetricEntry]:
        """The registered metrics of one kind of input (``cxrbench.metric.NEEDS``), in registration order."""
        return [entry for entry in self.metrics.values() if entry.metric.needs == needs]

    def _errors_hint(self) -> str:
        if not self.errors:
            return ""
        return " (plugins that failed to load: " + ", ".join(e.plugin for e in self.errors) + ")"


def _selected(names: tuple[str, ...]) -> bool:
    wanted = os.environ.get("CXRBENCH_LOAD_PLUGINS")
    if wanted is None:
        return True
    allowed = {n.strip() for n in wanted.split(",") if n.strip()}
    return any(n in allowed for n in names)


def _distribution_of(module_name: str) -> str:
    top = module_name.split(".")[0]
    dists = metadata.packages_distributions().get(top, [])
    return dists[0] if dists else top


def _own_info(module_name: str) -> PluginInfo:
    try:
        version = metadata.version("cxrbench")
    except metadata.PackageNotFoundError:
        version = "0+unknown"
    return PluginInfo(module_name, "cxrbench", version)


def build_registry(extra_plugins: tuple[tuple[str, object], ...] = ()) -> Registry:
    """Create the plugin manager, load built-ins and entry points, and collect what they register.

    ``extra_plugins``: (name, module-or-object) pairs registered after the entry points, as a test or an
    embedding program does; they are attributed to the distribution that defines them.
    """
    pm = pluggy.PluginManager("cxrbench")
    pm.add_hookspecs(hookspecs)
    registry = Registry(pm)
    for module_name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(module_name), name=module_name)
        registry.plugins[module_name] = _own_info(module_name)
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=_entry_point_order):
        dist = ep.dist.name if ep.dist is not None else "?"
        version = ep.dist.version if ep.dist is not None else "?"
        if not _selected((ep.name, dist)) or ep.name in registry.plugins:
            continue
        try:
            module = ep.load()
            pm.register(module, name=ep.name)
        except Exception as exc:  # a broken plugin must not take the others down
            registry.errors.append(LoadError(ep.name, dist, f"{type(exc).__name__}: {exc}"))
            continue
        registry.plugins[ep.name] = PluginInfo(ep.name, dist, version)
    for name, plugin in extra_plugins:
        pm.register(plugin, name=name)
        module = getattr(plugin, "__module__", None) or getattr(plugin, "__name__", "?")
        registry.plugins[name] = PluginInfo(name, _distribution_of(module), "0+local")
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {exc.plugin!r} implements a hook that does not exist: {exc}") from None
    if os.environ.get("CXRBENCH_TRACE_PLUGINS"):
        pm.trace.root.setwriter(lambda msg: print(msg, end="", file=sys.stderr))
        pm.enable_tracing()
    _collect(registry)
    return registry


def _entry_point_order(ep: metadata.EntryPoint) -> tuple[bool, str]:
    """The project's own plugins first, then the others; by entry-point name within each."""
    dist = ep.dist.name if ep.dist is not None else ""
    return dist not in BUILT_IN_DISTRIBUTIONS, ep.name


def _call_each(registry: Registry, hook_name: str, make_register: Callable[[PluginInfo], Callable]) -> None:
    """Call each plugin's ``hook_name`` in registration order: the first to register a name keeps it."""
    hook = getattr(registry.plugin_manager.hook, hook_name)
    order = {name: i for i, name in enumerate(registry.plugins)}
    for impl in sorted(hook.get_hookimpls(), key=lambda impl: order.get(impl.plugin_name, len(order))):
        info = registry.plugins.get(impl.plugin_name) or PluginInfo(impl.plugin_name, "?", "?")
        try:
            impl.function(register=make_register(info))
        except PluginError as exc:
            registry.errors.append(LoadError(info.name, info.distribution, str(exc)))
        except Exception as exc:
            registry.errors.append(LoadError(info.name, info.distribution, f"{hook_name}: {type(exc).__name__}: {exc}"))


def _collect(registry: Registry) -> None:
    def model_register(info: PluginInfo) -> Callable[[type], None]:
        def register(cls: type) -> None:
            _check_model_class(cls, info)
            model_id = cls.model_id
            if model_id in registry.models:
                _refuse(registry, "model id", model_id, info, registry.models[model_id].plugin)
                return
            registry.models[model_id] = ModelEntry(model_id, cls, info)

        return register

    def factory_register(table: dict[str, FactoryEntry], kind: str) -> Callable[[PluginInfo], Callable]:
        def make(info: PluginInfo) -> Callable[[str, Callable[..., Any]], None]:
            def register(name: str, factory: Callable[..., Any]) -> None:
                if not isinstance(name, str) or not FACTORY_NAME_PATTERN.match(name):
                    raise PluginError(f"{kind} name must match {FACTORY_NAME_PATTERN.pattern}, but got {name!r}")
                if not callable(factory):
                    raise PluginError(f"{kind} {name!r} from {info.distribution}: factory must be callable")
                if name in table:
                    _refuse(registry, kind, name, info, table[name].plugin)
                    return
                table[name] = FactoryEntry(name, factory, info)

            return register

        return make

    _call_each(registry, "cxrbench_register_models", model_register)
    _call_each(registry, "cxrbench_register_metrics", lambda info: _metric_register(registry, info))
    _call_each(registry, "cxrbench_register_datasets", factory_register(registry.datasets, "dataset"))
    _call_each(
        registry, "cxrbench_register_feature_extractors",
        factory_register(registry.feature_extractors, "feature extractor"),
    )


def _metric_register(registry: Registry, info: PluginInfo) -> Callable[[Metric], None]:
    def register(metric: Metric) -> None:
        if not isinstance(metric, Metric):
            raise PluginError(f"metric from {info.distribution}: register takes a cxrbench.metric.Metric, "
                              f"but got {type(metric).__name__}")
        problems = metric.problems()
        if problems:
            raise PluginError(f"metric {metric.name!r} from {info.distribution}: " + "; ".join(problems))
        taken = {name: entry for entry in registry.metrics.values()
                 for name in (entry.metric.name, *entry.metric.directions)}
        clash = next((n for n in (metric.name, *metric.directions) if n in taken), None)
        if clash is not None:
            _refuse(registry, "metric", clash, info, taken[clash].plugin)
            return
        registry.metrics[metric.name] = MetricEntry(metric, info)

    return register


def _refuse(registry: Registry, kind: str, name: str, newcomer: PluginInfo, owner: PluginInfo) -> None:
    """Record that ``newcomer`` may not register ``name``, which ``owner`` registered first."""
    registry.errors.append(LoadError(newcomer.name, newcomer.distribution, (
        f"{kind} {name!r} from {newcomer.distribution} is refused: it is already registered by "
        f"{owner.distribution} ({owner.name}), which loads first and cannot be shadowed"
    )))


def _check_model_class(cls: Any, info: PluginInfo) -> None:
    where = f"model class {getattr(cls, '__qualname__', cls)!r} from {info.distribution}"
    if not (isinstance(cls, type) and issubclass(cls, Model)):
        raise PluginError(f"{where}: must be a subclass of cxrbench.Model")
    if not isinstance(cls.model_id, str) or not MODEL_ID_PATTERN.match(cls.model_id):
        raise PluginError(f"{where}: model_id must match {MODEL_ID_PATTERN.pattern}, but got {cls.model_id!r}")
    unknown = set(cls.capabilities) - CAPABILITIES
    if unknown or not cls.capabilities:
        raise PluginError(
            f"{where}: capabilities must be a non-empty subset of {sorted(CAPABILITIES)}, but got {sorted(cls.capabilities)}"
        )


def plugin_record_problems(plugin: dict[str, Any], registry: Registry | None = None) -> list[str]:
    """How a result's ``plugin`` record contradicts the installed registry, as messages (empty: it agrees).

    A registered model id must name the distribution that registers it and carry its ``baseline`` label
    (null for a competing model); a baseline's label belongs to its model only. A model id this
    installation does not know is not checked.
    """
    registry = registry or get_registry()
    model_id, claimed = plugin.get("model"), plugin.get("baseline") or None
    entry = registry.models.get(model_id) if isinstance(model_id, str) else None
    problems: list[str] = []
    if entry is not None:
        if plugin.get("distribution") != entry.plugin.distribution:
            problems.append(f"plugin distribution {plugin.get('distribution')!r} does not match the registry: model "
                            f"{model_id!r} is registered by {entry.plugin.distribution!r}")
        if claimed != (entry.cls.baseline or None):
            problems.append(f"plugin baseline {claimed!r} does not match the registry: model {model_id!r} has "
                            f"baseline {entry.cls.baseline or None!r}")
    owners = [e.model_id for e in registry.models.values() if claimed and e.cls.baseline == claimed]
    if owners and model_id not in owners:
        problems.append(f"plugin baseline {claimed!r} is the label of baseline {owners[0]!r}, not of model {model_id!r}")
    return problems


_REGISTRY: Registry | None = None


def get_registry(refresh: bool = False) -> Registry:
    """The process-wide registry, built on first use."""
    global _REGISTRY
    if _REGISTRY is None or refresh:
        _REGISTRY = build_registry()
    return _REGISTRY
