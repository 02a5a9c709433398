"""Turn a model's outputs into the metrics of a result: the core scores, never the plugin.

The metrics are the registered ones (``cxrbench.metric``; the built-ins in ``cxrbench.metrics.builtin``).
Localization: every (test sample, finding) query, every token group the model returned, every map metric;
aggregated overall, macro over classes and per class with bootstrap intervals; then the per-sample metrics
on those scores. Fidelity: every feature metric (FID, KID, precision and recall, and any plugin's) on each
feature extractor the run uses (generated vs held-out real test images), MS-SSIM within each prompt's
sample set, conditional accuracy of the domain evaluator.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cxrbench.data.schema import Sample
from cxrbench.errors import AssetUnavailable, PluginError, ProtocolError
from cxrbench.metric import FEATURES, MAPS, SAMPLES
from cxrbench.metrics.stats import N_BOOTSTRAP
from cxrbench.model import TOKEN_GROUPS, LocalizationQuery

#: Resamples of the interval the core gives a third-party metric that returns a bare number (each resample
#: calls the metric again, so fewer than ``N_BOOTSTRAP``).
N_SET_BOOTSTRAP = 200


@dataclass
class Scores:
    """Metrics, per-class tables and per-sample lines of one run, in the result schema's shape."""

    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    per_class: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    per_sample: list[dict[str, Any]] = field(default_factory=list)
    evaluators: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: What fidelity was computed from, shipped beside the result (``cxrbench.rederive``): float32 arrays
    #: ``features/<extractor>`` (generated images' features) and ``probabilities/domain`` (the domain
    #: evaluator's outputs on them).
    features: dict[str, np.ndarray] = field(default_factory=dict)

    def put(self, name: str, stat: dict[str, Any], higher_is_better: bool, note: str | None = None,
            source: str | None = None, description: str | None = None) -> None:
        """Record metric ``name``; ``source`` and ``description`` mark a metric registered by a plugin."""
        entry = {
            "value": _num(stat.get("value")),
            "ci_low": _num(stat.get("ci_low")),
            "ci_high": _num(stat.get("ci_high")),
            "n": int(stat.get("n", 0) or 0),
            "higher_is_better": bool(higher_is_better),
        }
        if note:
            entry["note"] = note
        if source is not None:
            entry["source"], entry["description"] = source, description or ""
        self.metrics[name] = entry

    def unavailable(self, name: str, higher_is_better: bool, note: str, **provenance: str) -> None:
        self.put(name, {"value": None, "n": 0}, higher_is_better, note, **provenance)


def _nan_if_none(x: Any) -> float:
    value = _num(x)
    return float("nan") if value is None else value


