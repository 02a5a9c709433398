"""Scale: sharding and gathering (cxrbench.distributed), training checkpoints and resume, and a run with
two processes that must give the metrics of one."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cxrbench.data.schema import Box, Finding, Sample
from cxrbench.diffusion import DiffusionModel
from cxrbench.diffusion.checkpoints import list_checkpoints
from cxrbench.distributed import Processes, _pack, map_sharded, process_device, processes
from cxrbench.model import FitContext, TrainingBudget

REPO = Path(__file__).resolve().parents[1]
SIZE = 16
TINY = {"unshuffle_factor": 2, "block_out_channels": (32, 32), "max_tokens": 16}


@pytest.fixture(autouse=True)
def one_thread():
    """Toy models train fastest on one thread, also on a machine that other work keeps busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_one_process_without_a_launcher():
    assert processes() == Processes(0, 1, 0)
    assert processes().is_main and not processes().distributed
    assert process_device("cuda") == "cuda"


def test_units_are_packed_into_calls_of_at_most_chunk_items_in_order():
    assert _pack([[0, 1], [2], [3, 4, 5], [6]], 3) == [[0, 1, 2], [3, 4, 5], [6]]
    assert _pack([[0, 1, 2, 3]], 2) == [[0, 1, 2, 3]]  # a unit is never split
    calls = []

    def work(positions):
        calls.append(positions)
        return [p * 10 for p in positions]

    assert map_sharded([[0, 1], [2, 3], [4]], work, 4) == [0, 10, 20, 30, 40]
    assert calls == [[0, 1, 2, 3], [4]]


def test_shards_take_every_pth_unit():
    # What process i of P works on: units i, i+P, ... (here P = 3), each packed on its own.
    units = [[i] for i in range(7)]
    assert [_pack(units[r::3], 2) for r in range(3)] == [[[0, 3], [6]], [[1, 4]], [[2, 5]]]


def _sample(index: int) -> Sample:
    side = ("left", "right")[index % 2]
    image = np.full((SIZE, SIZE), 0.1, np.float32)
    image[4:12, (2 if side == "right" else 9):(7 if side == "right" else 14)] = 0.9
    report = f"Small {side} pleural effusion."
    return Sample(f"case-{index}", image, report, "train", (Finding("Pleural Effusion", report, (Box(2, 4, 5, 8),)),))


class _Interrupt(Exception):
    pass


@pytest.mark.slow
def test_a_fit_resumed_from_a_checkpoint_ends_with_the_weights_of_an_uninterrupted_fit(tmp_path):
    train = [_sample(i) for i in range(10)]
    budget = TrainingBudget(steps=7, batch_size=4, unet_learning_rate=2e-3, text_encoder_learning_rate=1e-4)
    options = {**TINY, "train_text_encoder": True}

    whole = DiffusionModel(options)
    whole_losses: list[float] = []
    whole.fit(train, budget, FitContext(0, tmp_path / "a", SIZE, lambda s, logs: whole_losses.append(logs["loss"])))
    assert not (tmp_path / "a" / "checkpoints").exists()  # no checkpoints unless asked for

    def stop_after_five(step, logs):
        if step == 5:
            raise _Interrupt

    context = FitContext(0, tmp_path / "b", SIZE, stop_after_five, checkpoint_every=2)
    with pytest.raises(_Interrupt):
        DiffusionModel(options).fit(train, budget, context)
    assert [step for step, _ in list_checkpoints(context.checkpoint_dir)] == [2, 4]

    steps: list[int] = []
    resumed = DiffusionModel(options)
    resumed.fit(train, budget, FitContext(0, tmp_path / "b", SIZE, lambda s, logs: steps.append(s), checkpoint_every=2))
    assert steps == [5, 6, 7]  # steps 1-4 came from the checkpoint
    assert [step for step, _ in list_checkpoints(context.checkpoint_dir)] == [4, 6]  # the latest two are kept
    for name, value in whole.unet.state_dict().items():
        assert torch.equal(value, resumed.unet.state_dict()[name]), name
    for name, value in whole.text.state_dict().items():
        assert torch.equal(value, resumed.text.state_dict()[name]), name


