"""Re-derive a result's figures from the files it ships, and refuse a result they do not reproduce.

A result ships two files beside its JSON (``cxrbench.results``):

- ``<stem>.samples.jsonl``: every per-(test sample, finding) localization score. Every ``loc_*`` metric
  (value, interval and n, overall and macro) and its per-class table is recomputed from them with the
  run's own aggregation (``cxrbench.scoring.aggregate_localization``, the same bootstrap and seed).
- ``<stem>.features.npz`` (named with its sha256 in the result: ``features_file``, ``features_sha256``):
  float32 arrays ``features/<extractor>``, the generated images' features of each feature extractor the
  run used, and ``probabilities/domain``, the domain evaluator's outputs on them. FID, KID (same seeded
  subsets), precision and recall are recomputed against the real test images' features, which are
  computed here by the same extractor on the track's test split, and ``cond_auroc``/``cond_top1`` from the
  outputs and the prompts of the track's generation plan (``cxrbench.scoring.score_extractor``,
  ``score_conditional``).

``ms_ssim_within_prompt`` needs the generated images themselves, which a result does not ship; it is the
one figure not re-derived. A failed result has no figures and nothing to re-derive.

Tolerance: ``math.isclose(stored, recomputed, rel_tol=REL_TOL, abs_tol=ABS_TOL)``. Localization re-derives
bit for bit (JSON keeps every float64 exactly and the bootstrap is seeded), and so does the generated side
of fidelity (a run scores the float32-rounded features it ships). The one input recomputed rather than
read is the real images' features: on another CPU, float32 convolutions may round differently in the
last bits (relative 1e-7), which moves FID and KID by far less than 1e-6 of their value (docs/results.md).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cxrbench.artifacts import features_path_for, file_sha256
from cxrbench.errors import CxrbenchError, ResultError
from cxrbench.metric import SAMPLES
from cxrbench.model import TOKEN_GROUPS
from cxrbench.plan import generation_plan, load_track_data
from cxrbench.protocol import TRACKS
from cxrbench.registry import get_registry
from cxrbench.results import load_results_dir
from cxrbench.scoring import (
    Scores,
    _num,
    aggregate_localization,
    as_shipped,
    feature_metric_outputs,
    score_conditional,
    score_extractor,
    score_sample_metrics,
)

#: Relative and absolute tolerance of a re-derived figure (module docstring).
REL_TOL = 1e-6
ABS_TOL = 1e-9
#: The fields of a metric (and of a per-class entry) that are compared.
COMPARED_FIELDS = ("value", "ci_low", "ci_high", "n")

#: Real test images' features per (track hash, extractor name), computed once per process.
_REAL_FEATURES: dict[tuple[str, str], np.ndarray] = {}


def rederivation_errors(data: dict[str, Any], path: Path | str, registry: Any = None) -> list[str]:
    """Every figure of the result ``data`` (read from ``path``) that its shipped files do not reproduce.

    Each message names the result file, the metric, the stored and the re-derived value, or the shipped
    file that is missing or broken. Expects a record that passes ``cxrbench.results.validation_errors``.
    """
    if data.get("status") != "ok":
        return []
    path = Path(path)
    registry = registry or get_registry()
    recomputed, sources = Scores(), {}
    uninstalled = _uninstalled_sources(data, path, registry)
    loc_problems = _rederive_localization(data, path, recomputed, sources, registry)
    fidelity_problems = _rederive_fidelity(data, path, recomputed, sources, registry)
    problems = uninstalled + loc_problems + fidelity_problems + disagreements(data, recomputed, sources, path)
    sample_outputs = tuple(name for entry in registry.metrics_needing(SAMPLES) for name in entry.metric.directions)
    fidelity = tuple(f"{prefix}_" for prefix in feature_metric_outputs(registry)) + ("cond_",)
    for family, failed in ((("loc_", *sample_outputs), loc_problems), (fidelity, fidelity_problems)):
        if not failed:  # a missing or broken file is reported once, not once per metric
            problems += _unexplained(data, recomputed, family, path)
    return problems


def _uninstalled_sources(data: dict[str, Any], path: Path, registry: Any) -> list[str]:
    """Plugin metrics of the result whose distribution registers no metric here: they cannot be re-derived."""
    installed = {entry.source for entry in registry.metrics.values()}
    missing: dict[str, list[str]] = {}
    for name, entry in data["metrics"].items():
        if isinstance(entry, dict) and entry.get("source") and entry["source"] not in installed:
            missing.setdefault(entry["source"], []).append(name)
    return [f"{path}: {_listed(names)} come from the metric plugin {source!r}, which is not installed here, so "
            "they cannot be re-derived (install it, or leave the result out)" for source, names in sorted(missing.items())]


def _rederive_localization(data: dict[str, Any], path: Path, recomputed: Scores, sources: dict[str, str],
                           registry: Any) -> list[str]:
    stored = [name for name, entry in data["metrics"].items() if name.startswith("loc_") and entry.get("value") is not None]
    name = data.get("per_sample_file")
    if not stored and not name:
        return []
    if not name:
        return [f"{path}: names no per-sample file (per_sample_file), so {_listed(stored)} cannot be re-derived"]
    if Path(name).name != name:
        return [f"{path}: per_sample_file must name a file beside the result, but got {name!r}"]
    samples = path.with_name(name)
    if not samples.is_file():
        return [f"{path}: its per-sample file {samples} is missing, so {_listed(stored)} cannot be re-derived"]
    records, groups, lines = [], set(), []
    for number, line in enumerate(samples.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            entry = json.loads(line)
            metrics = {key: float("nan") if value is None else float(value) for key, value in entry["metrics"].items()}
            records.append({"label": str(entry["label"]), **metrics})
            lines.append({**entry, "metrics": metrics})
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            return [f"{samples} line {number}: not a per-sample line with 'label' and 'metrics' ({exc})"]
        groups.update(_group_of(key) for key in metrics)
    if stored and not records:
        return [f"{samples}: has no per-sample lines, so {_listed(stored)} cannot be re-derived"]
    if records:
        try:
            aggregate_localization(recomputed, records, groups, int(data["seed"]), registry)
        except ValueError as exc:
            return [f"{samples}: cannot aggregate its per-sample scores: {exc}"]
        score_sample_metrics(recomputed, lines, int(data["seed"]), registry)
    sources.update((metric, samples.name) for metric in recomputed.metrics)
    return []


def _group_of(metric: str) -> str:
    rest = metric.removeprefix("loc_")
    return next((g for g in sorted(TOKEN_GROUPS, key=len, reverse=True) if rest.startswith(g + "_")), rest)


def _listed(names: Sequence[str]) -> str:
    shown = ", ".join(sorted(names)[:4])
    return shown + (f" and {len(names) - 4} more" if len(names) > 4 else "") if names else "its figures"


def _shipped_features(data: dict[str, Any], path: Path, stored: list[str]) -> tuple[dict[str, np.ndarray] | None, list[str]]:
    """The arrays of the result's features file, or the problem that keeps them from being read."""
    name = data.get("features_file")
    expected = features_path_for(path).name
    if not name:
        return None, [(f"{path}: names no features file (features_file; a run writes {expected}), so "
                       f"{_listed(stored)} cannot be re-derived")]
    if Path(name).name != name:
        return None, [f"{path}: features_file must name a file beside the result, but got {name!r}"]
    features = path.with_name(name)
    if not features.is_file():
        return None, [(f"{path}: its features file {features} is missing, so {_listed(stored)} cannot be "
                       "re-derived")]
    digest = file_sha256(features)
    if digest != data.get("features_sha256"):
        return None, [(f"{path}: its features file {features.name} has sha256 {digest}, but the result names "
                       f"{data.get('features_sha256')!r}")]
    try:
        with np.load(features) as archive:
            return {key: archive[key] for key in archive.files}, []
    except (OSError, ValueError) as exc:
        return None, [f"{features}: not a readable .npz file ({exc})"]


