"""Pretrain the default track's base: the small UNet every diffusion entry fine-tunes from.

Like Stable Diffusion before a medical fine-tune, the base learns to draw chest films and to ground
general words (sides, lung zones, support devices, anatomy) from a corpus that holds none of the track's
findings: ``synthcxr-base`` (its own random stream, so no study equals one of the track's), captioned
without any of the track's finding words. The text side is all-MiniLM-L6-v2, frozen; the UNet has the
``DiffusionOptions`` defaults, so every built-in entry's UNet can start from it.

    python scripts/pretrain_base.py --out cxrbench/assets/synthcxr-base-anatomy   # the shipped base
    python scripts/pretrain_base.py --variant lesions --steps 6000 --out /tmp/base-lesions   # another design

The defaults are the shipped base's settings (variant ``anatomy``, 3,000 steps x 32); they took 2,307 s
(38 minutes) on one core of a 2-core machine, beside another pretraining (``--threads 1 --compile``).

Deterministic for a seed on one machine; resumable (interrupt it and run the same command again: it goes
on from the last checkpoint in ``--workdir``); a progress bar shows the loss. At the end it writes
``unet.safetensors`` and ``base.json`` (the manifest ``cxrbench.pretrained`` reads) into ``--out`` and
prints the sha256 that a track's ``PretrainedBase`` must name.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from cxrbench.diffusion.acceleration import COMPILE_ENV
from cxrbench.diffusion.model import DiffusionModel
from cxrbench.model import FitContext, TrainingBudget
from cxrbench.pretrained import MANIFEST, file_sha256
from cxrbench.registry import get_registry

WEIGHTS = "unet.safetensors"


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="synthcxr-base", help="registered corpus (default synthcxr-base)")
    parser.add_argument("--variant", default="anatomy", help="the corpus's design (synthcxr-base: anatomy, lesions)")
    parser.add_argument("--n-train", type=int, default=6000, help="studies in the corpus")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--warmup-steps", type=int, default=200)
    parser.add_argument("--caption-dropout", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint-every", type=int, default=250)
    parser.add_argument("--workdir", type=Path, default=Path(".cxrbench-work/pretrain-base"))
    parser.add_argument("--out", type=Path, required=True, help="folder for unet.safetensors and base.json")
    parser.add_argument("--name", default=None, help="the base's name (default: synthcxr-base-<variant>)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the UNet (pays over thousands of steps)")
    parser.add_argument("--threads", type=int, default=None)
    return parser.parse_args(argv)


def _corpus(args: argparse.Namespace) -> tuple[dict, list, str]:
    params = {"n_train": args.n_train, "n_test": 0, "image_size": args.image_size, "seed": args.seed}
    if args.variant:
        params["variant"] = args.variant
    dataset = get_registry().dataset(args.dataset).factory(**params)
    return params, dataset.split("train"), dataset.fingerprint()


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.compile:
        os.environ[COMPILE_ENV] = "1"
    t0 = time.perf_counter()
    params, train, fingerprint = _corpus(args)
    print(f"corpus {args.dataset} {params}: {len(train)} studies in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    budget = TrainingBudget(steps=args.steps, batch_size=args.batch_size, unet_learning_rate=args.learning_rate,
                            text_encoder_learning_rate=args.learning_rate, caption_dropout=args.caption_dropout,
                            warmup_steps=args.warmup_steps)
    model = DiffusionModel()
    bar = tqdm(total=args.steps, desc="pretrain base", dynamic_ncols=True)
    losses: list[float] = []

    def progress(step: int, logs: dict[str, float]) -> None:
        bar.update(step - bar.n)
        losses.append(logs["loss"])
        bar.set_postfix(loss=f"{logs['loss']:.4f}", refresh=False)

    args.workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    model.fit(train, budget, FitContext(seed=args.seed, workdir=args.workdir, image_size=args.image_size,
                                        progress=progress, checkpoint_every=args.checkpoint_every))
    bar.close()
    fit_seconds = time.perf_counter() - started
    return _write(args, model, params, fingerprint, budget, losses, fit_seconds, len(train))


def _write(args: argparse.Namespace, model: DiffusionModel, params: dict, fingerprint: str, budget: TrainingBudget,
           losses: list[float], fit_seconds: float, n_studies: int) -> int:
    from safetensors.torch import save_file

    args.out.mkdir(parents=True, exist_ok=True)
    weights = args.out / WEIGHTS
    save_file({k: v.detach().contiguous().cpu() for k, v in model.unet.state_dict().items()}, str(weights))
    sha = file_sha256(weights)
    tail = losses[-200:]
    manifest = {
        "name": args.name or f"synthcxr-base-{args.variant}",
        "weights": WEIGHTS,
        "sha256": sha,
        "options": model.config(),
        "image_size": model.image_size,
        "unshuffle_factor": model.factor,
        "cross_attention_dim": model.text.hidden_size,
        "text_encoder": "all-MiniLM-L6-v2, frozen",
        "corpus": {"dataset": args.dataset, "params": params, "n_studies": n_studies, "fingerprint": fingerprint},
        "training": {**budget.to_dict(), "seed": args.seed, "compile": args.compile,
                     "final_loss_mean_last_200": sum(tail) / max(1, len(tail)) if tail else None,
                     "fit_seconds_this_process": round(fit_seconds, 1)},
        "machine": {"cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
                    "processor": platform.processor() or platform.machine(), "torch": torch.__version__},
        "command": "python scripts/pretrain_base.py " + " ".join(sys.argv[1:]),
    }
    (args.out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {weights} ({weights.stat().st_size / 1e6:.1f} MB) and {args.out / MANIFEST}")
    print(f"sha256 {sha}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
