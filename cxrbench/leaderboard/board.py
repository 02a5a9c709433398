"""The leaderboard's data: result records grouped by track and model, seeds aggregated, entries ranked.

Only records with ``status == "ok"`` contribute metrics; failed records are kept as :class:`FailedRun`
rows (model, seed, stage, error) so that a failure is visible rather than silently missing. An entry whose
records carry a ``plugin.baseline`` label (the box prior) is a reference baseline: shown under its label,
never ranked, listed after the models. A metric whose entries carry a ``source`` (the distribution that
registered it) keeps that source and its ``description`` (:attr:`MetricSummary.source`); built-in metrics
have none.

Seed aggregation, per (track, model, metric), over the seeds whose value is not null:

- one seed: the value and that seed's own bootstrap 95% interval (``ci_low``/``ci_high`` of the record);
- ``n >= 2`` seeds: the mean and ``mean +- t(0.975, n - 1) * sd / sqrt(n)``, with ``sd`` the sample
  standard deviation (``ddof = 1``) of the per-seed values and ``t`` Student's t quantile. This interval
  describes seed-to-seed variation (training and sampling randomness); the per-seed bootstrap intervals,
  which describe test-set sampling, are not folded in.

Every interval is then cut at the metric's range (:func:`cxrbench.leaderboard.columns.metric_range`: an
AUC-ROC or pointing game lies in [0, 1], a FID is at least 0). The true value lies in that range, so the cut
interval covers it whenever the uncut one does: the cut keeps the 95% and removes only impossible values.
``MetricSummary.cut`` says that an end was cut.

A metric that no seed reports, or that every seed reports as null, has ``mean = None`` and is shown as ``-``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from scipy.special import stdtrit

from cxrbench.errors import ResultError
from cxrbench.leaderboard.columns import metric_range
from cxrbench.leaderboard.ranking import joint_scores, pareto_ranks
from cxrbench.protocol import TRACKS
from cxrbench.results import HEADLINE_FIDELITY, HEADLINE_LOCALIZATION

#: Confidence level of every interval on the leaderboard.
CONFIDENCE = 0.95


@dataclass(frozen=True)
class MetricSummary:
    """One metric of one (track, model) after seed aggregation.

    ``n_values`` is the number of seeds that reported a value; ``interval_kind`` is ``"bootstrap"`` (one
    seed, its own interval), ``"t"`` (several seeds, t-interval over seeds) or ``"none"`` (no interval).
    """

    name: str
    mean: float | None
    ci_low: float | None
    ci_high: float | None
    n_values: int
    higher_is_better: bool | None
    interval_kind: str
    note: str | None = None
    #: True when an end of the interval was cut at the metric's range.
    cut: bool = False
    #: The distribution that registered the metric (its ``source`` in the records; distinct values joined);
    #: None for a built-in metric.
    source: str | None = None
    #: The metric's ``description`` in the records (distinct values joined); None when there is none.
    description: str | None = None


@dataclass
class Entry:
    """One (track, model) row of the leaderboard."""

    track: str
    model: str
    seeds: tuple[int, ...]
    distribution: str
    version: str
    capabilities: tuple[str, ...]
    #: Distinct plugin configurations over the seeds, each as canonical JSON (sorted keys).
    configs: tuple[str, ...]
    metrics: dict[str, MetricSummary]
    #: The label of a reference baseline (``plugin.baseline`` of its records); None for a model.
    baseline: str | None = None
    #: 1 = on the Pareto frontier; None when the entry lacks either axis.
    pareto_rank: int | None = None
    #: Tie-break within a Pareto rank, in [0, 1]; None when the entry lacks either axis.
    joint_score: float | None = None
    #: Position on the track (ties share a rank); None when the entry lacks either axis (listed last).
    rank: int | None = None
    #: The file each seed's record was read from (``_path``), in seed order; None where unknown.
    paths: tuple[str | None, ...] = ()

    @property
    def n_seeds(self) -> int:
        return len(self.seeds)

    def value(self, metric: str) -> float | None:
        summary = self.metrics.get(metric)
        return None if summary is None else summary.mean

    @property
    def has_both_axes(self) -> bool:
        return self.value(HEADLINE_FIDELITY) is not None and self.value(HEADLINE_LOCALIZATION) is not None

    @property
    def is_ranked_candidate(self) -> bool:
        """A model (not a baseline) with both axes: it takes part in the ranking."""
        return self.baseline is None and self.has_both_axes

    @property
    def display_name(self) -> str:
        """What the leaderboard calls the entry: a baseline's label, else the model id."""
        return self.baseline if self.baseline is not None else self.model


@dataclass(frozen=True)
class FailedRun:
    """A result record with ``status == "failed"``: where it stopped and why."""

    track: str
    model: str
    seed: int
    stage: str
    error_type: str
    message: str
    path: str | None = None


