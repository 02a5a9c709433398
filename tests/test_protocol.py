from __future__ import annotations

import copy
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cxrbench.errors import ProtocolError
from cxrbench.protocol import TRACKS, derive_seed, get_track


def test_track_hash_is_stable_and_changes_with_the_definition():
    smoke = get_track("smoke")
    assert copy.deepcopy(smoke).hash == smoke.hash  # a hash of the definition, not of the object
    changed = dataclasses.replace(smoke, budget=dataclasses.replace(smoke.budget, steps=smoke.budget.steps + 1))
    assert changed.hash != smoke.hash
    assert len({t.hash for t in TRACKS.values()}) == len(TRACKS)


def test_unknown_track_error_names_the_choices():
    with pytest.raises(ProtocolError, match=r"must be one of \['default', 'paper', 'smoke'\], but got 'smok'"):
        get_track("smok")


def test_track_hash_and_derived_seeds_are_the_same_in_another_interpreter():
    # Python's own hash() of a str changes with PYTHONHASHSEED; the track hash and seeds must not.
    code = "from cxrbench.protocol import TRACKS, derive_seed; print(TRACKS['smoke'].hash, derive_seed(0, 'a', 1))"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1], env=env,
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == [get_track("smoke").hash, str(derive_seed(0, "a", 1))]


def test_derived_seeds_depend_only_on_global_seed_and_keys():
    assert derive_seed(0, "a", 1) != derive_seed(1, "a", 1)
    assert derive_seed(0, "a", 1) != derive_seed(0, 1, "a")
    assert derive_seed(0, "a", 1) != derive_seed(0, "a", 2)
    assert 0 <= derive_seed(123, "x") < 2**31


def test_paper_track_uses_the_last_40_of_50_ddim_steps():
    steps = get_track("paper").extraction.timesteps
    assert len(steps) == 40 and steps[0] == 781 and steps[-1] == 1
    assert all(a - b == 20 for a, b in zip(steps, steps[1:]))


def test_a_track_reads_its_data_root_from_the_variable_it_names(monkeypatch, tmp_path):
    paper, smoke = get_track("paper"), get_track("smoke")
    monkeypatch.delenv(paper.data_root_env, raising=False)
    assert paper.dataset_arguments() == paper.dataset.params
    monkeypatch.setenv(paper.data_root_env, str(tmp_path))
    assert paper.dataset_arguments() == {**paper.dataset.params, "root": str(tmp_path)}
    assert "root" not in paper.dataset.params  # the definition (and hash) stays this machine-independent
    renamed = dataclasses.replace(paper, data_root_env="CXRBENCH_OTHER_MIMIC_COPY")
    monkeypatch.setenv("CXRBENCH_OTHER_MIMIC_COPY", str(tmp_path / "copy"))
    assert renamed.dataset_arguments()["root"] == str(tmp_path / "copy")
    assert smoke.data_root_env is None and smoke.dataset_arguments() == smoke.dataset.params


def test_a_run_s_data_comes_from_the_root_the_track_s_variable_names(monkeypatch, tmp_path):
    """load_track_data builds the dataset with dataset_arguments(): the folder of data_root_env as root."""
    import types

    from cxrbench.data.synthcxr import SynthCXR
    from cxrbench.hookspecs import hookimpl
    from cxrbench.plan import load_track_data
    from cxrbench.registry import build_registry

    seen: list[dict] = []

    def factory(**params):
        seen.append(params)
        return SynthCXR(**{k: v for k, v in params.items() if k != "root"})

    @hookimpl
    def cxrbench_register_datasets(register):
        register("root-recording", factory)

    registry = build_registry(extra_plugins=(("root-recording", types.SimpleNamespace(
        cxrbench_register_datasets=cxrbench_register_datasets, __name__="tests.root_recording")),))
    smoke = get_track("smoke")
    track = dataclasses.replace(smoke, dataset=dataclasses.replace(smoke.dataset, name="root-recording"),
                                data_root_env="CXRBENCH_TEST_DATA_ROOT")
    monkeypatch.setenv("CXRBENCH_TEST_DATA_ROOT", str(tmp_path))
    data = load_track_data(track, registry)
    assert seen == [{**smoke.dataset.params, "root": str(tmp_path)}]
    assert len(data.test) == smoke.dataset.params["n_test"]
