"""The protocol runner: data -> fit -> generate -> localize -> metrics -> result, per (model, track, seed).

Each stage leaves an artifact in the run's work folder, written atomically; running the same command again
after an interruption continues from the last finished stage. A model that fails is recorded as a failed
result with the stage and error, and the other runs go on.

Under a launcher (``accelerate launch -m cxrbench run ...``, ``torchrun``; see ``cxrbench.distributed``)
every process runs the same stages: models that support it fine-tune with DDP, generation and
localization are shared out by sample (process i takes samples i, i+P, ...) and gathered on the main
process, which alone writes artifacts, scores and writes the result. ``--out`` and ``--workdir`` must
then be on a filesystem every process sees.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from cxrbench.data.schema import NO_FINDING, QUERY_WORDS, Sample
from cxrbench.distributed import broadcast_from_main, init_processes, map_sharded, process_device, processes
from cxrbench.environment import environment_record
from cxrbench.errors import OutputError, ProtocolError, ResultError
from cxrbench.model import (
    GENERATE,
    LOCALIZE,
    FitContext,
    LocalizationQuery,
    Model,
    checked_images,
    checked_maps,
)
from cxrbench.pretrained import check_base
from cxrbench.protocol import Track, derive_seed
from cxrbench.rederive import write_features_file
from cxrbench.registry import ModelEntry, Registry, get_registry
from cxrbench.report import maps_path_for, save_report_maps
from cxrbench.results import (
    METRIC_VERSIONS,
    SCHEMA_VERSION,
    atomic_write_json,
    atomic_write_text,
    json_safe,
    load_result,
    result_stem,
    validation_errors,
)
from cxrbench.scoring import Scores, feature_extractors_to_run, score_fidelity, score_localization

GENERATION_CHUNK = 32
LOCALIZATION_CHUNK = 16


@dataclass
class RunOutcome:
    model: str
    track: str
    seed: int
    status: str
    result_path: Path
    metrics: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    reused: list[str] = field(default_factory=list)


@dataclass
class TrackData:
    name: str
    params: dict[str, Any]
    fingerprint: str
    train: list[Sample]
    test: list[Sample]
    #: What the dataset left out, and why (``cxrbench.data.left_out``); recorded in every result.
    left_out: dict[str, int] = field(default_factory=dict)


_DATA_CACHE: dict[str, TrackData] = {}


def load_track_data(track: Track, registry: Registry) -> TrackData:
    """The track's train and test samples (built once per process); prints what the dataset left out."""
    from cxrbench.data import describe_left_out, left_out

    key = json.dumps([track.dataset.name, track.dataset.params], sort_keys=True)
    if key not in _DATA_CACHE:
        dataset = registry.dataset(track.dataset.name).factory(**track.dataset.params)
        train, test = dataset.split("train"), dataset.split("test")
        fingerprint = dataset.fingerprint()  # builds every split: the left-out counts are complete after it
        data = TrackData(track.dataset.name, dict(track.dataset.params), fingerprint, train, test,
                         left_out(dataset))
        if data.left_out and processes().is_main:
            print(describe_left_out(track.dataset.name, data.left_out), file=sys.stderr)
        _DATA_CACHE[key] = data
    return _DATA_CACHE[key]


def generation_plan(track: Track, test: Sequence[Sample], seed: int) -> tuple[list[str], list[int], np.ndarray, list[tuple[str, ...]]]:
    """Prompts (the first N test reports), per-image seeds, the prompt index of every image, prompted labels."""
    chosen = list(test[: track.prompts_for_generation])
    prompts, seeds, index = [], [], []
    for p, sample in enumerate(chosen):
        for k in range(track.samples_per_prompt):
            prompts.append(sample.report)
            seeds.append(derive_seed(seed, "generate", sample.id, k))
            index.append(p)
    return prompts, seeds, np.asarray(index, dtype=np.int64), [s.labels for s in chosen]


def localization_queries(test: Sequence[Sample]) -> list[LocalizationQuery]:
    """One query per (test sample, finding with boxes)."""
    queries = []
    for sample in test:
        for finding in sample.findings:
            if finding.label == NO_FINDING or not finding.boxes:
                continue
            queries.append(LocalizationQuery(sample.id, sample.report, finding.phrase, finding.label,
                                             QUERY_WORDS[finding.label]))
    return queries


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)