def _num(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _metrics_of(registry: Any, needs: str) -> list[Any]:
    """The registered metrics of one kind of input (``cxrbench.metric``), in registration order."""
    if registry is None:
        from cxrbench.registry import get_registry

        registry = get_registry()
    return registry.metrics_needing(needs)


def metric_outputs(entry: Any, value: Any) -> dict[str, Any]:
    """A metric's return value as ``{output: value}``; raises ValueError when its keys are not its outputs."""
    directions = entry.metric.directions
    if not isinstance(value, Mapping):
        if len(directions) != 1:
            raise ValueError(f"metric {entry.metric.name!r} must return a dict with keys {sorted(directions)}, "
                             f"but returned {type(value).__name__}")
        return {next(iter(directions)): value}
    if set(value) != set(directions):
        raise ValueError(f"metric {entry.metric.name!r} must return the keys {sorted(directions)}, "
                         f"but returned {sorted(value)}")
    return dict(value)


def _provenance(entry: Any) -> dict[str, str]:
    """What a plugin's metric entry carries besides its figures (nothing for a built-in metric)."""
    if entry.source is None:
        return {}
    return {"source": entry.source, "description": entry.metric.description}


def _map_scores(metrics: Sequence[Any], heatmap: np.ndarray, boxes: list[Any], shape: tuple[int, int],
                group: str, failures: dict[str, str]) -> dict[str, float]:
    """Every map metric's outputs for one map, as ``loc_<group>_<output>``.

    A third-party metric that raises scores ``nan`` on this map, and the first such error of each output is
    kept in ``failures`` for its note; a built-in metric's error propagates.
    """
    values: dict[str, float] = {}
    for entry in metrics:
        try:
            outputs = metric_outputs(entry, entry.metric.compute(heatmap, boxes, shape))
            outputs = {name: float("nan") if v is None else float(v) for name, v in outputs.items()}
        except Exception as exc:
            if entry.source is None:
                raise
            outputs = {name: float("nan") for name in entry.metric.directions}
            for name in outputs:
                failures.setdefault(f"loc_{group}_{name}", f"{entry.source}: {type(exc).__name__}: {exc}")
        values.update((f"loc_{group}_{name}", value) for name, value in outputs.items())
    return values


def score_localization(
    scores: Scores,
    queries: Sequence[LocalizationQuery],
    maps: Sequence[dict[str, np.ndarray]],
    samples_by_id: dict[str, Sample],
    seed: int,
    registry: Any = None,
) -> None:
    """Score every query's maps against the union of its finding's boxes with every registered map metric,
    then every per-sample metric on the lines (``cxrbench.metric``)."""
    from cxrbench.metrics.localization import boxes_without_pixel

    if len(maps) != len(queries):
        raise PluginError(f"localize returned {len(maps)} map sets for {len(queries)} queries")
    metrics = _metrics_of(registry, MAPS)
    records: list[dict[str, Any]] = []
    groups_seen: set[str] = set()
    failures: dict[str, str] = {}
    widened = 0
    for query, group_maps in zip(queries, maps):
        sample = samples_by_id[query.sample_id]
        finding = next(f for f in sample.findings if f.label == query.label and f.phrase == query.phrase)
        widened += boxes_without_pixel(finding.boxes, *sample.image.shape) > 0
        if "word" not in group_maps:
            raise PluginError(f"localize must return a 'word' map for every query; sample {query.sample_id} has none")
        line: dict[str, Any] = {"sample_id": query.sample_id, "label": query.label, "phrase": query.phrase}
        metric_values: dict[str, float] = {}
        for group, heatmap in sorted(group_maps.items()):
            if group not in TOKEN_GROUPS:
                raise PluginError(f"token group must be one of {TOKEN_GROUPS}, but got {group!r}")
            heatmap = np.asarray(heatmap, dtype=np.float64)
            if heatmap.shape != sample.image.shape:
                raise PluginError(
                    f"localize returned a {heatmap.shape} map for sample {query.sample_id}, "
                    f"but its image is {sample.image.shape}"
                )
            groups_seen.add(group)
            metric_values.update(_map_scores(metrics, heatmap, list(finding.boxes), sample.image.shape, group,
                                             failures))
        line["metrics"] = metric_values
        scores.per_sample.append(line)
        records.append({"label": query.label, **metric_values})
    aggregate_localization(scores, records, groups_seen, seed, registry)
    note_boxes_without_pixel(scores, widened, len(queries))
    for name, message in failures.items():  # after the box note, which would replace it
        scores.metrics[name]["note"] = f"not computed on some maps ({message})"
    score_sample_metrics(scores, scores.per_sample, seed, registry)


def note_boxes_without_pixel(scores: Scores, widened: int, total: int) -> None:
    """Say on every localization metric how many queries had a box that covers no pixel centre.

    Such a box is scored on the pixel that contains its centre (``box_pixels``, docs/metrics.md).
    """
    if widened == 0:
        return
    note = (f"{widened} of {total} queries have a box that covers no pixel centre; "
            "each such box is scored on the pixel that contains its centre")
    for name, entry in scores.metrics.items():
        if name.startswith("loc_"):
            entry["note"] = note


def aggregate_localization(scores: Scores, records: Sequence[dict[str, Any]], groups: Iterable[str], seed: int,
                           registry: Any = None) -> None:
    """Overall, macro and per-class statistics of per-(sample, finding) scores of the token ``groups``.

    Each record is ``{"label": <class>, "loc_<group>_<metric>": float, ...}``: the lines of a result's
    per-sample file; ``cxrbench.rederive`` calls this on them to re-derive a result's figures. The metrics
    are the registered map metrics' outputs (``cxrbench.metric.MAPS``).
    """
    from cxrbench.metrics.stats import aggregate_by_class

    groups = set(groups)
    metrics = _metrics_of(registry, MAPS)
    outputs = [(entry, name, higher) for entry in metrics for name, higher in entry.metric.directions.items()]
    names = [f"loc_{g}_{name}" for g in TOKEN_GROUPS if g in groups for _, name, _ in outputs]
    if not names:
        return
    records = [{name: float("nan") for name in names} | dict(record) for record in records]
    aggregates = aggregate_by_class(records, names, n_boot=N_BOOTSTRAP, seed=seed)
    for group in TOKEN_GROUPS:
        for entry, output, higher in outputs if group in groups else ():
            name = f"loc_{group}_{output}"
            scores.put(name, aggregates[name]["overall"], higher, **_provenance(entry))
            scores.put(f"{name}_macro", aggregates[name]["macro"], higher, **_provenance(entry))
            scores.per_class[name] = aggregates[name]["per_class"]


def score_sample_metrics(scores: Scores, lines: Sequence[dict[str, Any]], seed: int, registry: Any = None) -> None:
    """Every registered per-sample metric (``cxrbench.metric.SAMPLES``) on the per-sample ``lines``, with a
    percentile-bootstrap interval over the lines (``N_SET_BOOTSTRAP`` resamples)."""
    for entry in _metrics_of(registry, SAMPLES):
        def statistic(chosen: Sequence[dict[str, Any]], entry: Any = entry) -> dict[str, Any]:
            return metric_outputs(entry, entry.metric.compute(list(chosen)))

        _put_resampled(scores, entry, statistic, list(lines), seed, "", "the per-sample lines")


def _put_resampled(scores: Scores, entry: Any, statistic: Any, units: list[Any], seed: int, suffix: str,
                   over: str) -> None:
    """``statistic(units)`` of a third-party metric with percentile-bootstrap intervals over ``units``.

    A metric that raises is reported as not available (its message in the note); the run goes on.
    """
    try:
        values = statistic(units)
        rng = np.random.default_rng(seed)
        draws = [statistic([units[i] for i in rng.integers(0, len(units), len(units))])
                 for _ in range(N_SET_BOOTSTRAP)] if len(units) > 1 else []
    except Exception as exc:
        for name, higher in entry.metric.directions.items():
            scores.unavailable(f"{name}{suffix}", higher, f"not available: {type(exc).__name__}: {exc}",
                               **_provenance(entry))
        return
    for name, higher in entry.metric.directions.items():
        value = _num(values[name])
        low = high = value
        if draws and value is not None:
            low, high = (float(q) for q in np.nanpercentile([_nan_if_none(d[name]) for d in draws], [2.5, 97.5]))
        scores.put(f"{name}{suffix}", {"value": value, "ci_low": low, "ci_high": high, "n": len(units)}, higher,
                   note=f"interval: bootstrap over {over} ({N_SET_BOOTSTRAP} resamples)", **_provenance(entry))


def _metric_of(name: str) -> str:
    """``loc_<group>_<metric>`` -> ``<metric>`` (groups may contain underscores)."""
    rest = name[len("loc_"):]
    for group in sorted(TOKEN_GROUPS, key=len, reverse=True):
        if rest.startswith(group + "_"):
            return rest[len(group) + 1:]
    raise ValueError(f"not a localization metric name: {name!r}")


def feature_extractors_to_run(
    registered: Iterable[str],
    track_extractors: Sequence[str],
    requested: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[str]:
    """The feature extractors a run scores fidelity with, sorted.

    ``requested`` (a run's explicit list) wins when given; its names must be registered. Otherwise: the
    track's ``feature_extractors``, plus every registered extractor that needs no configuration, plus each
    optional built-in (``inception``, ``xrv``) whose weights variable (``CXRBENCH_INCEPTION_WEIGHTS``,
    ``CXRBENCH_XRV_WEIGHTS``) is set in ``environ`` (default ``os.environ``). An extractor in the list whose
    weights turn out to be missing is reported as unavailable, never skipped.

    Raises:
        ProtocolError: a requested name is not a registered feature extractor.
    """
    from cxrbench.metrics.extractors import WEIGHTS_ENV

    names = sorted(registered)
    if requested is not None:
        unknown = sorted(set(requested) - set(names))
        if unknown:
            raise ProtocolError(f"feature extractors must be among {names}, but got {unknown}")
        return sorted(set(requested))
    environ = os.environ if environ is None else environ
    chosen = set(track_extractors)
    for name in names:
        variable = WEIGHTS_ENV.get(name)
        if variable is None or environ.get(variable):
            chosen.add(name)
    return sorted(chosen)


def _describe(name: str, extractor: Any) -> dict[str, Any]:
    if hasattr(extractor, "describe"):
        return {"name": name, **extractor.describe(), "available": True}
    return {
        "name": name,
        "sha256": getattr(extractor, "sha256", None),
        "resize_method": getattr(extractor, "resize_method", None),
        "feature_dim": getattr(extractor, "feature_dim", None),
        "available": True,
    }


def feature_metric_outputs(registry: Any = None) -> dict[str, bool]:
    """The prefix (``<prefix>_<extractor>``) and direction of every metric computed per feature extractor."""
    return {name: higher for entry in _metrics_of(registry, FEATURES)
            for name, higher in entry.metric.directions.items()}


def score_fidelity(
    scores: Scores,
    real_images: np.ndarray,
    generated: np.ndarray,
    prompt_index: np.ndarray,
    prompted_labels: Sequence[tuple[str, ...]],
    feature_extractors: dict[str, Any],
    seed: int,
    registry: Any = None,
) -> None:
    """Every registered feature metric per feature extractor, MS-SSIM within prompt, conditional accuracy.

    ``prompt_index[i]`` is the prompt that generated image ``i``; ``prompted_labels[p]`` its finding labels.
    ``feature_extractors`` maps a name to a zero-argument factory (see :func:`feature_extractors_to_run`);
    one that raises AssetUnavailable is reported as unavailable ("not available: <reason>") for each
    feature metric (:func:`feature_metric_outputs`) and in ``scores.evaluators``. Conditional accuracy needs ``domain``.
    The generated images' features and the domain evaluator's outputs go to ``scores.features``.
    """
    from cxrbench.metrics.fidelity import FIDELITY_METRICS, ms_ssim_within_prompt

    domain = None
    for name, factory in sorted(feature_extractors.items()):
        try:
            extractor = factory()
        except AssetUnavailable as exc:
            note = f"not available: {exc}"
            for entry in _metrics_of(registry, FEATURES):
                for prefix, higher in entry.metric.directions.items():
                    scores.unavailable(f"{prefix}_{name}", higher, note, **_provenance(entry))
            scores.evaluators[name] = {"name": name, "available": False, "note": note}
            continue
        if name == "domain":
            domain = extractor
        scores.evaluators[name] = _describe(name, extractor)
        generated_features = as_shipped(extractor.features(generated))
        scores.features[f"features/{name}"] = generated_features.astype(np.float32)
        score_extractor(scores, name, as_shipped(extractor.features(real_images)), generated_features, prompt_index,
                        seed, registry)

    sets = [generated[prompt_index == p] for p in range(len(prompted_labels))]
    ms = ms_ssim_within_prompt(sets)
    scores.put(
        "ms_ssim_within_prompt", {**ms, "n": ms["n_prompts"]}, FIDELITY_METRICS["ms_ssim_within_prompt"]["higher_is_better"],
        note=f"{ms['n_pairs']} pairs, {ms['scales']} scales; lower = more diverse",
    )
    labels_per_image = [prompted_labels[p] for p in prompt_index]
    if domain is None:
        score_conditional(scores, None, labels_per_image)
        return
    probabilities = as_shipped(domain.predict_proba(generated))
    scores.features["probabilities/domain"] = probabilities.astype(np.float32)
    score_conditional(scores, probabilities, labels_per_image)


def as_shipped(array: np.ndarray) -> np.ndarray:
    """``array`` rounded to float32, the precision a result's features file keeps, as float64.

    Fidelity is scored from these values, so the figures re-derive exactly from the shipped file.
    (The built-in extractors compute in float32, so for them this changes nothing.)
    """
    return np.asarray(array, dtype=np.float32).astype(np.float64)


def score_extractor(scores: Scores, name: str, real_features: np.ndarray, generated_features: np.ndarray,
                    prompt_ids: np.ndarray, seed: int, registry: Any = None) -> None:
    """Every registered feature metric (``<output>_<name>``) from the two feature sets of extractor ``name``.

    ``prompt_ids[i]``: the prompt of generated image i. A metric that returns entries keeps their
    intervals; one that returns a bare number gets a bootstrap interval over prompts.
    """
    prompt_ids = np.asarray(prompt_ids)
    for entry in _metrics_of(registry, FEATURES):
        if entry.source is not None:
            _score_plugin_features(scores, entry, name, real_features, generated_features, prompt_ids, seed)
            continue
        for output, value in metric_outputs(entry, entry.metric.compute(real_features, generated_features,
                                                                        prompt_ids, seed)).items():
            stat = value if isinstance(value, Mapping) else {"value": value, "n": len(generated_features)}
            scores.put(f"{output}_{name}", stat, entry.metric.directions[output], note=stat.get("note"))


def _score_plugin_features(scores: Scores, entry: Any, name: str, real: np.ndarray, generated: np.ndarray,
                           prompt_ids: np.ndarray, seed: int) -> None:
    """A third-party feature metric, with a bootstrap interval over whole prompts."""
    prompts = sorted(set(prompt_ids.tolist()))
    rows = {p: np.flatnonzero(prompt_ids == p) for p in prompts}

    def statistic(chosen: Sequence[int]) -> dict[str, Any]:
        index = np.concatenate([rows[p] for p in chosen]) if chosen else np.zeros(0, dtype=int)
        # resampled prompts get new ids, so that a prompt drawn twice counts as two prompts
        ids = np.concatenate([np.full(len(rows[p]), i) for i, p in enumerate(chosen)]) if chosen else index
        return metric_outputs(entry, entry.metric.compute(real, generated[index], ids, seed))

    _put_resampled(scores, entry, statistic, prompts, seed, f"_{name}", "prompts")


def score_conditional(scores: Scores, probabilities: np.ndarray | None,
                      labels_per_image: Sequence[tuple[str, ...]]) -> None:
    """``cond_auroc`` (with its per-class table) and ``cond_top1`` from the domain evaluator's outputs.

    ``probabilities`` None: the domain evaluator is missing, both are reported as unavailable.
    """
    from cxrbench.metrics.fidelity import FIDELITY_METRICS, conditional_accuracy

    if probabilities is None:
        scores.unavailable("cond_auroc", True, "not available: domain evaluator missing")
        scores.unavailable("cond_top1", True, "not available: domain evaluator missing")
        return
    cond = conditional_accuracy(probabilities, labels_per_image)
    scores.put("cond_auroc", {"value": cond["auroc_macro"], "n": len(labels_per_image)},
               FIDELITY_METRICS["cond_auroc"]["higher_is_better"],
               note="domain evaluator AUROC, prompted finding vs prompted normal, macro over findings")
    scores.put("cond_top1", {"value": cond["top1"], "n": len(labels_per_image)},
               FIDELITY_METRICS["cond_top1"]["higher_is_better"])
    scores.per_class["cond_auroc"] = {
        label: {"value": _num(v), "ci_low": None, "ci_high": None, "n": 0}
        for label, v in cond["auroc_per_class"].items()
    }