def _rederive_fidelity(data: dict[str, Any], path: Path, recomputed: Scores, sources: dict[str, str],
                       registry: Any) -> list[str]:
    extractors = sorted(name for name, e in data["evaluators"].items() if isinstance(e, dict) and e.get("available"))
    fidelity = tuple(f"{prefix}_" for prefix in feature_metric_outputs(registry)) + ("cond_",)
    stored = [name for name, entry in data["metrics"].items()
              if name.startswith(fidelity) and entry.get("value") is not None]
    if not extractors and not stored:
        return []
    arrays, problems = _shipped_features(data, path, stored)
    if arrays is None:
        return problems
    track = TRACKS[data["track"]["name"]]
    try:
        test = load_track_data(track, registry).test
    except CxrbenchError as exc:
        return [f"{path}: cannot re-derive its fidelity figures without the track's test images: {exc}"]
    source = path.with_name(data["features_file"]).name
    prompt_ids = generation_plan(track, test, int(data["seed"]))[2]
    for name in extractors:
        problems += _rederive_extractor(data, path, name, arrays, (track, test, prompt_ids), registry, recomputed)
    if "domain" in extractors:
        problems += _rederive_conditional(path, arrays, track, test, int(data["seed"]), recomputed)
    sources.update((metric, source) for metric in recomputed.metrics if metric.startswith(fidelity))
    return problems