@pytest.mark.slow
def test_checkpoints_of_another_fit_are_not_resumed_from(tmp_path):
    train = [_sample(i) for i in range(10)]
    budget = TrainingBudget(steps=4, batch_size=4, unet_learning_rate=2e-3, text_encoder_learning_rate=1e-4)
    DiffusionModel(TINY).fit(train, budget, FitContext(0, tmp_path, SIZE, checkpoint_every=2))
    steps: list[int] = []
    other_seed = FitContext(1, tmp_path, SIZE, lambda s, logs: steps.append(s), checkpoint_every=2)
    DiffusionModel(TINY).fit(train, budget, other_seed)
    assert steps == [1, 2, 3, 4]
    # The other fit's checkpoints were replaced by this fit's.
    assert [step for step, _ in list_checkpoints(other_seed.checkpoint_dir)] == [2, 4]


def _run_smoke(out: Path, processes: int) -> subprocess.Popen:
    env = dict(os.environ)
    # The repository's own code and its frozen-encoder plugin, whether or not they are installed.
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "plugins" / "frozen-encoder"),
                                         env.get("PYTHONPATH", "")])
    # One thread per process in both runs: thread count is not what is compared.
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    launcher = [] if processes == 1 else ["-m", "torch.distributed.run", "--standalone",
                                          f"--nproc_per_node={processes}"]
    command = [sys.executable, *launcher, "-m", "cxrbench", "run", "frozen-encoder", "--track", "smoke",
               "--out", str(out / "results"), "--workdir", str(out / "work"), "--quiet"]
    return subprocess.Popen(command, env=env, cwd=out, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_two_processes_give_the_metrics_of_one(tmp_path):
    """The smoke track of frozen-encoder with 1 process and with 2 (torchrun, gloo on CPU).

    Both runs draw the same batches, noise, images and extraction noise (seeds derive from sample ids),
    and DDP averages the gradients of the two half batches, so each update equals the single-process
    one up to float rounding (the order of the sums differs). Adam divides by the root of the squared
    gradients, so rounding-level differences of near-zero gradients grow to about 1e-3 in some weights
    after 30 steps; generated images then differ by about 3e-5 and attention maps slightly more, which
    moves the metrics (measured on 2 CPU cores: localization scores by at most 1e-4, FID 224.880 vs
    224.882 and KID by 2e-5 relative; the learnable encoder's run, not tested here, by at most 5e-4, in
    the Gaussian-mixture IoU). The tolerance below (1e-3 absolute or relative, whichever is larger) is
    far below the bootstrap intervals' widths (about 0.1 for the localization scores).
    """
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    runs = {name: _run_smoke(tmp_path / name, count) for name, count in (("one", 1), ("two", 2))}
    for name, run in runs.items():
        output, _ = run.communicate(timeout=600)
        assert run.returncode == 0, f"{name}:\n{output[-4000:]}"
    stem = "frozen-encoder__smoke__seed0.json"
    one = json.loads((tmp_path / "one" / "results" / stem).read_text())
    two = json.loads((tmp_path / "two" / "results" / stem).read_text())
    assert (one["status"], two["status"]) == ("ok", "ok")
    assert (one["environment"]["world_size"], two["environment"]["world_size"]) == (1, 2)
    assert one["track"] == two["track"] and one["dataset"] == two["dataset"]
    assert set(one["metrics"]) == set(two["metrics"]) and one["metrics"]
    for name, metric in one["metrics"].items():
        other = two["metrics"][name]
        assert metric["n"] == other["n"], name
        for field in ("value", "ci_low", "ci_high"):
            a, b = metric[field], other[field]
            assert (a is None) == (b is None), (name, field)
            if a is not None:
                assert math.isclose(a, b, rel_tol=1e-3, abs_tol=1e-3), (name, field, a, b)
    # Only the main process wrote: one result, its features, its report maps, one per-sample file.
    assert sorted(p.name for p in (tmp_path / "two" / "results").iterdir()) == sorted([
        stem, stem.replace(".json", ".features.npz"), stem.replace(".json", ".maps.npz"),
        stem.replace(".json", ".samples.jsonl")])
