"""The training path's speed work keeps its math: seeded loss curves, the compiled path, and what
``cxrbench bench training`` reports (its ratios, not its timings; docs/performance.md has those)."""

from __future__ import annotations

import json
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from cxrbench.bench.common import count_flops
from cxrbench.diffusion.acceleration import COMPILE_ENV
from cxrbench.diffusion.model import DiffusionModel
from cxrbench.diffusion.timing import disk_samples
from cxrbench.model import FitContext
from cxrbench.protocol import get_track

FIXTURES = Path(__file__).parent / "fixtures"


def _loss_curve(options: dict, steps: int, samples: int = 48) -> list[float]:
    losses: list[float] = []
    model = DiffusionModel(options)
    with tempfile.TemporaryDirectory() as workdir:
        model.fit(disk_samples(samples, 32), replace(get_track("smoke").budget, steps=steps),
                  FitContext(0, Path(workdir), 32, lambda step, logs: losses.append(logs["loss"])))
    return losses


@pytest.mark.slow
@pytest.mark.parametrize("encoder", ["frozen", "learnable"])
def test_a_seeded_fit_has_the_loss_curve_it_had_before_the_speed_work(encoder):
    # The fixture holds the losses of this same fit, measured with the training code as it was before the
    # training step was restructured for the speed work (2 threads; 1 thread differs by about 1e-7).
    expected = json.loads((FIXTURES / "loss_curve_before_acceleration.json").read_text())[encoder]
    losses = _loss_curve({"train_text_encoder": encoder == "learnable"}, steps=len(expected))
    assert losses == pytest.approx(expected, rel=1e-4)


@pytest.mark.slow
def test_the_compiled_path_gives_the_loss_curve_of_the_eager_one(monkeypatch):
    # A one-level UNet keeps the compilation short (about a minute on 2 cores).
    options = {"block_out_channels": (8,), "norm_num_groups": 8}
    monkeypatch.setenv(COMPILE_ENV, "0")
    eager = _loss_curve(options, steps=4, samples=32)
    monkeypatch.setenv(COMPILE_ENV, "1")
    compiled = _loss_curve(options, steps=4, samples=32)
    assert compiled == pytest.approx(eager, rel=1e-4)


def test_cpu_attention_is_counted_like_a_pair_of_matmuls():
    batch, heads, length, keys, dim = 2, 3, 16, 8, 4
    q = torch.randn(batch, heads, length, dim, requires_grad=True)
    k = torch.randn(batch, heads, keys, dim, requires_grad=True)
    v = torch.randn(batch, heads, keys, dim, requires_grad=True)
    forward = count_flops(lambda: F.scaled_dot_product_attention(q, k, v))
    # Q K^T and P V: two matmuls of 2 * length * keys * dim FLOPs per (batch, head).
    assert forward == 2 * (2 * batch * heads * length * keys * dim)
    both = count_flops(lambda: F.scaled_dot_product_attention(q, k, v).sum().backward())
    assert both > 2 * forward  # the backward recomputes and differentiates both matmuls


@pytest.mark.slow
def test_bench_training_reports_consistent_ratios():
    from cxrbench.bench.training import run_training_bench

    figures = run_training_bench(repeats=1, warmup=0, threads=1)
    peak = figures["peak_gflops_per_s"]
    for part in ("frozen", "learnable", "sampling", "extraction"):
        f = figures[part]
        assert f["gflop"] > 0
        assert f["gflops_per_s"] == pytest.approx(f["gflop"] / f["step_s"], rel=0.02)
        assert f["fraction_of_peak"] == pytest.approx(f["gflops_per_s"] / peak, rel=0.02)
        assert f["speedup_vs_eager"] == pytest.approx(f["variants_s"]["eager"] / f["step_s"], rel=0.02)
    # The learnable step adds the encoder's forward and backward to the same UNet step.
    assert figures["learnable"]["gflop"] > 1.5 * figures["frozen"]["gflop"]
    assert figures["train_step_s"] == figures["frozen"]["step_s"]
    assert set(figures) >= {"train_step_s", "train_gflops_per_s", "peak_gflops_per_s", "fraction_of_peak",
                            "speedup_vs_eager"}