def _rederive_extractor(data: dict[str, Any], path: Path, name: str, arrays: dict[str, np.ndarray],
                        plan: tuple[Any, Sequence[Any], np.ndarray], registry: Any, recomputed: Scores) -> list[str]:
    """The figures of extractor ``name``; ``plan`` is (track, test samples, prompt of each generated image)."""
    track, test, prompt_ids = plan
    generated = arrays.get(f"features/{name}")
    if generated is None:
        return [(f"{path}: its features file {data['features_file']} has no array 'features/{name}', so the "
                 f"{name} figures cannot be re-derived")]
    try:
        real = real_features(track, name, test, registry, data["evaluators"][name].get("sha256"))
        score_extractor(recomputed, name, real, generated.astype(np.float64), prompt_ids, int(data["seed"]),
                        registry)
    except (CxrbenchError, ValueError) as exc:
        return [f"{path}: cannot re-derive the {name} figures: {exc}"]
    return []


def real_features(track: Any, name: str, test: Sequence[Any], registry: Any, sha256: str | None = None) -> np.ndarray:
    """Features of the track's real test images by extractor ``name`` (as scored), cached per (track, extractor).

    Raises:
        ResultError: the extractor's weights differ from ``sha256``, those the result was scored with.
        AssetUnavailable: the extractor's weights are not on this machine.
    """
    if name not in registry.feature_extractors:
        raise ResultError(f"no feature extractor {name!r} is registered here")
    extractor = registry.feature_extractors[name].factory()
    own = getattr(extractor, "sha256", None)
    if sha256 is not None and own is not None and own != sha256:
        raise ResultError(f"the result was scored with {name} weights of sha256 {sha256}, but this machine's "
                          f"have sha256 {own}")
    key = (track.hash, name)
    if key not in _REAL_FEATURES:
        _REAL_FEATURES[key] = as_shipped(extractor.features(np.stack([s.image for s in test])))
    return _REAL_FEATURES[key]


def _rederive_conditional(path: Path, arrays: dict[str, np.ndarray], track: Any, test: Sequence[Any], seed: int,
                          recomputed: Scores) -> list[str]:
    probabilities = arrays.get("probabilities/domain")
    if probabilities is None:
        return [(f"{path}: its features file has no array 'probabilities/domain', so cond_auroc and "
                 "cond_top1 cannot be re-derived")]
    _, _, index, labels = generation_plan(track, test, seed)
    try:
        score_conditional(recomputed, probabilities.astype(np.float64), [labels[p] for p in index])
    except ValueError as exc:
        return [f"{path}: cannot re-derive cond_auroc and cond_top1: {exc}"]
    return []


def _agrees(stored: Any, recomputed: Any) -> bool:
    stored, recomputed = _num(stored), _num(recomputed)
    if stored is None or recomputed is None:
        return stored is None and recomputed is None
    return math.isclose(stored, recomputed, rel_tol=REL_TOL, abs_tol=ABS_TOL)


def disagreements(data: dict[str, Any], recomputed: Scores, sources: dict[str, str], path: Path) -> list[str]:
    """A message for every compared field that differs between the result and its re-derivation."""
    problems = []
    for name, entry in recomputed.metrics.items():
        stored = data["metrics"].get(name)
        if stored is None:
            problems.append(f"{path}: {name} is missing from the result, but {sources[name]} re-derives it as "
                            f"{entry['value']!r}")
            continue
        problems += _field_problems(path, name, stored, entry, sources[name])
    for name, table in recomputed.per_class.items():
        stored_table = data["per_class"].get(name) or {}
        for label, entry in table.items():
            problems += _field_problems(path, f"{name} per_class[{label!r}]", stored_table.get(label) or {}, entry,
                                        sources[name])
    return problems


def _field_problems(path: Path, name: str, stored: dict[str, Any], entry: dict[str, Any], source: str) -> list[str]:
    return [
        f"{path}: {name} {key} is {_show(stored.get(key))} in the result, but re-derived from {source} it is "
        f"{_show(entry.get(key))}"
        for key in COMPARED_FIELDS if not _agrees(stored.get(key), entry.get(key))
    ]


def _show(value: Any) -> str:
    value = _num(value)
    return "null" if value is None else repr(value)


def _unexplained(data: dict[str, Any], recomputed: Scores, family: str | tuple[str, ...], path: Path) -> list[str]:
    """Stored figures of ``family`` that nothing the result ships re-derives."""
    return [
        f"{path}: {name} is {_show(entry.get('value'))} in the result, but nothing the result ships re-derives it"
        for name, entry in data["metrics"].items()
        if name.startswith(family) and name not in recomputed.metrics and _num(entry.get("value")) is not None
    ]


def check_reproducible(records: Iterable[dict[str, Any]], registry: Any = None) -> None:
    """Raise ResultError with every problem of records (each with ``_path``) whose figures do not re-derive."""
    problems = [p for record in records for p in rederivation_errors(record, record["_path"], registry)]
    if problems:
        raise ResultError("results whose figures their shipped files do not reproduce:\n  - " + "\n  - ".join(problems))


def load_reproducible_results(directory: Path) -> list[dict[str, Any]]:
    """``cxrbench.results.load_results_dir``, then :func:`check_reproducible`: what the leaderboard ranks."""
    records = load_results_dir(directory)
    check_reproducible(records)
    return records
