"""Time a DiffusionModel at a track's settings: seconds per training step, generated and localized image.

Run ``python -m cxrbench.diffusion.timing --track default --steps 20`` (``--train-text-encoder`` for the
learnable encoder). Data are synthetic disks with radiology-length reports, so the figures do not depend
on any dataset; they size a track's budget on the machine that runs it. The estimate of a whole run adds
the track's full step budget, its generation plan and one localization per test image.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from cxrbench.data.schema import Sample
from cxrbench.diffusion.model import DiffusionModel
from cxrbench.model import FitContext, LocalizationQuery
from cxrbench.protocol import get_track

_FINDINGS = (
    "{size} {side} pleural effusion.",
    "{size} {side} {zone} lobe consolidation, consistent with pneumonia.",
    "Patchy airspace opacity in the {side} {zone} lobe.",
    "{size} {side} pneumothorax.",
)
_CONTEXT = ("No pneumothorax.", "Heart size is normal.", "No acute osseous abnormality.", "")


def _report(index: int, side: str) -> str:
    """Radiology-like reports of 10 to 25 tokens; consecutive indices give distinct reports (as real data)."""
    size = ("Small", "Moderate", "Large")[index % 3]
    zone = ("upper", "middle", "lower")[(index // 3) % 3]
    finding = _FINDINGS[(index // 9) % len(_FINDINGS)].format(size=size, side=side, zone=zone)
    return f"{finding} {_CONTEXT[(index // 36) % len(_CONTEXT)]}".strip()


def disk_samples(count: int, size: int) -> list[Sample]:
    """Dark fields with a bright disk on the side the report names."""
    rows, cols = np.mgrid[:size, :size] + 0.5
    out = []
    for i in range(count):
        side = ("left", "right")[i % 2]
        cx = size * (0.7 if side == "left" else 0.3)
        image = np.full((size, size), 0.1, np.float32)
        image[(rows - size / 2) ** 2 + (cols - cx) ** 2 < (size / 6) ** 2] = 0.9
        out.append(Sample(f"t{i}", image, _report(i // 2, side), "train"))
    return out


def time_model(
    track_name: str, options: dict[str, Any], steps: int, images: int, warmup: int = 2
) -> dict[str, Any]:
    """Measured seconds: per training step (median after ``warmup``), per generated and localized image."""
    track = get_track(track_name)
    size = track.image_size
    train = disk_samples(max(256, track.budget.batch_size * 2), size)
    stamps: list[float] = []
    model = DiffusionModel(options)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as workdir:
        model.fit(train, replace(track.budget, steps=warmup + steps),
                  FitContext(0, Path(workdir), size, lambda step, logs: stamps.append(time.perf_counter())))
    step_times = np.diff(stamps)[warmup - 1:] if warmup else np.diff([start, *stamps])
    setup = stamps[0] - start - float(np.median(step_times))

    prompts = [s.report for s in train[:images]]
    t0 = time.perf_counter()
    model.generate(prompts, list(range(len(prompts))), size, track.sampler)
    generate_per_image = (time.perf_counter() - t0) / len(prompts)

    queries = [LocalizationQuery(s.id, s.report, s.report, "Pleural Effusion", ("effusion", "opacity"))
               for s in train[:images]]
    t0 = time.perf_counter()
    model.localize(np.stack([s.image for s in train[:images]]), queries, track.extraction)
    localize_per_image = (time.perf_counter() - t0) / len(queries)

    step = float(statistics.median(step_times))
    n_generate = track.prompts_for_generation * track.samples_per_prompt
    n_localize = int(track.dataset.params.get("n_test", 0))
    estimate = (setup + track.budget.steps * step + n_generate * generate_per_image
                + n_localize * localize_per_image)
    return {
        "track": track_name,
        "options": model.config(),
        "image_size": size,
        "batch_size": track.budget.batch_size,
        "train_step_s_median": round(step, 4),
        "train_step_s_min": round(float(np.min(step_times)), 4),
        "setup_s": round(setup, 2),
        "generate_s_per_image": round(generate_per_image, 4),
        "localize_s_per_image": round(localize_per_image, 4),
        "sampler_steps": track.sampler.steps,
        "extraction_timesteps": len(track.extraction.timesteps),
        "whole_run_estimate_s": round(estimate, 1),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--track", default="default")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps (after 2 warm-up steps)")
    parser.add_argument("--images", type=int, default=32, help="images generated and localized")
    parser.add_argument("--train-text-encoder", action="store_true")
    args = parser.parse_args(argv)
    figures = time_model(args.track, {"train_text_encoder": args.train_text_encoder}, args.steps, args.images)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
