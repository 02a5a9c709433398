"""``cxrbench bench extraction`` and scripts/gpu_bench.py: what they measure is right (timings are not
tested; docs/performance.md has them)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from cxrbench.bench import build_extraction_setup
from cxrbench.cli import main
from cxrbench.protocol import get_track, last_ddim_timesteps

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_the_default_timesteps_are_the_seed_papers():
    # The last 40 of 50 DDIM steps of stride 20 on a 1000-step schedule: 781, 761, ..., 21, 1.
    assert tuple(get_track("paper").extraction.timesteps) == tuple(range(781, 0, -20))
    assert last_ddim_timesteps(40) == tuple(get_track("paper").extraction.timesteps)
    assert last_ddim_timesteps(4) == (61, 41, 21, 1)
    assert last_ddim_timesteps(60) == tuple(range(945, 0, -16))  # a finer grid than 50 steps


@pytest.mark.slow
def test_batched_and_sequential_extraction_give_the_same_maps():
    setup = build_extraction_setup(images=2, timesteps=6)
    batched = setup.extract(setup.rows_per_forward)  # all 12 rows in one forward
    assert batched.shape == (2, 32, 16, 16)
    for rows in (1, 5):  # one forward per (image, timestep); chunks that split an image's timesteps
        assert (setup.extract(rows) - batched).abs().max() <= 1e-5
    # Each map is an average of probability distributions over the tokens: every pixel sums to 1.
    torch.testing.assert_close(batched.sum(1), torch.ones(2, 16, 16))


@pytest.mark.slow
def test_many_images_in_one_forward_give_the_same_maps():
    # Above 8 images a forward, running sums add rows one by one instead of by a matrix product.
    setup = build_extraction_setup(images=10, timesteps=2)
    assert (setup.extract(None) - setup.extract(1)).abs().max() <= 1e-5


@pytest.mark.slow
def test_bench_command_prints_the_figures_as_json(capsys):
    code = main(["bench", "extraction", "--json", "--images", "1", "--timesteps", "2", "--repeats", "1",
                 "--warmup", "0"])
    figures = json.loads(capsys.readouterr().out)
    assert code == 0
    for key in ("speedup", "max_abs_diff", "capture_overhead", "batched_s", "sequential_s", "plain_forward_s",
                "captured_forward_s", "images", "timesteps", "rows_per_forward", "threads", "torch", "checks"):
        assert key in figures, key
    assert figures["max_abs_diff"] <= 1e-5
    assert (figures["images"], figures["timesteps"], figures["forwards_sequential"]) == (1, 2, 2)


@pytest.mark.slow
def test_gpu_bench_runs_a_tiny_unet_on_the_cpu(capsys):
    spec = importlib.util.spec_from_file_location("gpu_bench", REPO / "scripts" / "gpu_bench.py")
    gpu_bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_bench)
    result = gpu_bench.main(["--tiny", "--precision", "fp32"])
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(result))
    assert result["unet"] == "tiny" and result["device"] == "cpu" and result["train_compiled"] is None
    train = result["train_eager"]
    assert train["img_per_s"] > 0 and train["flops_per_step"] > 0 and 0 < train["fraction_of_peak"] < 1
    extraction = result["extraction"]
    assert extraction["timesteps"] == 4 and extraction["max_abs_diff"] <= 1e-5
    # The full-size configuration is Stable Diffusion 2 base's.
    config = gpu_bench.SD2_BASE_UNET
    assert config["block_out_channels"] == [320, 640, 1280, 1280] and config["attention_head_dim"] == [5, 10, 20, 20]
    assert config["cross_attention_dim"] == 1024 and config["use_linear_projection"] and config["sample_size"] == 64
