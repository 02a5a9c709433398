"""The files a run leaves: its stage artifacts in the work folder and the files beside its result.

In the run's work folder (``<workdir>/<stem>/``, written by ``cxrbench.runner`` and read back by
``cxrbench rescore``):

- ``stages.json``: which stages finished and how long each took, for the track hash and options it was
  made with (:class:`StageRecord`); a record of another track version or other options starts empty.
- ``fit/``: the fitted model (the model's own ``save``/``load``).
- ``generated.npz``: every generated image (``images``), in generation-plan order.
- ``maps.npz``: every attention map of every localization query (``<group>/<query index>``).

Beside the result ``<stem>.json`` (read by ``cxrbench validate``, ``cxrbench report`` and the leaderboard):

- ``<stem>.samples.jsonl``: the per-(test sample, finding) scores.
- ``<stem>.features.npz``: what fidelity was computed from, named with its sha256 in the result.
- ``<stem>.maps.npz``: the maps of the report queries (the first ``REPORT_QUERIES_PER_CLASS`` of each class).

Every file is written atomically (a temporary file, then a rename), so an interrupted write leaves the
old file or none.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cxrbench.model import LocalizationQuery
from cxrbench.results import atomic_write_bytes, atomic_write_json, atomic_write_text, json_safe
from cxrbench.scoring import Scores

STAGES_FILE = "stages.json"
FIT_FOLDER = "fit"
GENERATED_FILE = "generated.npz"
MAPS_FILE = "maps.npz"
SAMPLES_SUFFIX = ".samples.jsonl"
FEATURES_SUFFIX = ".features.npz"
REPORT_MAPS_SUFFIX = ".maps.npz"

#: Queries kept per class for reports (the first ones of the test split, in its order).
REPORT_QUERIES_PER_CLASS = 2
#: Token groups shown in reports, with their column titles.
REPORT_GROUPS: dict[str, str] = {"word": "finding word", "eos": "end-of-text\ntoken"}


class StageRecord:
    """``stages.json`` of a run's work folder: the seconds of each finished stage.

    It holds only for the track hash and options it was made with; opened with others, it starts empty.
    """

    def __init__(self, workdir: Path, track_hash: str, options: dict[str, Any]) -> None:
        self.path = workdir / STAGES_FILE
        record = json.loads(self.path.read_text()) if self.path.exists() else {}
        if record.get("track_hash") != track_hash or record.get("options") != json_safe(options):
            record = {"track_hash": track_hash, "options": json_safe(options), "done": {}}
        self._record = record

    def seconds(self, stage: str) -> float | None:
        """How long ``stage`` took when it finished; None when it has not."""
        return self._record["done"].get(stage)

    def stamp(self, stage: str, seconds: float) -> None:
        """Record that ``stage`` finished in ``seconds`` (the file is rewritten)."""
        self._record["done"][stage] = seconds
        atomic_write_json(self.path, self._record)


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    """A compressed ``.npz`` of ``arrays`` at ``path``, written atomically."""
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)


def save_generated(path: Path, images: np.ndarray) -> bool:
    """Every generated image in the work folder (``generated.npz``); True once written."""
    save_npz(path, images=images)
    return True


def load_generated(path: Path) -> np.ndarray:
    """The images a run saved in its work folder (``generated.npz``)."""
    return np.load(path)["images"]


def save_work_maps(path: Path, maps: Sequence[dict[str, np.ndarray]]) -> bool:
    """Every query's maps (group -> map) in the work folder (``maps.npz``); True once written."""
    save_npz(path, **{f"{g}/{i}": m for i, d in enumerate(maps) for g, m in d.items()})
    return True


def load_saved_maps(path: Path, count: int) -> list[dict[str, np.ndarray]]:
    """The maps a run saved in its work folder (``maps.npz``): for each of ``count`` queries, group -> map."""
    stored = np.load(path)
    groups = sorted({k.split("/", 1)[0] for k in stored.files})
    return [{g: stored[f"{g}/{i}"] for g in groups if f"{g}/{i}" in stored.files} for i in range(count)]


def _beside(result_path: Path | str, suffix: str) -> Path:
    """``<stem><suffix>`` beside the result ``<stem>.json``."""
    result_path = Path(result_path)
    return result_path.with_name(result_path.name.removesuffix(".json") + suffix)


def samples_path_for(result_path: Path | str) -> Path:
    """``<stem>.samples.jsonl`` beside the result ``<stem>.json``."""
    return _beside(result_path, SAMPLES_SUFFIX)


def features_path_for(result_path: Path | str) -> Path:
    """``<stem>.features.npz`` beside the result ``<stem>.json``."""
    return _beside(result_path, FEATURES_SUFFIX)


def maps_path_for(result_path: Path) -> Path:
    """Where the report maps of a result file live: ``x.json`` -> ``x.maps.npz``."""
    return result_path.with_name(result_path.name[: -len(".json")] + REPORT_MAPS_SUFFIX)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_samples_file(result_path: Path, lines: Sequence[dict[str, Any]]) -> Path:
    """Write the per-sample lines beside the result (one JSON object a line); returns the file."""
    path = samples_path_for(result_path)
    atomic_write_text(path, "".join(json.dumps(json_safe(line), sort_keys=True) + "\n" for line in lines))
    return path


def write_features_file(result_path: Path | str, arrays: dict[str, np.ndarray]) -> dict[str, str]:
    """Write ``arrays`` (as float32) beside the result; returns the result's keys that name the file."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{name: np.asarray(a, dtype=np.float32) for name, a in sorted(arrays.items())})
    content = buffer.getvalue()
    path = features_path_for(result_path)
    atomic_write_bytes(path, content)
    return {"features_file": path.name, "features_sha256": hashlib.sha256(content).hexdigest()}


def report_query_indices(queries: Sequence[LocalizationQuery]) -> list[int]:
    """Indices of the queries whose maps a run keeps for reports (the first few of each class)."""
    taken: dict[str, int] = {}
    chosen = []
    for i, q in enumerate(queries):
        if taken.get(q.label, 0) < REPORT_QUERIES_PER_CLASS:
            taken[q.label] = taken.get(q.label, 0) + 1
            chosen.append(i)
    return chosen


def save_report_maps(path: Path, queries: Sequence[LocalizationQuery], maps: Sequence[dict[str, np.ndarray]]) -> None:
    """Keep the report queries' word and EOS maps (float16; each map as the model returned it)."""
    arrays: dict[str, np.ndarray] = {}
    chosen = report_query_indices(queries)
    arrays["sample_ids"] = np.array([queries[i].sample_id for i in chosen])
    arrays["labels"] = np.array([queries[i].label for i in chosen])
    for group in REPORT_GROUPS:
        if all(group in maps[i] for i in chosen) and chosen:
            arrays[group] = np.stack([np.asarray(maps[i][group], dtype=np.float16) for i in chosen])
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def write_scores(result_path: Path, record: dict[str, Any], scores: Scores) -> None:
    """Put ``scores`` into ``record`` and write the files beside the result: per-sample lines and features."""
    record["metrics"], record["per_class"], record["evaluators"] = scores.metrics, scores.per_class, scores.evaluators
    record["per_sample_file"] = write_samples_file(result_path, scores.per_sample).name
    if scores.features:  # what fidelity was computed from, so that `cxrbench validate` can re-derive it
        record.update(write_features_file(result_path, scores.features))
