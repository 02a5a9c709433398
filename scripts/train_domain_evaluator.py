"""Train the domain evaluator (cxrbench/metrics/evaluator.py) on SynthCXR and write its committed asset.

    python scripts/train_domain_evaluator.py            # a few minutes on 2 CPU cores
    python scripts/train_domain_evaluator.py --evaluate-only

Training data use SynthCXR seeds no track uses (1000: 64 px studies; 1001: 32 px studies, upsampled
to 64 px with the evaluator's own resize, so the network also reads the smoke track's 32 px images).
Writes ``cxrbench/assets/domain_evaluator.safetensors`` (weights; architecture in its metadata) and
``cxrbench/assets/domain_evaluator.json`` (architecture, training configuration, per-class test AUROC
on the seed-0 SynthCXR test split that the default track scores against, at 64 and 32 px, and on a
larger held-out sample).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cxrbench.data.schema import ALL_LABELS  # noqa: E402
from cxrbench.data.synthcxr import SynthCXR  # noqa: E402
from cxrbench.metrics.localization import binary_auroc  # noqa: E402
from cxrbench.metrics.evaluator import (  # noqa: E402
    DEFAULT_WEIGHTS,
    INPUT_MEAN,
    INPUT_STD,
    INPUT_SIZE,
    DomainCNN,
    DomainEvaluator,
    resize_to_input,
)

CONFIG = {
    "train_sets": [
        {"n_train": 6000, "image_size": 64, "seed": 1000},
        {"n_train": 2000, "image_size": 32, "seed": 1001},
    ],
    "channels": [16, 32, 64, 128],
    "epochs": 10,
    "batch_size": 128,
    "learning_rate": 4e-3,
    "weight_decay": 1e-4,
    "schedule": "one-cycle (cosine), 20% warm-up",
    "loss": "binary cross-entropy over ALL_LABELS",
    "augmentation": {
        "shift_px": 3, "contrast": [0.85, 1.15], "brightness": [-0.06, 0.06], "gamma": [0.8, 1.25],
        "noise_sigma": [0.0, 0.03], "blur_probability": 0.3,
    },
    "torch_seed": 1000,
}
EVALUATIONS = {
    "seed0_test_64px": {"n_train": 0, "n_test": 200, "image_size": 64, "seed": 0},
    "seed0_test_32px": {"n_train": 0, "n_test": 200, "image_size": 32, "seed": 0},
    "heldout_seed2000_64px": {"n_train": 0, "n_test": 1000, "image_size": 64, "seed": 2000},
}


def _arrays(samples: list) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.from_numpy(np.stack([s.image for s in samples]))[:, None]
    labels = torch.from_numpy(np.stack([s.label_vector() for s in samples]))
    return resize_to_input(images), labels


def _augment(x: torch.Tensor, gen: torch.Generator, cfg: dict) -> torch.Tensor:
    """Shift, contrast, brightness, gamma, blur and noise: how generated films differ from rendered ones."""
    n = x.shape[0]
    shift = cfg["shift_px"]
    padded = nn.functional.pad(x, (shift,) * 4, mode="replicate")
    dx, dy = torch.randint(0, 2 * shift + 1, (2, n), generator=gen)
    x = torch.stack([padded[i, :, dy[i]:dy[i] + INPUT_SIZE, dx[i]:dx[i] + INPUT_SIZE] for i in range(n)])

    def uniform(bounds: list[float]) -> torch.Tensor:
        return bounds[0] + (bounds[1] - bounds[0]) * torch.rand(n, 1, 1, 1, generator=gen)

    x = ((x - 0.5) * uniform(cfg["contrast"]) + 0.5 + uniform(cfg["brightness"])).clamp(0.0, 1.0)
    x = x ** uniform(cfg["gamma"])
    blur = torch.rand(n, 1, 1, 1, generator=gen) < cfg["blur_probability"]
    smoothed = nn.functional.avg_pool2d(nn.functional.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    x = torch.where(blur, smoothed, x)
    x = x + uniform(cfg["noise_sigma"]) * torch.randn(x.shape, generator=gen)
    return x.clamp(0.0, 1.0)


def train(config: dict) -> tuple[DomainCNN, dict]:
    torch.manual_seed(config["torch_seed"])
    gen = torch.Generator().manual_seed(config["torch_seed"])
    started = time.time()
    parts = [_arrays(SynthCXR(s["n_train"], 0, s["image_size"], s["seed"]).split("train"))
             for s in config["train_sets"]]
    images = torch.cat([p[0] for p in parts])
    labels = torch.cat([p[1] for p in parts])
    data_seconds = time.time() - started
    model = DomainCNN(tuple(config["channels"]))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config["learning_rate"],
                                  weight_decay=config["weight_decay"])
    steps_per_epoch = len(images) // config["batch_size"]
    total_steps = config["epochs"] * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config["learning_rate"],
                                                    total_steps=total_steps, pct_start=0.2)
    model.train()
    for epoch in range(config["epochs"]):
        order = torch.randperm(len(images), generator=gen)
        total = 0.0
        for step in range(steps_per_epoch):
            idx = order[step * config["batch_size"]:(step + 1) * config["batch_size"]]
            x = (_augment(images[idx], gen, config["augmentation"]) - INPUT_MEAN) / INPUT_STD
            loss = nn.functional.binary_cross_entropy_with_logits(model(x), labels[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += loss.item()
        print(f"epoch {epoch + 1}/{config['epochs']}: loss {total / steps_per_epoch:.4f} "
              f"({time.time() - started:.0f} s)", flush=True)
    model.eval()
    return model, {"n_images": len(images), "data_seconds": round(data_seconds, 1),
                   "train_seconds": round(time.time() - started - data_seconds, 1)}


def evaluate(evaluator: DomainEvaluator) -> dict:
    """Per-label AUROC (one label vs the rest) of the evaluator's probabilities on each evaluation set."""
    results = {}
    for name, params in EVALUATIONS.items():
        dataset = SynthCXR(**params)
        samples = dataset.split("test")
        truth = np.stack([s.label_vector() for s in samples])
        proba = evaluator.predict_proba(np.stack([s.image for s in samples]))
        per_label = {label: round(float(binary_auroc(proba[:, j], truth[:, j] > 0)), 4)
                     for j, label in enumerate(ALL_LABELS)}
        findings = [per_label[label] for label in ALL_LABELS[:-1]]
        results[name] = {"dataset": {"name": "synthcxr", "version": SynthCXR.version, **params,
                                     "split": "test", "fingerprint": dataset.fingerprint()},
                         "auroc": per_label, "auroc_min_finding": min(findings),
                         "auroc_macro_findings": round(float(np.mean(findings)), 4)}
        print(f"{name}: " + ", ".join(f"{k} {v:.3f}" for k, v in per_label.items()), flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_WEIGHTS, help="weights file to write")
    parser.add_argument("--evaluate-only", action="store_true", help="re-measure the existing weights")
    args = parser.parse_args(argv)
    out: Path = args.out
    description_path = out.with_suffix(".json")
    if args.evaluate_only:
        description = json.loads(description_path.read_text())
    else:
        from safetensors.torch import save_file

        model, timing = train(CONFIG)
        out.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(out), metadata={"channels": json.dumps(CONFIG["channels"]),
                                             "labels": json.dumps(list(ALL_LABELS))})
        description = {
            "name": "domain",
            "architecture": {
                "class": "cxrbench.metrics.evaluator.DomainCNN", "channels": CONFIG["channels"],
                "input_size": INPUT_SIZE, "input_normalization": {"mean": INPUT_MEAN, "std": INPUT_STD},
                "resize_method": DomainEvaluator.resize_method, "feature_dim": CONFIG["channels"][-1],
                "features": "global average pool of the last convolution block (after ReLU)",
                "outputs": list(ALL_LABELS), "output_activation": "sigmoid",
                "parameters": sum(p.numel() for p in model.parameters()),
            },
            "training": {**CONFIG, **timing, "device": "cpu", "torch": torch.__version__,
                         "python": platform.python_version(), "threads": torch.get_num_threads()},
        }
    evaluator = DomainEvaluator.load(out)
    description["weights_sha256"] = evaluator.sha256
    description["evaluation"] = evaluate(evaluator)
    description_path.write_text(json.dumps(description, indent=2) + "\n")
    print(f"wrote {out} ({out.stat().st_size} bytes, sha256 {evaluator.sha256[:16]}) and {description_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
