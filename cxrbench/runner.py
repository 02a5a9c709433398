"""The protocol runner: data -> fit -> generate -> localize -> metrics -> result, per (model, track, seed).

Each stage leaves an artifact in the run's work folder (``cxrbench.artifacts``), written atomically; running
the same command again after an interruption continues from the last finished stage. A model that fails
is recorded as a failed result with the stage and error, and the other runs go on.

Under a launcher (``accelerate launch -m cxrbench run ...``, ``torchrun``; see ``cxrbench.distributed``)
every process runs the same stages: models that support it fine-tune with DDP, generation and
localization are shared out by sample (process i takes samples i, i+P, ...) and gathered on the main
process, which alone writes artifacts, scores and writes the result. ``--out`` and ``--workdir`` must
then be on a filesystem every process sees.
"""

from __future__ import annotations

import glob
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from pydantic import ValidationError

from cxrbench.artifacts import (
    FIT_FOLDER,
    GENERATED_FILE,
    MAPS_FILE,
    StageRecord,
    load_generated,
    load_saved_maps,
    maps_path_for,
    save_generated,
    save_report_maps,
    save_work_maps,
    write_scores,
)
from cxrbench.data.adapters._images import check_image_files
from cxrbench.distributed import init_processes, main_decides, map_sharded, on_main, process_device, processes
from cxrbench.environment import environment_record
from cxrbench.errors import OutputError, PluginError, ProtocolError, ResultError
from cxrbench.model import (
    GENERATE,
    LOCALIZE,
    FitContext,
    LocalizationQuery,
    Model,
    checked_images,
    checked_maps,
)
from cxrbench.plan import TrackData, generation_plan, load_track_data, localization_queries, score_outputs
from cxrbench.pretrained import check_base
from cxrbench.protocol import Track
from cxrbench.registry import ModelEntry, Registry, get_registry
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
from cxrbench.scoring import feature_extractors_to_run

GENERATION_CHUNK = 32
LOCALIZATION_CHUNK = 16

R = TypeVar("R")
Generated = tuple[np.ndarray, np.ndarray, list[tuple[str, ...]]]
Maps = list[dict[str, np.ndarray]]


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


