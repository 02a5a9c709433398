"""Turn a model's outputs into the metrics of a result: the core scores, never the plugin.

Localization: every (test sample, finding) query, every token group the model returned, every metric of
``cxrbench.metrics.localization``; aggregated overall, macro over classes and per class with bootstrap
intervals. Fidelity: FID, KID, precision and recall on each feature extractor the run uses (generated vs
held-out real test images), MS-SSIM within each prompt's sample set, conditional accuracy of the domain
evaluator.
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
from cxrbench.model import TOKEN_GROUPS, LocalizationQuery

N_BOOTSTRAP = 1000
#: Neighbourhood size of the precision/recall manifolds (Kynkaanniemi et al. 2019).
PRECISION_RECALL_K = 3
#: The metrics computed on every feature extractor, as ``<prefix>_<extractor>``.
PER_EXTRACTOR_METRICS: tuple[str, ...] = ("fid", "kid", "precision", "recall")


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

    def put(self, name: str, stat: dict[str, Any], higher_is_better: bool, note: str | None = None) -> None:
        entry = {
            "value": _num(stat.get("value")),
            "ci_low": _num(stat.get("ci_low")),
            "ci_high": _num(stat.get("ci_high")),
            "n": int(stat.get("n", 0) or 0),
            "higher_is_better": bool(higher_is_better),
        }
        if note:
            entry["note"] = note
        self.metrics[name] = entry

    def unavailable(self, name: str, higher_is_better: bool, note: str) -> None:
        self.put(name, {"value": None, "n": 0}, higher_is_better, note)


def _num(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def score_localization(
    scores: Scores,
    queries: Sequence[LocalizationQuery],
    maps: Sequence[dict[str, np.ndarray]],
    samples_by_id: dict[str, Sample],
    seed: int,
) -> None:
    """Score every query's maps against the union of its finding's boxes."""
    from cxrbench.metrics.localization import boxes_without_pixel, localization_scores

    if len(maps) != len(queries):
        raise PluginError(f"localize returned {len(maps)} map sets for {len(queries)} queries")
    records: list[dict[str, Any]] = []
    groups_seen: set[str] = set()
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
            for metric, value in localization_scores(heatmap, list(finding.boxes), sample.image.shape).items():
                metric_values[f"loc_{group}_{metric}"] = value
        line["metrics"] = metric_values
        scores.per_sample.append(line)
        records.append({"label": query.label, **metric_values})
    aggregate_localization(scores, records, groups_seen, seed)
    note_boxes_without_pixel(scores, widened, len(queries))


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


def aggregate_localization(scores: Scores, records: Sequence[dict[str, Any]], groups: Iterable[str], seed: int) -> None:
    """Overall, macro and per-class statistics of per-(sample, finding) scores of the token ``groups``.

    Each record is ``{"label": <class>, "loc_<group>_<metric>": float, ...}``: the lines of a result's
    per-sample file; ``cxrbench.rederive`` calls this on them to re-derive a result's figures.
    """
    from cxrbench.metrics.localization import LOCALIZATION_METRICS
    from cxrbench.metrics.stats import aggregate_by_class

    groups = set(groups)
    names = [f"loc_{g}_{m}" for g in TOKEN_GROUPS if g in groups for m in LOCALIZATION_METRICS]
    aggregates = aggregate_by_class(records, names, n_boot=N_BOOTSTRAP, seed=seed)
    for name in names:
        metric = _metric_of(name)
        higher = LOCALIZATION_METRICS[metric]["higher_is_better"]
        scores.put(name, aggregates[name]["overall"], higher)
        scores.put(f"{name}_macro", aggregates[name]["macro"], higher)
        scores.per_class[name] = aggregates[name]["per_class"]


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


def _score_manifold(scores: Scores, name: str, real: np.ndarray, generated: np.ndarray, seed: int) -> None:
    """``precision_<name>`` and ``recall_<name>`` with bootstrap intervals over the covered set."""
    from cxrbench.metrics.fidelity import FIDELITY_METRICS
    from cxrbench.metrics.manifold import precision_recall_from_features
    from cxrbench.metrics.stats import bootstrap_ci

    k = PRECISION_RECALL_K
    if min(len(real), len(generated)) <= k:
        note = f"not available: needs more than k={k} real and generated images"
        scores.unavailable(f"precision_{name}", True, note)
        scores.unavailable(f"recall_{name}", True, note)
        return
    report = precision_recall_from_features(real, generated, k=k)
    counts = f"{report['n_real']} real vs {report['n_generated']} generated, k={k}"
    for metric, inside, over in (("precision", report["generated_inside"], "generated"),
                                 ("recall", report["real_inside"], "real")):
        value, low, high = bootstrap_ci(inside.astype(np.float64), n_boot=N_BOOTSTRAP, seed=seed)
        scores.put(
            f"{metric}_{name}", {"value": value, "ci_low": low, "ci_high": high, "n": inside.size},
            FIDELITY_METRICS[metric]["higher_is_better"],
            note=f"{counts}; interval: bootstrap over {over} images, manifolds fixed",
        )


def score_fidelity(
    scores: Scores,
    real_images: np.ndarray,
    generated: np.ndarray,
    prompt_index: np.ndarray,
    prompted_labels: Sequence[tuple[str, ...]],
    feature_extractors: dict[str, Any],
    seed: int,
) -> None:
    """FID/KID/precision/recall per feature extractor, MS-SSIM within prompt, conditional accuracy.

    ``prompt_index[i]`` is the prompt that generated image ``i``; ``prompted_labels[p]`` its finding labels.
    ``feature_extractors`` maps a name to a zero-argument factory (see :func:`feature_extractors_to_run`);
    one that raises AssetUnavailable is reported as unavailable ("not available: <reason>") for each of
    ``PER_EXTRACTOR_METRICS`` and in ``scores.evaluators``. Conditional accuracy needs ``domain``.
    The generated images' features and the domain evaluator's outputs go to ``scores.features``.
    """
    from cxrbench.metrics.fidelity import FIDELITY_METRICS, ms_ssim_within_prompt

    domain = None
    for name, factory in sorted(feature_extractors.items()):
        try:
            extractor = factory()
        except AssetUnavailable as exc:
            note = f"not available: {exc}"
            for prefix in PER_EXTRACTOR_METRICS:
                scores.unavailable(f"{prefix}_{name}", FIDELITY_METRICS[prefix]["higher_is_better"], note)
            scores.evaluators[name] = {"name": name, "available": False, "note": note}
            continue
        if name == "domain":
            domain = extractor
        scores.evaluators[name] = _describe(name, extractor)
        generated_features = as_shipped(extractor.features(generated))
        scores.features[f"features/{name}"] = generated_features.astype(np.float32)
        score_extractor(scores, name, as_shipped(extractor.features(real_images)), generated_features, seed)

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
                    seed: int) -> None:
    """``fid_<name>``, ``kid_<name>``, ``precision_<name>`` and ``recall_<name>`` from the two feature sets."""
    from cxrbench.metrics.fidelity import FIDELITY_METRICS, fid_from_features, kid_from_features

    fid = fid_from_features(real_features, generated_features)
    scores.put(
        f"fid_{name}", {"value": fid["value"], "n": fid["n_generated"]}, FIDELITY_METRICS["fid"]["higher_is_better"],
        note=(f"{fid['n_real']} real vs {fid['n_generated']} generated, {fid['feature_dim']}-d features"
              + ("; covariance rank-deficient (fewer samples than feature dimensions)" if fid["rank_deficient"] else "")),
    )
    kid = kid_from_features(real_features, generated_features, seed=seed)
    value = kid["value"]
    spread = kid.get("std")
    scores.put(
        f"kid_{name}",
        {"value": value, "ci_low": None if spread is None else value - 1.96 * spread,
         "ci_high": None if spread is None else value + 1.96 * spread, "n": kid["subset_size"]},
        FIDELITY_METRICS["kid"]["higher_is_better"],
        note=f"{kid['n_subsets']} subsets of {kid['subset_size']}; interval: +-1.96 std over subsets",
    )
    _score_manifold(scores, name, real_features, generated_features, seed)


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
