"""Speed of pipeline parts, measured: ``cxrbench bench extraction|training [--json]``.

``extraction`` (``cxrbench.bench.extraction``): batched vs one forward per timestep, and the cost of
capturing cross-attention. ``training`` (``cxrbench.bench.training``): the seconds, GFLOP/s and share of
the machine's matmul peak of a frozen and a learnable training step, a sampling step and an extraction
forward of the default track's model. docs/performance.md has measured figures.
"""

from __future__ import annotations

import argparse
import json
import sys

from cxrbench.bench.extraction import (
    MAX_ABS_DIFF,
    ExtractionSetup,
    build_extraction_setup,
    run_extraction_bench,
)

__all__ = ["ExtractionSetup", "add_arguments", "build_extraction_setup", "cmd_bench", "run_extraction_bench"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``cxrbench bench``."""
    parser.add_argument("what", choices=["extraction", "training"],
                        help="extraction: batched vs sequential timesteps, and the cost of capturing cross-attention; "
                             "training: train, sampling and extraction steps against the machine's matmul peak")
    parser.add_argument("--json", action="store_true", help="print only the JSON figures")
    parser.add_argument("--timesteps", type=int, default=40,
                        help="extraction: timesteps, the last N of 50 DDIM steps (default 40, the seed paper's)")
    parser.add_argument("--images", type=int, default=4, help="extraction: images extracted (default 4)")
    parser.add_argument("--rows-per-forward", type=int, default=None,
                        help="extraction: (image, timestep) rows per batched forward (default: the model's default)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed repetitions after the warm-up (default: 5 extraction, 10 training)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed repetitions first (default: 1, 2)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--compile", action="store_true",
                        help="training: also time the torch.compile path (its compilation is timed apart)")
    parser.add_argument("--device", default="cpu", help="extraction: device")


def cmd_bench(args: argparse.Namespace) -> int:
    if args.what == "training":
        return _bench_training(args)
    figures = run_extraction_bench(images=args.images, timesteps=args.timesteps,
                                   rows_per_forward=args.rows_per_forward, repeats=args.repeats or 5,
                                   warmup=1 if args.warmup is None else args.warmup, device=args.device,
                                   threads=args.threads)
    if not args.json:
        print(f"extraction, {figures['images']} images x {figures['timesteps']} timesteps, "
              f"{figures['threads']} threads on {figures['device']}, torch {figures['torch']}:\n"
              f"  (a) batched    {figures['batched_s']:.3f} s ({figures['forwards_batched']} forwards of "
              f"{figures['rows_per_forward']} rows)\n"
              f"  (b) sequential {figures['sequential_s']:.3f} s ({figures['forwards_sequential']} forwards)\n"
              f"  speedup {figures['speedup']:.2f}x, max |a - b| {figures['max_abs_diff']:.2e}\n"
              f"  (c) forward of {figures['rows_per_forward']} rows: plain {figures['plain_forward_s']:.3f} s, "
              f"capturing attn2 {figures['captured_forward_s']:.3f} s ({figures['capture_overhead']:.3f}x)",
              file=sys.stderr)
    print(json.dumps(figures, indent=None if args.json else 2))
    return 0 if figures["max_abs_diff"] <= MAX_ABS_DIFF else 1


def _bench_training(args: argparse.Namespace) -> int:
    from cxrbench.bench.training import describe, run_training_bench

    figures = run_training_bench(repeats=args.repeats or 10, warmup=2 if args.warmup is None else args.warmup,
                                 threads=args.threads, with_compile=args.compile)
    if not args.json:
        print(describe(figures), file=sys.stderr)
    print(json.dumps(figures, indent=None if args.json else 2))
    return 0
