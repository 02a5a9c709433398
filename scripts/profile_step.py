"""Where a default-track training step's time goes: by operator kind and by UNet block, each against what
its FLOPs would cost at the machine's float32 matmul peak.

    python scripts/profile_step.py [--learnable] [--steps 5] [--json FILE]

By operator: ``torch.profiler`` self time of every aten operator over ``--steps`` steps, grouped into
convolutions, matmuls (linear layers), attention (SDPA), normalization, optimizer (fused AdamW and gradient
clipping), embedding (the text encoder's), and the rest (elementwise, copies, reshapes); "dispatch and
Python" is the step's wall time minus all operator time. By block: forward and backward wall time of each
top-level UNet block (module hooks; forward only, as backward interleaves the blocks through the skip
connections), and the text encoder. FLOPs come from ``FlopCounterMode`` (per
operator for the whole step, and per block for its forward). "at peak" = FLOPs / measured peak: what that part would
take if it ran as fast as a large matmul. docs/performance.md holds the tables this prints.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from cxrbench.bench.common import _register_cpu_attention_flops, machine, matmul_peak_gflops
from cxrbench.diffusion.model import DiffusionModel
from cxrbench.diffusion.timing import disk_samples
from cxrbench.diffusion.training import step_settings, training_step
from cxrbench.protocol import get_track

KINDS = (
    ("convolution", ("conv",)),
    ("matmul (linear layers)", ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::linear")),
    ("attention (SDPA)", ("scaled_dot_product",)),
    ("normalization", ("group_norm", "layer_norm")),
    ("optimizer and clipping", ("adam", "norm", "foreach", "clamp")),
    ("embedding", ("embedding",)),
)


def _kind(op: str) -> str:
    for kind, needles in KINDS:
        if any(n in op for n in needles):
            return kind
    return "elementwise, copies, reshapes"


def _step(learnable: bool) -> tuple[Any, DiffusionModel]:
    track = get_track("default")
    torch.manual_seed(0)
    model = DiffusionModel({"train_text_encoder": learnable})
    model.build(track.image_size, "cpu")
    g = torch.Generator().manual_seed(0)
    prompts = [s.report for s in disk_samples(track.budget.batch_size, track.image_size)]
    x0 = torch.rand((len(prompts), *model.space.sample_shape(track.image_size)), generator=g) * 2 - 1
    noise, t = torch.randn(x0.shape, generator=g), torch.randint(0, 1000, (len(prompts),), generator=g)
    settings = step_settings(model.unet, model.text, track.budget, track.budget.text_encoder_learning_rate, 1.0)
    model.unet.train()

    def step(forward_only: bool = False) -> Any:
        if forward_only:
            hidden, mask = model.text.encode(prompts)
            return model.unet(x0, t, encoder_hidden_states=hidden, encoder_attention_mask=mask)
        return training_step(model.unet, model.text, model.noise_scheduler, x0, noise, t, prompts, settings)

    return step, model


def _block_timer(model: DiffusionModel) -> tuple[dict[str, float], dict[str, torch.nn.Module]]:
    """Forward seconds per top-level UNet block (and the text encoder), via module hooks; and the blocks."""
    seconds: dict[str, float] = defaultdict(float)
    blocks: dict[str, torch.nn.Module] = {}
    for name, child in model.unet.named_children():
        if isinstance(child, torch.nn.ModuleList):
            blocks.update({f"{name}.{i}": block for i, block in enumerate(child)})
        elif any(p.requires_grad for p in child.parameters()):
            blocks[name] = child
    blocks["text encoder"] = model.text.encoder
    for name, module in blocks.items():
        def pre(mod: Any, *_: Any, key: str = name) -> None:
            mod._t = time.perf_counter()

        def post(mod: Any, *_: Any, key: str = name) -> None:
            seconds[key] += time.perf_counter() - mod._t

        module.register_forward_pre_hook(pre)
        module.register_forward_hook(post)
    return seconds, blocks


def _forward_flops(model: DiffusionModel, blocks: dict[str, torch.nn.Module], step: Any) -> dict[str, int]:
    """Forward FLOPs of each block in one step (module hooks around a FlopCounterMode per call)."""
    flops: dict[str, int] = defaultdict(int)
    handles = []
    for name, module in blocks.items():
        def pre(mod: Any, *_: Any) -> None:
            mod._counter = FlopCounterMode(display=False)
            mod._counter.__enter__()

        def post(mod: Any, *_: Any, key: str = name) -> None:
            mod._counter.__exit__(None, None, None)
            flops[key] += mod._counter.get_total_flops()

        handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    with torch.no_grad():
        step(forward_only=True)
    for handle in handles:
        handle.remove()
    return flops


def profile_step(learnable: bool, steps: int) -> dict[str, Any]:
    step, model = _step(learnable)
    for _ in range(3):
        step()
    peak = matmul_peak_gflops(torch.device("cpu"))
    _register_cpu_attention_flops()
    with FlopCounterMode(display=False) as counter:
        step()
    op_flops = {str(k): v for k, v in counter.get_flop_counts()["Global"].items()}
    module_flops = {k: sum(v.values()) for k, v in counter.get_flop_counts().items()}
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    wall = (time.perf_counter() - start) / steps
    by_kind: dict[str, float] = defaultdict(float)
    flops_by_kind: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        by_kind[_kind(event.key)] += event.self_cpu_time_total / 1e6 / steps
    for op, flops in op_flops.items():
        flops_by_kind[_kind("aten::" + op.split(".")[-1])] += flops
    seconds, blocks = _block_timer(model)
    for _ in range(steps):
        step()
    block_flops = _forward_flops(model, blocks, step)
    kinds = [{"kind": k, "s": round(v, 4), "share": round(v / wall, 3),
              "gflop": round(flops_by_kind.get(k, 0) / 1e9, 2),
              "at_peak_s": round(flops_by_kind.get(k, 0) / 1e9 / peak, 4)} for k, v in by_kind.items()]
    kinds.append({"kind": "dispatch and Python (wall - operators)", "s": round(wall - sum(by_kind.values()), 4),
                  "share": round(1 - sum(by_kind.values()) / wall, 3), "gflop": 0.0, "at_peak_s": 0.0})
    rows = [{"block": key, "forward_s": round(seconds[key] / steps, 4), "forward_gflop": round(f / 1e9, 2),
             "at_peak_s": round(f / 1e9 / peak, 4)} for key, f in block_flops.items()]
    return {"learnable": learnable, "step_s": round(wall, 4), "peak_gflops_per_s": round(peak, 1),
            "gflop": round(counter.get_total_flops() / 1e9, 2), "by_kind": sorted(kinds, key=lambda r: -r["s"]),
            "by_block": rows, "machine": machine()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--learnable", action="store_true", help="the learnable-encoder step")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    fig = profile_step(args.learnable, args.steps)
    print(f"{'learnable' if fig['learnable'] else 'frozen'} step {fig['step_s']:.3f} s under the profiler, "
          f"{fig['gflop']} GFLOP, peak {fig['peak_gflops_per_s']} GFLOP/s")
    print("| operator kind | s / step | share | GFLOP | at peak s |\n|---|---|---|---|---|")
    for r in fig["by_kind"]:
        print(f"| {r['kind']} | {r['s']:.3f} | {100 * r['share']:.0f}% | {r['gflop']} | {r['at_peak_s']:.3f} |")
    print("| block (forward only) | s / step | GFLOP | at peak s |\n|---|---|---|---|")
    for r in fig["by_block"]:
        print(f"| {r['block']} | {r['forward_s']:.3f} | {r['forward_gflop']} | {r['at_peak_s']:.3f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(fig, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
