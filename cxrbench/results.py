"""Result records: schema, provenance, atomic writing, loading and validation.

One result JSON per (model, track, seed). The record is typed by :class:`ResultRecord` (pydantic), whose
JSON Schema is committed as ``docs/result-schema.json`` (``cxrbench schema``). Shape (schema version 1)::

    {
      "schema_version": 1,
      "metric_versions": {METRIC: int} (the definition version of each metric; absent means 1 for all),
      "status": "ok" | "failed",
      "error": null | {"stage": str, "type": str, "message": str},
      "created": ISO-8601 UTC timestamp,
      "track": {"name", "version", "hash"},
      "plugin": {"model", "distribution", "version", "config": {...}, "capabilities": [...],
                 "baseline": str|null (optional; the label of a reference baseline such as the box prior)},
      "seed": int,
      "dataset": {"name", "params", "fingerprint", "n_train", "n_test"},
      "evaluators": {EXTRACTOR: {"name", "available", "sha256", "feature_dim", "resize_method", ...}
                     | {"name", "available": false, "note"}},
      "environment": {"python", "platform", "torch", "diffusers", "transformers", "cxrbench", "device", "world_size"},
      "timings": {"data_s", "fit_s", "generate_s", "localize_s", "metrics_s", "total_s"},
      "metrics": {NAME: {"value": float|null, "ci_low": float|null, "ci_high": float|null, "n": int,
                         "higher_is_better": bool, "note": str, "std": float, "source": str,
                         "description": str (the last four optional)}},
      "per_class": {NAME: {CLASS: {"value", "ci_low", "ci_high", "n"}}},
      "per_sample_file": "<file name beside this one>.samples.jsonl" | null,
      "features_file": "<file name beside this one>.features.npz" (optional; a run that generates),
      "features_sha256": str (with features_file)
    }

Metric names: ``loc_<group>_<metric>`` for localization (group in TOKEN_GROUPS, metric in the keys of
``cxrbench.metrics.localization.LOCALIZATION_METRICS``), aggregated overall; ``<same>_macro`` for the macro
average over classes; ``fid_<extractor>``, ``kid_<extractor>``, ``precision_<extractor>``,
``recall_<extractor>``, ``ms_ssim_within_prompt``, ``cond_auroc``, ``cond_top1`` for fidelity. A metric a
model cannot have (no capability, extractor unavailable) has value null and a note saying why. NaN never
appears in JSON: it is written as null.

The per-sample file is JSON lines, one line per (test sample, finding):
``{"sample_id", "label", "phrase", "metrics": {NAME: float|null}}``. The features file holds float32 arrays
``features/<extractor>`` and ``probabilities/domain``; ``cxrbench.rederive`` recomputes the figures from
both files (docs/results.md).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from cxrbench.errors import CxrbenchError, ResultError
from cxrbench.result_schema import SCHEMA_VERSION, record_problems

#: The leaderboard's two axes.
HEADLINE_FIDELITY = "fid_domain"
HEADLINE_LOCALIZATION = "loc_word_auc_roc"

#: Version of each metric definition, by metric name prefix (``kid`` covers every ``kid_<extractor>``).
#: A definition that changes its figures gets a new version; results of an older one fail validation.
#: kid 2: subsets of ``min(1000, N // 2, M // 2)`` instead of ``min(1000, N, M)``.
#: recall 2: a generated image's k-NN radius counts other prompts' images only (not its siblings).
METRIC_VERSIONS: dict[str, int] = {"fid": 1, "kid": 2, "precision": 1, "recall": 2}


def json_safe(obj: Any) -> Any:
    """Replace NaN/inf floats by None and numpy scalars by Python ones, recursively."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def atomic_write_bytes(path: Path, content: bytes) -> None:
    """Write ``content`` to ``path`` so that a crash leaves either the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes owner-only files; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(json_safe(data), indent=2, sort_keys=True, allow_nan=False) + "\n")


def result_stem(model: str, track: str, seed: int) -> str:
    return f"{model}__{track}__seed{seed}"


def load_result(path: Path) -> dict[str, Any]:
    """Read a result file; a file that is not JSON raises ResultError naming it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ResultError(f"{path}: cannot read result file ({exc.strerror})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    if not isinstance(data, dict):
        raise ResultError(f"{path}: a result must be a JSON object, but got {type(data).__name__}")
    return data


def validation_errors(data: dict[str, Any], tracks: dict[str, Any] | None = None) -> list[str]:
    """Every problem with a result record, as messages naming the field; empty when it is valid.

    The record must fit ``cxrbench.result_schema.ResultRecord``; a record of another ``schema_version`` is
    reported as that alone. ``tracks`` maps track names to ``cxrbench.protocol.Track``; the record's track
    hash must equal the current definition's hash, so results of a changed protocol cannot be mixed with
    current ones. The plugin record must agree with the installed plugins, and the metrics with the current
    metric definition versions (checked for the parts of the record that fit the model).
    """
    if not isinstance(data, dict):
        return [f"a result must be a JSON object, but got {type(data).__name__}"]
    version = data.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION or isinstance(version, bool):
        return [f"schema_version must be {SCHEMA_VERSION}, but got {version!r}"]
    located = record_problems(data)
    broken = {loc[0] for loc, _ in located if loc}
    problems = [message for _, message in located]
    if "track" not in broken:
        problems += track_problems(data["track"], tracks)
    if "plugin" not in broken:
        problems += _registry_problems(data["plugin"])
    if not broken & {"metrics", "metric_versions"}:
        problems += metric_version_problems(data)
    return problems


def track_problems(track: dict[str, Any], tracks: dict[str, Any] | None = None) -> list[str]:
    """How a result's ``track`` record differs from the current definition of its track (``tracks``, by
    name; default ``cxrbench.protocol.TRACKS``)."""
    if tracks is None:
        from cxrbench.protocol import TRACKS

        tracks = TRACKS
    name = track["name"]
    if name not in tracks:
        return [f"track name must be one of {sorted(tracks)}, but got {name!r}"]
    expected, problems = tracks[name], []
    if track["hash"] != expected.hash:
        problems.append(
            f"track hash {track['hash']!r} does not match the current definition of track {name!r} "
            f"(version {expected.version}, hash {expected.hash!r}): the result was produced under another protocol"
        )
    if track["version"] != str(expected.version):
        problems.append(f"track version must be {expected.version!r}, but got {track['version']!r}")
    return problems


def metric_version_problems(data: dict[str, Any]) -> list[str]:
    """One message per metric whose figures were computed with an older definition than ``METRIC_VERSIONS``."""
    recorded = data.get("metric_versions", {})
    if not isinstance(recorded, dict):
        return [f"metric_versions must be an object, but got {type(recorded).__name__}"]
    problems = []
    for family, current in METRIC_VERSIONS.items():
        version = recorded.get(family, 1)
        names = sorted(m for m in data["metrics"] if m.startswith(f"{family}_"))
        if names and version != current:
            problems.append(
                f"metric {family!r} ({', '.join(names)}) was computed with metric version {version!r}, but the "
                f"current definition is version {current}: recompute it (docs/results.md: Metric versions)"
            )
    return problems


def _registry_problems(plugin: dict[str, Any]) -> list[str]:
    """The plugin record checked against the installed plugins (``cxrbench.registry.plugin_record_problems``);
    nothing when the plugins cannot be loaded."""
    from cxrbench.registry import plugin_record_problems

    try:
        return plugin_record_problems(plugin)
    except CxrbenchError:
        return []


def validate_result(data: dict[str, Any], source: str | Path = "<result>", tracks: dict[str, Any] | None = None) -> None:
    """Raise ResultError naming ``source`` and every problem when the record is not valid."""
    problems = validation_errors(data, tracks)
    if problems:
        raise ResultError(f"{source}: invalid result:\n  - " + "\n  - ".join(problems))


def load_results_dir(directory: Path) -> list[dict[str, Any]]:
    """Every ``*.json`` result under ``directory`` (sorted by name), validated; each gets ``_path``."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ResultError(f"{directory}: results folder does not exist")
    records = []
    for path in sorted(directory.glob("*.json")):
        data = load_result(path)
        validate_result(data, path)
        data["_path"] = str(path)
        records.append(data)
    return records
