"""The sampler and the sample size of the default track, chosen by measurement: FID and conditional AUROC of
fitted models at several guidance scales and numbers of generated images, over generation seeds, beside
the real-vs-real floor.

    python scripts/generation_sweep.py MODEL_FOLDER [...] --model frozen-encoder --sizes 256 512 --guidance 1 3

Each MODEL_FOLDER is a fitted model saved by ``Model.save`` (e.g. ``localization_curve.py --save``). For
every guidance scale, sample size n and generation seed, the model draws n images (test prompts in order,
the track's samples per prompt each, cycling through the test split when n needs more), and the domain
evaluator scores FID against the track's real test images and the conditional AUROC of the prompted
findings. The floor is n real training images drawn at random (two disjoint real sets of those sizes).
Prints mean and standard deviation over seeds per row; with --json, every value.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

from cxrbench.metrics.evaluator import DomainEvaluator
from cxrbench.metrics.fidelity import conditional_accuracy, fid_from_features
from cxrbench.protocol import derive_seed, get_track
from cxrbench.registry import get_registry
from cxrbench.runner import load_track_data


def _plan(test, n: int, per_prompt: int, seed: int) -> tuple[list[str], list[int]]:  # noqa: ANN001
    prompts, seeds = [], []
    for i in range(n):
        sample = test[(i // per_prompt) % len(test)]
        prompts.append(sample.report)
        seeds.append(derive_seed(seed, sample.id, i))
    return prompts, seeds


def _load(registry, model_id: str, folder: Path | None):  # noqa: ANN001, ANN202
    if folder is None:
        return None
    model = registry.model(model_id).cls()
    if not model.load(folder):
        raise SystemExit(f"{folder}: no saved {model_id} model there")
    return model


def _score(model, data, train_images, track, sampler, n, seed, real, evaluator) -> dict:  # noqa: ANN001
    """FID and conditional AUROC of n images of ``model`` (None: real training images) for one seed."""
    t0 = time.perf_counter()
    prompts, seeds = _plan(data.test, n, track.samples_per_prompt, seed)
    if model is None:
        images = train_images[np.random.default_rng(seed).integers(len(train_images), size=n)]
    else:
        images = model.generate(prompts, seeds, track.image_size, sampler)
    labels = {s.report: s.labels for s in data.test}
    cond = conditional_accuracy(evaluator.predict_proba(images), [tuple(labels[p]) for p in prompts])
    return {"seed": seed, "fid": fid_from_features(real, evaluator.features(images))["value"],
            "cond_auroc": cond["auroc_macro"], "cond_top1": cond["top1"], "s": round(time.perf_counter() - t0, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--model", default="frozen-encoder", help="registered model the folders were saved from")
    parser.add_argument("--track", default="default")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--guidance", type=float, nargs="+", default=[None], help="guidance scales (default: the track's)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    track = get_track(args.track)
    registry = get_registry()
    data = load_track_data(track, registry)
    evaluator = DomainEvaluator.load()
    real = evaluator.features(np.stack([s.image for s in data.test]))
    train_images = np.stack([s.image for s in data.train])
    rows = []
    for folder in [None, *args.folders]:
        model = _load(registry, args.model, folder)
        for guidance in (args.guidance if folder is not None else [None]):
            sampler = track.sampler if guidance is None else dataclasses.replace(track.sampler, guidance_scale=guidance)
            for n in args.sizes:
                runs = [_score(model, data, train_images, track, sampler, n, seed, real, evaluator)
                        for seed in args.seeds]
                row = {"model": str(folder or "real training images"), "guidance": sampler.guidance_scale, "n": n,
                       "runs": runs, **{f"{k}_{stat}": float(f(np.array([r[k] for r in runs])))
                                       for k in ("fid", "cond_auroc")
                                       for stat, f in (("mean", np.mean), ("sd", lambda a: np.std(a, ddof=1)))}}
                rows.append(row)
                print(f"{row['model']} guidance {row['guidance']} n={n}: FID {row['fid_mean']:.2f} +- {row['fid_sd']:.2f}, "
                      f"cond AUROC {row['cond_auroc_mean']:.3f} +- {row['cond_auroc_sd']:.3f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"track": args.track, "n_real": len(real), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