class _Progress:
    """tqdm bars when asked for, silence otherwise."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def bar(self, total: int, desc: str):
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, disable=not self.enabled, leave=False, dynamic_ncols=True)


class RunStages:
    """The stages of one (model, track, seed) run and their artifacts in ``workdir``."""

    def __init__(self, entry: ModelEntry, options: dict[str, Any], track: Track, seed: int, data: TrackData,
                 workdir: Path, progress: _Progress, device: str, checkpoint_every: int | None = None) -> None:
        self.entry, self.options, self.track, self.seed, self.data = entry, options, track, seed, data
        self.workdir, self.progress, self.device = workdir, progress, device
        self.checkpoint_every = checkpoint_every
        self.procs = processes()
        self.timings: dict[str, float] = {}
        self.reused: list[str] = []
        self._model: Model | None = None
        self._fitted = False
        self.stage = "init"
        stamp = workdir / "stages.json"
        self._stamp_path = stamp
        self._stamp = json.loads(stamp.read_text()) if stamp.exists() else {}
        if self._stamp.get("track_hash") != track.hash or self._stamp.get("options") != json_safe(options):
            self._stamp = {"track_hash": track.hash, "options": json_safe(options), "done": {}}

    @property
    def caps(self) -> frozenset[str]:
        return self.entry.cls.capabilities

    def _done(self, stage: str, seconds: float) -> None:
        if not self.procs.is_main:
            return
        self._stamp["done"][stage] = seconds
        atomic_write_json(self._stamp_path, self._stamp)

    def model(self) -> Model:
        if self._model is None:
            self.stage = "init"
            self._model = self.entry.cls(self.options)
        if not self._fitted:
            self.stage = "fit"
            fit_dir = self.workdir / "fit"
            if "fit" in self._stamp["done"] and self._model.load(fit_dir):
                self.timings["fit_s"] = self._stamp["done"]["fit"]
                self.reused.append("fit")
            else:
                t0 = time.perf_counter()
                bar = self.progress.bar(self.track.budget.steps, f"{self.entry.model_id} fit")

                def on_step(step: int, logs: dict[str, float]) -> None:
                    bar.update(step - bar.n)  # a fit resumed from a checkpoint starts past 0
                    if logs:
                        bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items()}, refresh=False)

                context = FitContext(seed=self.seed, workdir=self.workdir / "fit-scratch",
                                     image_size=self.track.image_size, progress=on_step, device=self.device,
                                     checkpoint_every=self.checkpoint_every, base=self.track.base)
                context.workdir.mkdir(parents=True, exist_ok=True)
                self._model.fit(self.data.train, self.track.budget, context)
                bar.close()
                self.timings["fit_s"] = time.perf_counter() - t0
                if self.procs.is_main and self._model.save(fit_dir):
                    self._done("fit", self.timings["fit_s"])
                    shutil.rmtree(context.checkpoint_dir, ignore_errors=True)  # the saved fit supersedes them
            self._fitted = True
        return self._model

    def generate(self) -> tuple[np.ndarray, np.ndarray, list[tuple[str, ...]]] | None:
        if GENERATE not in self.caps:
            return None
        prompts, seeds, index, labels = generation_plan(self.track, self.data.test, self.seed)
        path = self.workdir / "generated.npz"
        if "generate" in self._stamp["done"] and path.exists():
            self.timings["generate_s"] = self._stamp["done"]["generate"]
            self.reused.append("generate")
            if not self.procs.is_main:
                return None
            return np.load(path)["images"], index, labels
        model = self.model()
        self.stage = "generate"
        t0 = time.perf_counter()
        bar = self.progress.bar(len(prompts), f"{self.entry.model_id} generate")
        size = self.track.image_size

        def work(positions: list[int]) -> np.ndarray:
            output = model.generate([prompts[j] for j in positions], [seeds[j] for j in positions], size,
                                    self.track.sampler)
            sample_ids = [self.data.test[index[j]].id for j in positions]
            try:
                images, bad, problem = checked_images(output, (len(positions), size, size))
            except ValueError as exc:
                raise self._invalid_output(f"batch of images for samples {sample_ids}", str(exc)) from None
            if bad is not None:
                raise self._invalid_output(f"image for sample {sample_ids[bad]!r} (seed {seeds[positions[bad]]})",
                                           problem)
            return images

        # One unit per prompt (its images); process i of P takes prompts i, i+P, ...
        units = [np.flatnonzero(index == p).tolist() for p in range(len(labels))]
        generated = map_sharded(units, work, GENERATION_CHUNK, bar.update)
        bar.close()
        if generated is None:  # not the main process: its images went to the main one
            return None
        images = np.stack(generated) if generated else np.zeros((0, size, size), np.float32)
        self.timings["generate_s"] = time.perf_counter() - t0
        _save_npz(path, images=images)
        self._done("generate", self.timings["generate_s"])
        return images, index, labels

    def localize(self, queries: list[LocalizationQuery]) -> list[dict[str, np.ndarray]] | None:
        if LOCALIZE not in self.caps or not queries:
            return None
        path = self.workdir / "maps.npz"
        if "localize" in self._stamp["done"] and path.exists():
            self.timings["localize_s"] = self._stamp["done"]["localize"]
            self.reused.append("localize")
            if not self.procs.is_main:
                return None
            stored = np.load(path)
            groups = sorted({k.split("/", 1)[0] for k in stored.files})
            return [{g: stored[f"{g}/{i}"] for g in groups if f"{g}/{i}" in stored.files} for i in range(len(queries))]
        model = self.model()
        self.stage = "localize"
        by_id = {s.id: s for s in self.data.test}
        t0 = time.perf_counter()
        bar = self.progress.bar(len(queries), f"{self.entry.model_id} localize")

        def work(positions: list[int]) -> list[dict[str, np.ndarray]]:
            chunk = [queries[i] for i in positions]
            images = np.stack([by_id[q.sample_id].image for q in chunk])
            out = model.localize(images, chunk, self.track.extraction)
            if len(out) != len(chunk):
                raise _contract(f"localize returned {len(out)} map sets for {len(chunk)} queries")
            return [self._checked_maps(q, d, image.shape) for q, d, image in zip(chunk, out, images)]

        # One unit per test sample (its queries); process i of P takes samples i, i+P, ...
        units: dict[str, list[int]] = {}
        for i, q in enumerate(queries):
            units.setdefault(q.sample_id, []).append(i)
        maps = map_sharded(list(units.values()), work, LOCALIZATION_CHUNK, bar.update)
        bar.close()
        if maps is None:  # not the main process: its maps went to the main one
            return None
        self.timings["localize_s"] = time.perf_counter() - t0
        _save_npz(path, **{f"{g}/{i}": m for i, d in enumerate(maps) for g, m in d.items()})
        self._done("localize", self.timings["localize_s"])
        return maps

    def _checked_maps(self, query: LocalizationQuery, group_maps: Any,
                      shape: tuple[int, ...]) -> dict[str, np.ndarray]:
        try:
            return checked_maps(group_maps, shape)
        except ValueError as exc:
            raise self._invalid_output(f"maps for sample {query.sample_id!r} (finding {query.label!r})",
                                       str(exc)) from None

    def _invalid_output(self, what: str, problem: str) -> Exception:
        """A contract error naming the stage, the model and its plugin, ``what`` was returned and ``problem``."""
        plugin = self.entry.plugin
        return _contract(f"{self.stage}: model {self.entry.model_id!r} (plugin {plugin.name}, distribution "
                         f"{plugin.distribution}) returned invalid {what}: {problem}")


def _contract(message: str) -> Exception:
    from cxrbench.errors import PluginError

    return PluginError(f"model contract violated: {message}")


def _skeleton(entry: ModelEntry, options: dict[str, Any], track: Track, seed: int, device: str) -> dict[str, Any]:
    """The record of a run that has not started; it must fit the result model (``cxrbench.result_schema``)."""
    from cxrbench.result_schema import ResultRecord

    record = {
        "schema_version": SCHEMA_VERSION,
        "metric_versions": dict(METRIC_VERSIONS),
        "status": "ok",
        "error": None,
        "created": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        "track": {"name": track.name, "version": track.version, "hash": track.hash},
        "plugin": {
            "model": entry.model_id,
            "distribution": entry.plugin.distribution,
            "version": entry.plugin.version,
            "plugin": entry.plugin.name,
            "config": {},
            "capabilities": list(entry.capabilities),
            "baseline": entry.cls.baseline or None,
        },
        "seed": seed,
        "dataset": {"name": track.dataset.name, "params": dict(track.dataset.params)},
        "evaluators": {},
        "environment": environment_record(device, processes().count),
        "timings": {},
        "metrics": {},
        "per_class": {},
        "per_sample_file": None,
    }
    ResultRecord.model_validate(record)
    return record


def finished_result(path: Path, track: Track) -> dict[str, Any] | None:
    """The result at ``path`` if it is a valid, successful result of the current track definition."""
    if not path.exists():
        return None
    try:
        data = load_result(path)
    except ResultError:
        return None
    if data.get("status") != "ok" or validation_errors(data, {track.name: track}):
        return None
    return data


def run_one(entry: ModelEntry, track: Track, seed: int, out_dir: Path, workdir: Path, registry: Registry,
            options: dict[str, Any] | None = None, show_progress: bool = True, device: str = "cpu",
            feature_extractors: Sequence[str] | None = None, checkpoint_every: int | None = None) -> RunOutcome:
    """Run one (model, track, seed) through every stage, reusing finished stages; never raises for model errors.

    ``feature_extractors``: the run's explicit list (default: see ``cxrbench.scoring.feature_extractors_to_run``).
    ``checkpoint_every``: training checkpoints every that many steps (``FitContext.checkpoint_every``).
    Every process of a multi-process run calls it and gets the main process's outcome.
    """
    procs = processes()
    options = dict(options or {})
    stem = result_stem(entry.model_id, track.name, seed)
    result_path = out_dir / f"{stem}.json"
    done = finished_result(result_path, track) if procs.is_main else None
    reused = None
    if done is not None and done["plugin"].get("config_requested", {}) == json_safe(options):
        reused = RunOutcome(entry.model_id, track.name, seed, "ok", result_path, done["metrics"], done["timings"],
                            reused=["result"])
    reused = broadcast_from_main(reused)
    if reused is not None:
        return reused
    record = _skeleton(entry, options, track, seed, device)
    record["plugin"]["config_requested"] = json_safe(options)
    work = workdir / stem
    started = time.perf_counter()
    stages: RunStages | None = None
    stage = "data"
    try:
        work.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        data = load_track_data(track, registry)
        record["dataset"].update(fingerprint=data.fingerprint, n_train=len(data.train), n_test=len(data.test),
                                 left_out=dict(data.left_out))
        data_s = time.perf_counter() - t0
        stages = RunStages(entry, options, track, seed, data, work, _Progress(show_progress and procs.is_main),
                           device, checkpoint_every)
        stage = "generate"
        generated = stages.generate()
        stage = "localize"
        queries = localization_queries(data.test)
        maps = stages.localize(queries)
        if not procs.is_main:  # its shares went to the main process, which scores and writes
            return broadcast_from_main(None)
        stage = "metrics"
        t0 = time.perf_counter()
        scores = Scores()
        if maps is not None:
            score_localization(scores, queries, maps, {s.id: s for s in data.test}, seed)
        if generated is not None:
            images, index, labels = generated
            real = np.stack([s.image for s in data.test])
            names = feature_extractors_to_run(registry.feature_extractors, track.feature_extractors,
                                              feature_extractors)
            extractors = {name: registry.feature_extractors[name].factory for name in names}
            score_fidelity(scores, real, images, index, labels, extractors, seed)
        record["timings"] = {"data_s": data_s, **stages.timings, "metrics_s": time.perf_counter() - t0}
        record["metrics"], record["per_class"], record["evaluators"] = scores.metrics, scores.per_class, scores.evaluators
        if stages._model is not None:
            record["plugin"]["config"] = stages._model.config()
        else:
            record["plugin"]["config"] = entry.cls(options).config()
        stage = "write"  # the files beside the result: a failure here is a write failure, as for the record
        if maps is not None:  # the maps a report shows (cxrbench report), kept beside the result
            save_report_maps(maps_path_for(result_path), queries, maps)
        samples_path = out_dir / f"{stem}.samples.jsonl"
        atomic_write_text(samples_path, "".join(json.dumps(json_safe(line), sort_keys=True) + "\n"
                                                for line in scores.per_sample))
        record["per_sample_file"] = samples_path.name
        if scores.features:  # what fidelity was computed from, so that `cxrbench validate` can re-derive it
            record.update(write_features_file(result_path, scores.features))
    except Exception as exc:
        if not procs.is_main:  # the main process records the failure (another process's as a RemoteError)
            return broadcast_from_main(None)
        if stages is not None and stage in ("generate", "localize"):
            stage = stages.stage
        record["status"] = "failed"
        record["error"] = {"stage": stage, "type": type(exc).__name__, "message": str(exc)}
        record["timings"] = dict(stages.timings) if stages is not None else {}
        _write_error_log(work, traceback.format_exc())
    record["timings"]["total_s"] = time.perf_counter() - started
    result_path = _write_record(result_path, record, work)
    outcome = RunOutcome(entry.model_id, track.name, seed, record["status"], result_path, record["metrics"],
                         record["timings"], reused=stages.reused if stages else [])
    if record["error"]:
        outcome.error = f"{record['error']['stage']}: {record['error']['type']}: {record['error']['message']}"
    return broadcast_from_main(outcome)


def _write_error_log(work: Path, text: str) -> None:
    """Keep a run's traceback in its work folder, if that folder can still be written."""
    try:
        atomic_write_text(work / "error.log", text)
    except OSError:
        pass