class _Progress:
    """tqdm bars when asked for, silence otherwise."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def bar(self, total: int, desc: str):
        from tqdm.auto import tqdm  # lazy: tqdm.auto probes for notebooks, which `import cxrbench.cli` should not

        return tqdm(total=total, desc=desc, disable=not self.enabled, leave=False, dynamic_ncols=True)


class RunStages:
    """The stages of one (model, track, seed) run and their artifacts in ``workdir`` (``cxrbench.artifacts``).

    ``fit`` runs only when a stage that needs the fitted model computes: a run whose generated images
    and maps are both reused never builds its fit.
    """

    def __init__(self, entry: ModelEntry, options: dict[str, Any], track: Track, seed: int, data: TrackData,
                 workdir: Path, progress: _Progress, device: str, checkpoint_every: int | None = None) -> None:
        self.entry, self.options, self.track, self.seed, self.data = entry, options, track, seed, data
        self.workdir, self.progress, self.device = workdir, progress, device
        self.checkpoint_every = checkpoint_every
        self.timings: dict[str, float] = {}
        self.reused: list[str] = []
        self._model: Model | None = None
        self._fitted = False
        self.stage = "init"
        self.record = StageRecord(workdir, track.hash, options)

    @property
    def caps(self) -> frozenset[str]:
        return self.entry.cls.capabilities

    def _cached(self, name: str, reusable: Callable[[], bool], load: Callable[[], R | None],
                compute: Callable[[], R | None], save: Callable[[R], bool],
                on_saved: Callable[[], Any] | None = None, needs_fit: bool = True) -> R | None:
        """Stage ``name``: when ``stages.json`` says it finished and ``reusable()``, its time and ``load()``;
        else (after fitting, when ``needs_fit``) ``compute()``, timed, which the main process then saves with
        ``save`` and, when that says it kept it (True), stamps as done before calling ``on_saved``.

        ``compute`` returns None on a process whose share went to the main process; so does this.
        """
        seconds = self.record.seconds(name)
        if seconds is not None and reusable():
            self.timings[f"{name}_s"] = seconds
            self.reused.append(name)
            return load()
        if needs_fit:
            self.fit()
        self.stage = name
        t0 = time.perf_counter()
        value = compute()
        if value is None:
            return None
        self.timings[f"{name}_s"] = time.perf_counter() - t0

        def keep() -> None:
            if save(value):
                self.record.stamp(name, self.timings[f"{name}_s"])
                if on_saved is not None:
                    on_saved()

        on_main(keep)
        return value

    def model(self) -> Model:
        """The model, built from the run's options (not fitted: see :meth:`fit`)."""
        if self._model is None:
            self.stage = "init"
            self._model = self.entry.cls(self.options)
        return self._model

    def fit(self) -> Model:
        """The fitted model: the saved fit of the work folder when the fit stage finished, else fitted now."""
        model = self.model()
        if not self._fitted:
            fit_dir = self.workdir / FIT_FOLDER
            self.stage = "fit"
            self._cached("fit", lambda: model.load(fit_dir), lambda: model, lambda: self._fit_now(model),
                         lambda fitted: bool(fitted.save(fit_dir)), on_saved=self._remove_checkpoints,
                         needs_fit=False)
            self._fitted = True
        return model

    def _fit_context(self) -> FitContext:
        return FitContext(seed=self.seed, workdir=self.workdir / "fit-scratch", image_size=self.track.image_size,
                          device=self.device, checkpoint_every=self.checkpoint_every, base=self.track.base)

    def _fit_now(self, model: Model) -> Model:
        bar = self.progress.bar(self.track.budget.steps, f"{self.entry.model_id} fit")

        def on_step(step: int, logs: dict[str, float]) -> None:
            bar.update(step - bar.n)  # a fit resumed from a checkpoint starts past 0
            if logs:
                bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items()}, refresh=False)

        context = self._fit_context()
        context.progress = on_step
        context.workdir.mkdir(parents=True, exist_ok=True)
        model.fit(self.data.train, self.track.budget, context)
        bar.close()
        return model

    def _remove_checkpoints(self) -> None:
        """The saved fit supersedes the training checkpoints."""
        shutil.rmtree(self._fit_context().checkpoint_dir, ignore_errors=True)

    def config(self) -> dict[str, Any]:
        """The model's resolved configuration (of the model the run built, or built from its options)."""
        return (self._model if self._model is not None else self.entry.cls(self.options)).config()

    def generate(self) -> Generated | None:
        if GENERATE not in self.caps:
            return None
        prompts, seeds, index, labels = generation_plan(self.track, self.data.test, self.seed)
        path = self.workdir / GENERATED_FILE
        return self._cached("generate", path.exists, lambda: on_main(lambda: (load_generated(path), index, labels)),
                            lambda: self._generate_now(prompts, seeds, index, labels),
                            lambda generated: save_generated(path, generated[0]))

    def _generate_now(self, prompts: list[str], seeds: list[int], index: np.ndarray,
                      labels: list[tuple[str, ...]]) -> Generated | None:
        model, size = self.fit(), self.track.image_size
        bar = self.progress.bar(len(prompts), f"{self.entry.model_id} generate")

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
        return images, index, labels

    def localize(self, queries: list[LocalizationQuery]) -> Maps | None:
        if LOCALIZE not in self.caps or not queries:
            return None
        path = self.workdir / MAPS_FILE
        return self._cached("localize", path.exists, lambda: on_main(lambda: load_saved_maps(path, len(queries))),
                            lambda: self._localize_now(queries), lambda maps: save_work_maps(path, maps))

    def _localize_now(self, queries: list[LocalizationQuery]) -> Maps | None:
        model = self.fit()
        by_id = {s.id: s for s in self.data.test}
        bar = self.progress.bar(len(queries), f"{self.entry.model_id} localize")

        def work(positions: list[int]) -> Maps:
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
        return maps  # None when not the main process: its maps went to the main one

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


def _reused_outcome(entry: ModelEntry, track: Track, seed: int, result_path: Path,
                    options: dict[str, Any]) -> RunOutcome | None:
    """The outcome of the finished result at ``result_path`` when this run's options made it, else None."""
    done = finished_result(result_path, track)
    if done is None or done["plugin"].get("config_requested", {}) != json_safe(options):
        return None
    return RunOutcome(entry.model_id, track.name, seed, "ok", result_path, done["metrics"], done["timings"],
                      reused=["result"])


@dataclass
class _StagesReached:
    """How far the stages of a run got (on one process): their outputs, or the error that stopped them."""

    stage: str = "data"
    data: TrackData | None = None
    data_s: float = 0.0
    stages: RunStages | None = None
    generated: Generated | None = None
    queries: list[LocalizationQuery] = field(default_factory=list)
    maps: Maps | None = None
    error: Exception | None = None
    traceback: str = ""


def _run_stages(entry: ModelEntry, track: Track, seed: int, work: Path, registry: Registry, options: dict[str, Any],
                record: dict[str, Any], show_progress: bool, device: str,
                checkpoint_every: int | None) -> _StagesReached:
    """Data (described in ``record``), generate and localize, on every process (their shares gathered on the
    main one); never raises."""
    reached = _StagesReached()
    try:
        work.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        reached.data = data = load_track_data(track, registry)
        record["dataset"].update(fingerprint=data.fingerprint, n_train=len(data.train), n_test=len(data.test),
                                 left_out=dict(data.left_out))
        reached.data_s = time.perf_counter() - t0
        progress = _Progress(bool(on_main(lambda: show_progress)))  # bars on the main process only
        reached.stages = stages = RunStages(entry, options, track, seed, data, work, progress, device,
                                            checkpoint_every)
        reached.stage = "generate"
        reached.generated = stages.generate()
        reached.stage = "localize"
        reached.queries = localization_queries(data.test)
        reached.maps = stages.localize(reached.queries)
    except Exception as exc:
        reached.error, reached.traceback = exc, traceback.format_exc()
        if reached.stages is not None and reached.stage in ("generate", "localize"):
            reached.stage = reached.stages.stage
    return reached


