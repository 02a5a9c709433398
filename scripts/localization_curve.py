"""Localization of the finding word (and EOS) as a model trains: the measurement the default track is designed on.

Trains one registered diffusion model on a track's data (optionally with changed dataset parameters,
step budget or learning rate) and, at chosen steps, localizes the test queries with several sets of
extraction timesteps and prints pixel AUC-ROC and pointing game per token group. One run gives a whole
learning curve, so the step budget and the extraction timesteps can be chosen from it.

    python scripts/localization_curve.py frozen-encoder --track default --steps 1000 --eval-at 250 500 1000

Prints one line per (step, timestep set) and, with --json, writes every figure to a file.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from cxrbench.metrics.localization import localization_scores
from cxrbench.model import ExtractionConfig, FitContext
from cxrbench.protocol import DatasetSpec, get_track
from cxrbench.registry import get_registry
from cxrbench.runner import load_track_data, localization_queries

TIMESTEP_SETS = {
    "all10": tuple(range(820, 99, -80)),
    "low4": (340, 260, 180, 100),
    "high4": (820, 740, 660, 580),
}


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def evaluate(model, test, queries, timesteps) -> dict[str, float]:
    by_id = {s.id: s for s in test}
    images = np.stack([by_id[q.sample_id].image for q in queries])
    maps = model.localize(images, queries, ExtractionConfig(timesteps=timesteps))
    out: dict[str, list[float]] = {}
    for query, groups in zip(queries, maps):
        finding = next(f for f in by_id[query.sample_id].findings
                       if f.label == query.label and f.phrase == query.phrase)
        for group, heatmap in groups.items():
            scores = localization_scores(np.asarray(heatmap, np.float64), list(finding.boxes),
                                         by_id[query.sample_id].image.shape)
            out.setdefault(f"{group}_auc", []).append(scores["auc_roc"])
            out.setdefault(f"{group}_pointing", []).append(scores["pointing_game"])
    return {k: float(np.nanmean(v)) for k, v in out.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model")
    parser.add_argument("--track", default="default")
    parser.add_argument("--steps", type=int, help="training steps (default: the track's)")
    parser.add_argument("--eval-at", type=int, nargs="+", help="steps to localize at (default: the last)")
    parser.add_argument("--dataset", action="append", default=[], metavar="KEY=VALUE",
                        help="change a dataset parameter (e.g. n_train=600)")
    parser.add_argument("--budget", action="append", default=[], metavar="KEY=VALUE",
                        help="change a training budget field (e.g. unet_learning_rate=2e-3)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="model option")
    parser.add_argument("--queries", type=int, default=120, help="test queries to localize")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    track = get_track(args.track)
    params = dict(track.dataset.params)
    params.update({k: _value(v) for k, v in (s.split("=", 1) for s in args.dataset)})
    budget = dataclasses.replace(track.budget, **{k: _value(v) for k, v in (s.split("=", 1) for s in args.budget)})
    if args.steps:
        budget = dataclasses.replace(budget, steps=args.steps)
    track = dataclasses.replace(track, dataset=DatasetSpec(track.dataset.name, params),
                                image_size=params.get("image_size", track.image_size), budget=budget)
    eval_at = sorted(set(args.eval_at or [budget.steps]))

    registry = get_registry()
    data = load_track_data(track, registry)
    queries = localization_queries(data.test)[: args.queries]
    options = {k: _value(v) for k, v in (s.split("=", 1) for s in args.option)}
    model = registry.model(args.model).cls(options)
    rows = []
    started = time.perf_counter()
    fit_seconds = 0.0

    def on_step(step: int, logs: dict[str, float]) -> None:
        nonlocal fit_seconds
        if step not in eval_at:
            return
        fit_seconds = time.perf_counter() - started - sum(r["eval_s"] for r in rows)
        for name, timesteps in TIMESTEP_SETS.items():
            t0 = time.perf_counter()
            figures = evaluate(model, data.test, queries, timesteps)
            row = {"step": step, "timesteps": name, "fit_s": round(fit_seconds, 1),
                   "eval_s": round(time.perf_counter() - t0, 1), "loss": logs.get("loss"), **figures}
            rows.append(row)
            print(json.dumps(row), flush=True)

    with tempfile.TemporaryDirectory() as scratch:
        context = FitContext(seed=args.seed, workdir=Path(scratch), image_size=track.image_size, progress=on_step)
        model.fit(data.train, budget, context)
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "track": args.track, "dataset": params,
                                         "budget": dataclasses.asdict(budget), "options": options,
                                         "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
