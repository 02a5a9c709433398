"""``cxrbench rescore``: recompute a result's metrics from the run's kept outputs, without training again.

A run keeps its outputs in its work folder (``<workdir>/<stem>/``): ``maps.npz``, every attention map of
every localization query, and ``generated.npz``, every generated image. Rescoring reads them, scores them
with the metrics registered now (the current definitions, plugin metrics included) exactly as a run scores
(``cxrbench.plan.score_outputs``), and rewrites the result, its per-sample file and its features file.
Everything else of the record stays (timings, plugin, environment); ``metric_versions`` becomes the current
one and ``rescored`` says when and from which versions.

Nothing is written until every figure of a result is computed; then the per-sample file, the features
file and the record are each replaced atomically, record last. A rescore that is interrupted between those
replacements leaves a result that ``cxrbench validate`` refuses (the features' sha256 differs); rescoring it
again repairs it, since it reads only the work folder.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cxrbench.artifacts import GENERATED_FILE, MAPS_FILE, load_generated, load_saved_maps, write_scores
from cxrbench.errors import CxrbenchError, ResultError
from cxrbench.model import GENERATE, LOCALIZE
from cxrbench.plan import generation_plan, load_track_data, localization_queries, score_outputs
from cxrbench.protocol import TRACKS
from cxrbench.registry import Registry
from cxrbench.results import METRIC_VERSIONS, atomic_write_json, load_result

__all__ = ["RescoreOutcome", "rescore_result"]


@dataclass
class RescoreOutcome:
    path: Path
    changed: list[str]
    status: str = "rescored"


def _work_folder(path: Path, workdir: Path) -> Path:
    return workdir / path.name.removesuffix(".json")


def _needed(work: Path, name: str, what: str, path: Path) -> Path:
    artifact = work / name
    if not artifact.is_file():
        raise ResultError(f"{path}: cannot rescore its {what} without {artifact}, which the run keeps in its work "
                          "folder (pass --workdir where it ran, or run it again with `cxrbench run --overwrite`)")
    return artifact


def _outputs(data: dict[str, Any], path: Path, work: Path, track: Any, test: Sequence[Any],
             registry: Registry) -> tuple[Any, Any]:
    """The run's maps and generated images from its work folder (None for a capability the model lacks)."""
    caps = registry.model(data["plugin"]["model"]).cls.capabilities
    maps = generated = None
    if LOCALIZE in caps:
        queries = localization_queries(test)
        maps = load_saved_maps(_needed(work, MAPS_FILE, "localization", path), len(queries))
        if any(not group for group in maps):
            raise ResultError(f"{path}: {work / MAPS_FILE} holds fewer maps than the track's {len(queries)} queries")
    if GENERATE in caps:
        images = load_generated(_needed(work, GENERATED_FILE, "fidelity", path))
        _, _, index, labels = generation_plan(track, test, int(data["seed"]))
        if len(images) != len(index):
            raise ResultError(f"{path}: {work / GENERATED_FILE} holds {len(images)} images, but the track's "
                              f"generation plan has {len(index)}")
        generated = (images, index, labels)
    return maps, generated


def rescore_result(path: Path, workdir: Path, registry: Registry) -> RescoreOutcome:
    """Rescore the result at ``path`` from ``workdir/<stem>/`` (module docstring); returns what changed.

    Raises:
        ResultError: the result is not a successful run of a current track, or its work folder lacks what
            its metrics need.
    """
    data = load_result(path)
    if data.get("status") != "ok":
        return RescoreOutcome(path, [], status="skipped (a failed run has no figures)")
    track = TRACKS.get(data["track"]["name"])
    if track is None or track.hash != data["track"].get("hash"):
        raise ResultError(f"{path}: its track definition differs from this version's "
                          f"{data['track']['name']!r} track, so its outputs cannot be rescored; run it again")
    try:
        test_data = load_track_data(track, registry)
    except CxrbenchError as exc:
        raise ResultError(f"{path}: cannot load the track's data to rescore it: {exc}") from None
    if test_data.fingerprint != data["dataset"].get("fingerprint"):
        raise ResultError(f"{path}: the track's data on this machine (fingerprint {test_data.fingerprint}) differs "
                          f"from the run's ({data['dataset'].get('fingerprint')})")
    maps, generated = _outputs(data, path, _work_folder(path, workdir), track, test_data.test, registry)
    extractors = sorted(data.get("evaluators") or {}) or None
    scores = score_outputs(track, test_data, maps, generated, int(data["seed"]), registry, extractors)
    before = dict(data["metrics"])
    record = {key: value for key, value in data.items() if not key.startswith("_")}
    record["rescored"] = {"at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                          "metric_versions_before": data.get("metric_versions", {})}
    record["metric_versions"] = dict(METRIC_VERSIONS)
    write_scores(path, record, scores)
    atomic_write_json(path, record)
    changed = sorted(name for name, entry in scores.metrics.items()
                     if (before.get(name) or {}).get("value") != entry.get("value"))
    return RescoreOutcome(path, changed)
