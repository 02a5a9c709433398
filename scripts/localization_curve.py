"""Localization of the finding word (and EOS) as a model trains: the measurement the default track is designed on.

Trains one registered diffusion model on a track's data (optionally with changed dataset parameters,
step budget or learning rate, from the track's pretrained base or another one given by ``--base``) and,
at chosen steps, localizes the test queries with several sets of extraction timesteps and prints pixel
AUC-ROC and pointing game per token group; with ``--generate N`` it also draws N test prompts x the
track's samples per prompt and scores the domain evaluator's conditional AUROC and FID against the test
images. One run gives a whole learning curve, so the step budget and the extraction timesteps can be
chosen from it.

    python scripts/localization_curve.py frozen-encoder --track default --steps 1000 --eval-at 250 500 1000
    python scripts/localization_curve.py frozen-encoder --base path/to/base --eval-at 200 400 --generate 64

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

from cxrbench.metrics.evaluator import DomainEvaluator
from cxrbench.metrics.fidelity import conditional_accuracy, fid_from_features
from cxrbench.metrics.localization import localization_scores
from cxrbench.model import ExtractionConfig, FitContext, PretrainedBase
from cxrbench.pretrained import file_sha256
from cxrbench.protocol import DatasetSpec, get_track
from cxrbench.registry import get_registry
from cxrbench.runner import generation_plan, load_track_data, localization_queries

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


def _base(folder: Path | None, track) -> PretrainedBase | None:  # noqa: ANN001
    """The base to start from: ``folder`` (unet.safetensors + base.json), or the track's own."""
    if folder is None:
        return track.base
    weights = (folder / "unet.safetensors").resolve()
    return PretrainedBase(name=f"{folder.name} (local)", weights=str(weights), sha256=file_sha256(weights))


def fidelity(model, data, track, prompts: int, seed: int, real_features, evaluator) -> dict[str, float]:  # noqa: ANN001
    """Conditional AUROC and FID (domain evaluator) of ``prompts`` test prompts x the track's samples each."""
    plan = generation_plan(dataclasses.replace(track, prompts_for_generation=prompts), data.test, seed)
    texts, seeds, index, labels = plan
    images = model.generate(texts, seeds, track.image_size, track.sampler)
    cond = conditional_accuracy(evaluator.predict_proba(images), [labels[p] for p in index])
    fid = fid_from_features(real_features, evaluator.features(images))
    return {"cond_auroc": cond["auroc_macro"], "cond_top1": cond["top1"], "fid_domain": fid["value"],
            "n_generated": len(images)}


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
    parser.add_argument("--base", type=Path, default=None,
                        help="folder of a pretrained base (unet.safetensors, base.json); default: the track's")
    parser.add_argument("--no-base", action="store_true", help="train from scratch even if the track has a base")
    parser.add_argument("--generate", type=int, default=0, metavar="N",
                        help="also score conditional AUROC and FID on N test prompts at each evaluation")
    parser.add_argument("--guidance", type=float, default=None, help="sampler guidance scale (default: the track's)")
    parser.add_argument("--timestep-sets", nargs="+", default=list(TIMESTEP_SETS), choices=list(TIMESTEP_SETS))
    parser.add_argument("--save", type=Path, default=None, help="save the fitted model to this folder at the end")
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
    if args.guidance is not None:
        track = dataclasses.replace(track, sampler=dataclasses.replace(track.sampler, guidance_scale=args.guidance))
    eval_at = sorted(set(args.eval_at or [budget.steps]))

    registry = get_registry()
    data = load_track_data(track, registry)
    queries = localization_queries(data.test)[: args.queries]
    options = {k: _value(v) for k, v in (s.split("=", 1) for s in args.option)}
    model = registry.model(args.model).cls(options)
    base = None if args.no_base else _base(args.base, track)
    evaluator = DomainEvaluator.load() if args.generate else None
    real_features = evaluator.features(np.stack([s.image for s in data.test])) if evaluator else None
    rows = []
    started = time.perf_counter()
    fit_seconds = 0.0

    def on_step(step: int, logs: dict[str, float]) -> None:
        nonlocal fit_seconds
        if step not in eval_at:
            return
        fit_seconds = time.perf_counter() - started - sum(r["eval_s"] for r in rows)
        if evaluator is not None:
            t0 = time.perf_counter()
            figures = fidelity(model, data, track, args.generate, args.seed, real_features, evaluator)
            row = {"step": step, "timesteps": None, "fit_s": round(fit_seconds, 1),
                   "eval_s": round(time.perf_counter() - t0, 1), "loss": logs.get("loss"), **figures}
            rows.append(row)
            print(json.dumps(row), flush=True)
        for name in args.timestep_sets:
            timesteps = TIMESTEP_SETS[name]
            t0 = time.perf_counter()
            figures = evaluate(model, data.test, queries, timesteps)
            row = {"step": step, "timesteps": name, "fit_s": round(fit_seconds, 1),
                   "eval_s": round(time.perf_counter() - t0, 1), "loss": logs.get("loss"), **figures}
            rows.append(row)
            print(json.dumps(row), flush=True)

    with tempfile.TemporaryDirectory() as scratch:
        context = FitContext(seed=args.seed, workdir=Path(scratch), image_size=track.image_size, progress=on_step,
                             base=base)
        model.fit(data.train, budget, context)
    if args.save:
        model.save(args.save)
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "track": args.track, "dataset": params,
                                         "budget": dataclasses.asdict(budget), "options": options,
                                         "base": None if base is None else dataclasses.asdict(base),
                                         "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