@dataclass
class TrackBoard:
    """The ranked entries of one track (best first, entries lacking an axis last) and its failed runs."""

    name: str
    #: Distinct track versions and hashes seen in the records (one of each for validated records).
    versions: tuple[str, ...]
    hashes: tuple[str, ...]
    entries: list[Entry] = field(default_factory=list)
    failed: list[FailedRun] = field(default_factory=list)

    @property
    def ranked_entries(self) -> list[Entry]:
        return [entry for entry in self.entries if entry.rank is not None]

    @property
    def unranked_entries(self) -> list[Entry]:
        """Models lacking an axis (baselines are not among them)."""
        return [entry for entry in self.entries if entry.rank is None and entry.baseline is None]

    @property
    def baselines(self) -> list[Entry]:
        return [entry for entry in self.entries if entry.baseline is not None]


@dataclass
class Leaderboard:
    """All tracks, in protocol order (``cxrbench.protocol.TRACKS``), then any other track by name."""

    tracks: list[TrackBoard] = field(default_factory=list)

    @property
    def is_empty(self) -> bool:
        return not self.tracks

    @property
    def entries(self) -> list[Entry]:
        return [entry for board in self.tracks for entry in board.entries]

    @property
    def failed(self) -> list[FailedRun]:
        return [run for board in self.tracks for run in board.failed]

    def track(self, name: str) -> TrackBoard:
        for board in self.tracks:
            if board.name == name:
                return board
        raise KeyError(f"track must be one of {[b.name for b in self.tracks]}, but got {name!r}")


def seed_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """Mean and two-sided t-interval over per-seed values: ``mean +- t((1+c)/2, n-1) * sd / sqrt(n)``.

    ``sd`` is the sample standard deviation (``ddof = 1``). Needs at least two values.
    """
    n = len(values)
    if n < 2:
        raise ValueError(f"values must hold at least 2 seeds for a t-interval, but got {n}")
    mean = math.fsum(values) / n
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    # stdtrit(df, p) is the inverse CDF of Student's t (what scipy.stats.t.ppf evaluates), without the
    # import cost of scipy.stats.
    half_width = float(stdtrit(n - 1, 0.5 + confidence / 2.0)) * sd / math.sqrt(n)
    return mean, mean - half_width, mean + half_width


def summarize_metric(name: str, per_seed: Sequence[dict[str, Any]]) -> MetricSummary:
    """Aggregate one metric's per-seed entries (``value``, ``ci_low``, ``ci_high``, ...), see the module."""
    present = [entry for entry in per_seed if _number(entry.get("value")) is not None]
    directions = [e["higher_is_better"] for e in per_seed if isinstance(e.get("higher_is_better"), bool)]
    higher_is_better = directions[0] if directions else None
    note = _distinct(per_seed, "note", "; ")
    origin = {"source": _distinct(per_seed, "source", ", "),
              "description": _distinct(per_seed, "description", "; ")}
    if not present:
        return MetricSummary(name, None, None, None, 0, higher_is_better, "none", note, **origin)
    if len(present) == 1:
        only = present[0]
        mean, low, high = _number(only["value"]), _number(only.get("ci_low")), _number(only.get("ci_high"))
        kind = "bootstrap" if low is not None and high is not None else "none"
        if kind == "none":
            low = high = None
    else:
        mean, low, high = seed_interval([_number(entry["value"]) for entry in present])
        kind = "t"
    low, high, cut = cut_to_range(low, high, metric_range(name))
    return MetricSummary(name, mean, low, high, len(present), higher_is_better, kind, note, cut, **origin)


def _distinct(per_seed: Sequence[dict[str, Any]], key: str, separator: str) -> str | None:
    """The distinct non-empty values of ``key`` over the seeds' entries, sorted and joined; None if none."""
    values = sorted({str(entry[key]) for entry in per_seed if entry.get(key)})
    return separator.join(values) if values else None


def cut_to_range(
    low: float | None, high: float | None, bounds: tuple[float | None, float | None]
) -> tuple[float | None, float | None, bool]:
    """``[low, high]`` intersected with ``bounds`` (None: unbounded), and whether an end moved."""
    if low is None or high is None:
        return low, high, False
    floor, ceiling = bounds
    new_low = low if floor is None else max(low, floor)
    new_high = high if ceiling is None else min(high, ceiling)
    return new_low, new_high, (new_low, new_high) != (low, high)