def _score_and_write(reached: _StagesReached, record: dict[str, Any], result_path: Path, track: Track, seed: int,
                     registry: Registry, feature_extractors: Sequence[str] | None) -> None:
    """Score the run's outputs into ``record`` and write the files beside the result (``reached.stage`` says
    which of the two an exception stopped)."""
    assert reached.data is not None and reached.stages is not None
    t0 = time.perf_counter()
    scores = score_outputs(track, reached.data, reached.maps, reached.generated, seed, registry, feature_extractors)
    record["timings"] = {"data_s": reached.data_s, **reached.stages.timings, "metrics_s": time.perf_counter() - t0}
    record["plugin"]["config"] = reached.stages.config()
    reached.stage = "write"  # the files beside the result: a failure here is a write failure, as for the record
    if reached.maps is not None:  # the maps a report shows (cxrbench report), kept beside the result
        save_report_maps(maps_path_for(result_path), reached.queries, reached.maps)
    write_scores(result_path, record, scores)


def _record_run(reached: _StagesReached, entry: ModelEntry, track: Track, seed: int, result_path: Path, work: Path,
                record: dict[str, Any], started: float, score: Callable[[], Any]) -> RunOutcome:
    """On the main process: score (unless a stage failed), write the result or the failure, and say how it went."""
    if reached.error is None:
        reached.stage = "metrics"
        try:
            score()
        except Exception as exc:
            reached.error, reached.traceback = exc, traceback.format_exc()
    if reached.error is not None:
        record["status"] = "failed"
        record["error"] = {"stage": reached.stage, "type": type(reached.error).__name__, "message": str(reached.error)}
        record["timings"] = dict(reached.stages.timings) if reached.stages is not None else {}
        _write_error_log(work, reached.traceback)
    record["timings"]["total_s"] = time.perf_counter() - started
    result_path = _write_record(result_path, record, work)
    outcome = RunOutcome(entry.model_id, track.name, seed, record["status"], result_path, record["metrics"],
                         record["timings"], reused=reached.stages.reused if reached.stages else [])
    if record["error"]:
        outcome.error = f"{record['error']['stage']}: {record['error']['type']}: {record['error']['message']}"
    return outcome


def run_one(entry: ModelEntry, track: Track, seed: int, out_dir: Path, workdir: Path, registry: Registry,
            options: dict[str, Any] | None = None, show_progress: bool = True, device: str = "cpu",
            feature_extractors: Sequence[str] | None = None, checkpoint_every: int | None = None) -> RunOutcome:
    """Run one (model, track, seed) through every stage, reusing finished stages; never raises for model errors.

    ``feature_extractors``: the run's explicit list (default: see ``cxrbench.scoring.feature_extractors_to_run``).
    ``checkpoint_every``: training checkpoints every that many steps (``FitContext.checkpoint_every``).
    Every process of a multi-process run calls it and gets the main process's outcome.
    """
    options = dict(options or {})
    stem = result_stem(entry.model_id, track.name, seed)
    result_path = out_dir / f"{stem}.json"
    reused = main_decides(lambda: _reused_outcome(entry, track, seed, result_path, options))
    if reused is not None:
        return reused
    record = _skeleton(entry, options, track, seed, device)
    record["plugin"]["config_requested"] = json_safe(options)
    work = workdir / stem
    started = time.perf_counter()
    reached = _run_stages(entry, track, seed, work, registry, options, record, show_progress, device,
                          checkpoint_every)

    def score() -> None:
        _score_and_write(reached, record, result_path, track, seed, registry, feature_extractors)

    # the main process scores, writes and records the failure of any process (another's as a RemoteError)
    return main_decides(lambda: _record_run(reached, entry, track, seed, result_path, work, record, started, score))
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
    check_writable(out_dir, "the results folder (--out)")
    check_writable(workdir, "the work folder (--workdir)")
    data = load_track_data(track, registry)
    check_image_files([*data.train, *data.test])
    if not overwrite:
        check_overwrites(out_dir, track, model_ids, seeds, options)
    stems = [result_stem(m, track.name, seed) for seed in seeds for m in model_ids]
    on_main(lambda: _remove_stale_temp_files_saying_so(out_dir, workdir, stems))


def _remove_stale_temp_files_saying_so(out_dir: Path, workdir: Path, stems: Sequence[str]) -> None:
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
    import torch  # lazy: torch takes seconds to import; only --jobs workers need it here

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
    import torch  # lazy: see _worker_init

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
    from tabulate import tabulate  # lazy: see cxrbench.cli.cmd_list
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