def _write_record(result_path: Path, record: dict[str, Any], work: Path) -> Path:
    """Write the result record; returns where it went.

    When ``result_path`` cannot be written (the results folder became unwritable after the checks at the
    start), the run is recorded as failed at stage ``write`` in ``work/result.json`` instead, so that what
    it computed is kept there and the other runs go on.
    """
    try:
        atomic_write_json(result_path, record)
        return result_path
    except OSError as exc:
        fallback = work / "result.json"
        record["status"] = "failed"
        record["error"] = {"stage": "write", "type": type(exc).__name__,
                           "message": f"cannot write {result_path} ({exc.strerror or exc}); "
                                      f"this record is kept in {fallback}"}
        _write_error_log(work, traceback.format_exc())
        try:
            atomic_write_json(fallback, record)
        except OSError:
            pass
        return fallback


def check_writable(folder: Path, what: str) -> None:
    """Create ``folder`` if needed, then write and remove a probe file in it.

    Raises:
        OutputError: one line naming the folder and why it cannot be written.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".cxrbench-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"{what} {folder} cannot be written ({exc.strerror or exc}); "
                          f"nothing was run") from None


def result_difference(path: Path, track: Track, options: dict[str, Any]) -> str | None:
    """Why the result at ``path`` was not made by this run's track and options (None: it was, or there
    is no file): another track version or hash, other ``--option`` values, or not a readable result."""
    if not path.exists():
        return None
    try:
        data = load_result(path)
    except ResultError as exc:
        return f"not a result cxrbench can read ({exc})"
    made = data.get("track") if isinstance(data.get("track"), dict) else {}
    differences = []
    if (str(made.get("version")), made.get("hash")) != (str(track.version), track.hash):
        differences.append(f"made under track {made.get('name')!r} version {made.get('version')} (hash "
                           f"{made.get('hash')}), this run is version {track.version} (hash {track.hash})")
    plugin = data.get("plugin") if isinstance(data.get("plugin"), dict) else {}
    requested = plugin.get("config_requested", {})
    if requested != json_safe(options):
        differences.append(f"made with options {requested}, this run has {json_safe(options)}")
    return "; ".join(differences) or None


def check_overwrites(out_dir: Path, track: Track, model_ids: Sequence[str], seeds: Sequence[int],
                     options: dict[str, dict[str, Any]]) -> None:
    """Refuse to overwrite results that another track version or other options made.

    Raises:
        OutputError: naming every such file and what differs.
    """
    problems = []
    for seed in seeds:
        for model_id in model_ids:
            path = out_dir / f"{result_stem(model_id, track.name, seed)}.json"
            why = result_difference(path, track, options.get(model_id) or {})
            if why:
                problems.append(f"{path}: {why}")
    if problems:
        raise OutputError("a run would overwrite results it did not make; pass --overwrite to replace "
                          "them, or write to another --out:\n  - " + "\n  - ".join(problems))


def remove_stale_temp_files(out_dir: Path, workdir: Path, stems: Sequence[str]) -> list[Path]:
    """Remove the temporary files that an interrupted write of these runs left (``.NAME.*.tmp`` beside a
    result or a stage artifact, see ``cxrbench.results.atomic_write_bytes``); returns them."""
    removed = []
    for stem in stems:
        found = [*out_dir.glob(glob.escape(f".{stem}.") + "*.tmp"), *(workdir / stem).glob(".*.tmp"),
                 *(workdir / stem).glob(".*.tmp.npz")]
        for path in found:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def preflight(track: Track, registry: Registry, model_ids: Sequence[str], seeds: Sequence[int], out_dir: Path,
              workdir: Path, options: dict[str, dict[str, Any]], overwrite: bool) -> None:
    """What can be checked before anything trains: both folders can be written, the track's data loads
    and every image file of its splits opens, and no result made under another track version or other
    options would be overwritten (unless ``overwrite``). Removes temporary files of interrupted writes."""
    from cxrbench.data.adapters._images import check_image_files

    check_writable(out_dir, "the results folder (--out)")
    check_writable(workdir, "the work folder (--workdir)")
    data = load_track_data(track, registry)
    check_image_files([*data.train, *data.test])
    if not overwrite:
        check_overwrites(out_dir, track, model_ids, seeds, options)
    if processes().is_main:
        stems = [result_stem(m, track.name, seed) for seed in seeds for m in model_ids]
        removed = remove_stale_temp_files(out_dir, workdir, stems)
        if removed:
            print(f"removed {len(removed)} temporary file(s) that an interrupted write left: "
                  + ", ".join(str(p) for p in removed), file=sys.stderr)


def run_benchmark(model_ids: Sequence[str], track: Track, seeds: Sequence[int], out_dir: Path,
                  workdir: Path | None = None, options: dict[str, dict[str, Any]] | None = None,
                  registry: Registry | None = None, show_progress: bool = True, device: str = "cpu",
                  feature_extractors: Sequence[str] | None = None,
                  checkpoint_every: int | None = None, jobs: int = 1,
                  overwrite: bool = False) -> list[RunOutcome]:
    """Run every model on the track for every seed; unknown model ids or extractors fail before anything runs.

    So do the checks of ``preflight``: unwritable folders, data that does not load or image files that do
    not open, and results of another track version or other options in ``out_dir`` (unless ``overwrite``).

    ``jobs`` > 1 runs that many (model, seed) runs at a time in worker processes (``_run_in_workers``).

    Under a launcher, joins the other processes first (``cxrbench.distributed.init_processes``); "cuda"
    then means each process's own GPU.
    """
    if jobs < 1:
        raise ProtocolError(f"jobs must be at least 1, but got {jobs}")
    init_processes(device)
    device = process_device(device)
    registry = registry or get_registry()
    entries = [registry.model(m) for m in model_ids]
    if feature_extractors is not None:
        feature_extractors_to_run(registry.feature_extractors, track.feature_extractors, feature_extractors)
    for model_id in options or {}:
        if model_id not in model_ids:
            raise ProtocolError(f"--option names model {model_id!r}, which is not among the models run: {list(model_ids)}")
    for entry in entries:
        try:
            entry.cls.Options(**(options or {}).get(entry.model_id, {}))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ProtocolError(f"options of model {entry.model_id!r} are not valid: {problems}") from None
    if track.base is not None:  # a missing or different base stops the run before anything trains
        check_base(track.base, f"track {track.name!r} v{track.version}")
    out_dir = Path(out_dir)
    workdir = Path(workdir) if workdir is not None else out_dir.parent / ".cxrbench-work"
    preflight(track, registry, [e.model_id for e in entries], seeds, out_dir, workdir, options or {},
              overwrite)
    if jobs > 1:
        if processes().count > 1:
            raise ProtocolError("jobs must be 1 under a launcher: the launcher's processes already share the work")
        if registry is not get_registry():
            raise ProtocolError("jobs > 1 runs models from the installed plugins only (worker processes "
                                "load the registry themselves); pass no registry")
        tasks = [(entry.model_id, seed) for seed in seeds for entry in entries]
        return _run_in_workers(tasks, jobs, track, out_dir, workdir, options or {}, show_progress, device,
                               feature_extractors, checkpoint_every)
    outcomes = []
    for seed in seeds:
        for entry in entries:
            outcomes.append(run_one(entry, track, seed, out_dir, workdir, registry,
                                    (options or {}).get(entry.model_id), show_progress, device,
                                    feature_extractors=feature_extractors, checkpoint_every=checkpoint_every))
    return outcomes


def _worker_init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _worker_run(model_id: str, seed: int, track: Track, out_dir: Path, workdir: Path, options: dict[str, Any] | None,
                device: str, feature_extractors: Sequence[str] | None, checkpoint_every: int | None) -> RunOutcome:
    registry = get_registry()
    return run_one(registry.model(model_id), track, seed, out_dir, workdir, registry, options, False, device,
                   feature_extractors=feature_extractors, checkpoint_every=checkpoint_every)


def _run_in_workers(tasks: list[tuple[str, int]], jobs: int, track: Track, out_dir: Path, workdir: Path,
                    options: dict[str, dict[str, Any]], show_progress: bool, device: str,
                    feature_extractors: Sequence[str] | None, checkpoint_every: int | None) -> list[RunOutcome]:
    """Run (model, seed) tasks in ``jobs`` worker processes, each with its share of the CPU threads.

    On a small CPU, several small models side by side use the cores better than one model with all of them
    (per-operator overhead dominates a small UNet's step; docs/performance.md). Each run is the same
    deterministic run as in one process, up to float rounding from the thread count. Outcomes come back in
    task order; the progress bar counts finished runs.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    import torch

    threads = max(1, torch.get_num_threads() // jobs)
    context = multiprocessing.get_context("spawn")
    progress = _Progress(show_progress)
    bar = progress.bar(len(tasks), f"runs ({jobs} at a time, {threads} thread(s) each)")
    outcomes: list[RunOutcome | None] = [None] * len(tasks)
    with ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=context, initializer=_worker_init,
                             initargs=(threads,)) as pool:
        futures = {
            pool.submit(_worker_run, model_id, seed, track, out_dir, workdir, options.get(model_id), device,
                        feature_extractors, checkpoint_every): i
            for i, (model_id, seed) in enumerate(tasks)
        }
        for future in as_completed(futures):
            i = futures[future]
            outcomes[i] = outcome = future.result()
            bar.update(1)
            bar.set_postfix({"last": f"{outcome.model} seed {outcome.seed}: {outcome.status}"}, refresh=False)
    bar.close()
    return [o for o in outcomes if o is not None]


SUMMARY_METRICS = (
    ("fid_domain", "FID (domain)"),
    ("ms_ssim_within_prompt", "MS-SSIM"),
    ("cond_auroc", "cond. AUROC"),
    ("loc_word_auc_roc", "word AUC"),
    ("loc_word_pointing_game", "pointing"),
    ("loc_eos_auc_roc", "EOS AUC"),
)


def unavailable_metrics_lines(outcomes: Sequence[RunOutcome]) -> list[str]:
    """What a run prints after its summary table: each run's metrics without a value, grouped by reason.

    The reason is the metric's note when it says why (``not available: ...``), else "no value" and the note.
    Empty when every metric of every run has a value (a run that failed has no metrics to list).
    """
    lines = []
    for o in outcomes:
        by_reason: dict[str, list[str]] = {}
        for name, entry in sorted(o.metrics.items()):
            if entry.get("value") is None:
                note = entry.get("note") or ""
                reason = note if note.startswith("not available") else f"no value (note: {note or 'none'})"
                by_reason.setdefault(reason, []).append(name)
        for reason, names in sorted(by_reason.items(), key=lambda item: item[1][0]):
            lines.append(f"  {o.model} seed {o.seed}: {', '.join(names)}: {reason}")
    return ["metrics not computed:", *lines] if lines else []


def summary_table(outcomes: Sequence[RunOutcome]) -> str:
    """The table printed at the end of a run."""
    from tabulate import tabulate

    rows = []
    for o in outcomes:
        row = [o.model, o.track, o.seed, o.status]
        for key, _ in SUMMARY_METRICS:
            value = (o.metrics.get(key) or {}).get("value")
            row.append("-" if value is None else f"{value:.3f}")
        row.append(f"{o.timings.get('total_s', 0.0):.1f}")
        row.append(",".join(o.reused) or "-")
        rows.append(row)
    headers = ["model", "track", "seed", "status", *(h for _, h in SUMMARY_METRICS), "time s", "reused"]
    return tabulate(rows, headers=headers, tablefmt="github")