def build_leaderboard(records: Iterable[dict[str, Any]]) -> Leaderboard:
    """Group result records by track, then model; aggregate seeds; rank each track.

    Records are those of ``cxrbench.results.load_results_dir`` (validated). Two ``ok`` records of the same
    (track, model, seed) raise :class:`~cxrbench.errors.ResultError`, since counting a seed twice would
    bias its mean. Ranking: see :mod:`cxrbench.leaderboard.ranking`.
    """
    ok: dict[str, dict[str, list[dict[str, Any]]]] = {}
    failed: dict[str, list[FailedRun]] = {}
    track_versions: dict[str, set[str]] = {}
    track_hashes: dict[str, set[str]] = {}
    for record in records:
        track = record.get("track") or {}
        track_name = str(track.get("name"))
        track_versions.setdefault(track_name, set()).add(str(track.get("version")))
        track_hashes.setdefault(track_name, set()).add(str(track.get("hash")))
        model = str((record.get("plugin") or {}).get("model"))
        if record.get("status") == "ok":
            ok.setdefault(track_name, {}).setdefault(model, []).append(record)
        else:
            failed.setdefault(track_name, []).append(_failed_run(record, track_name, model))

    boards = []
    for track_name in _track_order(track_versions):
        entries = [
            _entry(track_name, model, runs) for model, runs in sorted(ok.get(track_name, {}).items())
        ]
        boards.append(
            TrackBoard(
                name=track_name,
                versions=tuple(sorted(track_versions[track_name])),
                hashes=tuple(sorted(track_hashes[track_name])),
                entries=_ranked(entries),
                failed=sorted(failed.get(track_name, []), key=_failed_order),
            )
        )
    return Leaderboard(boards)


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _track_order(names: Iterable[str]) -> list[str]:
    protocol_order = {name: i for i, name in enumerate(TRACKS)}
    return sorted(names, key=lambda name: (protocol_order.get(name, len(protocol_order)), name))


def _is_metric(record: dict[str, Any], name: str) -> bool:
    return isinstance(record["metrics"].get(name), dict)


def _failed_order(run: FailedRun) -> tuple[str, int, str, str]:
    return run.model, run.seed, run.stage, run.message


def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _failed_run(record: dict[str, Any], track: str, model: str) -> FailedRun:
    error = record.get("error") if isinstance(record.get("error"), dict) else {}
    return FailedRun(
        track=track,
        model=model,
        seed=int(record.get("seed", -1)),
        stage=str(error.get("stage", "unknown")),
        error_type=str(error.get("type", "unknown")),
        message=str(error.get("message", "")),
        path=record.get("_path"),
    )


def _entry(track: str, model: str, runs: list[dict[str, Any]]) -> Entry:
    runs = sorted(runs, key=lambda record: record["seed"])
    seeds = [record["seed"] for record in runs]
    duplicates = sorted({seed for seed in seeds if seeds.count(seed) > 1})
    if duplicates:
        paths = sorted(str(r.get("_path", "<record>")) for r in runs if r["seed"] in duplicates)
        raise ResultError(
            f"records must hold one ok result per (track, model, seed), but got seed(s) {duplicates} of "
            f"model {model!r} on track {track!r} more than once: {paths}"
        )
    plugins = [record.get("plugin") or {} for record in runs]
    metric_names = sorted({name for record in runs for name in (record.get("metrics") or {})})
    metrics = {
        name: summarize_metric(name, [r["metrics"][name] for r in runs if _is_metric(r, name)])
        for name in metric_names
    }
    labels = sorted({str(p["baseline"]) for p in plugins if p.get("baseline")})
    return Entry(
        track=track,
        model=model,
        baseline=", ".join(labels) if labels else None,
        seeds=tuple(seeds),
        distribution=", ".join(sorted({str(p.get("distribution")) for p in plugins})),
        version=", ".join(sorted({str(p.get("version")) for p in plugins})),
        capabilities=tuple(sorted({str(c) for p in plugins for c in (p.get("capabilities") or [])})),
        configs=tuple(sorted({_canonical_json(p.get("config") or {}) for p in plugins})),
        metrics=metrics,
        paths=tuple(record.get("_path") for record in runs),
    )


def _ranked(entries: list[Entry]) -> list[Entry]:
    """Fill in Pareto rank, joint score and rank; return the entries best first, then unranked models, then
    baselines."""
    complete = [entry for entry in entries if entry.is_ranked_candidate]
    fidelity = [entry.value(HEADLINE_FIDELITY) for entry in complete]
    localization = [entry.value(HEADLINE_LOCALIZATION) for entry in complete]
    for entry, pareto, score in zip(
        complete, pareto_ranks(fidelity, localization), joint_scores(fidelity, localization)
    ):
        entry.pareto_rank, entry.joint_score = pareto, score
    complete.sort(key=lambda e: (e.pareto_rank, -e.joint_score, e.model))
    previous_key = None
    for position, entry in enumerate(complete, start=1):
        key = (entry.pareto_rank, round(entry.joint_score, 12))
        entry.rank = complete[position - 2].rank if key == previous_key else position
        previous_key = key
    incomplete = sorted((e for e in entries if e.baseline is None and not e.has_both_axes), key=lambda e: e.model)
    baselines = sorted((e for e in entries if e.baseline is not None), key=lambda e: (e.baseline, e.model))
    return complete + incomplete + baselines
