"""What a run checks before anything trains, and what it keeps when writing fails afterwards: folders that
cannot be written, image files that do not open, results another track version or other options made,
temporary files of an interrupted write; no raw traceback from the command line."""

from __future__ import annotations

import dataclasses
import errno
import json

import pytest

from adapter_fixtures import make_chexpert
from cxrbench.box_prior import BoxPriorModel
from cxrbench.cli import main
from cxrbench.errors import DataError, OutputError
from cxrbench.protocol import DatasetSpec, get_track
from cxrbench.results import load_result
from cxrbench.runner import run_benchmark
from cxrbench.testing import DummyModel, registry_with

SMOKE = get_track("smoke")


class NeverFitModel(DummyModel):
    model_id = "never-fit"

    def fit(self, train, budget, context):
        raise AssertionError("fit was called: the checks before training let a doomed run start")


@pytest.fixture
def registry():
    return registry_with(DummyModel, NeverFitModel)


def below_a_file(tmp_path):
    """A folder path whose parent is a regular file: it can be neither created nor written (as root too)."""
    (tmp_path / "plain-file").write_text("not a folder")
    return tmp_path / "plain-file" / "results"


def test_cli_run_with_an_unwritable_out_stops_before_training_with_one_line(tmp_path, monkeypatch, capsys):
    def no_fit(self, train, budget, context):
        raise AssertionError("fit was called before the output folder was checked")

    monkeypatch.setattr(BoxPriorModel, "fit", no_fit)
    out = below_a_file(tmp_path)
    code = main(["run", "box-prior", "--track", "smoke", "--out", str(out), "--workdir", str(tmp_path / "w"),
                 "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().count("\n") == 0 and str(out) in err and "Traceback" not in err
    assert "--out" in err and "nothing was run" in err


def test_unwritable_workdir_is_refused_before_training(tmp_path, registry):
    work = below_a_file(tmp_path)
    with pytest.raises(OutputError, match=rf"--workdir\) {work} cannot be written"):
        run_benchmark(["never-fit"], SMOKE, [0], tmp_path / "r", work, registry=registry, show_progress=False)


def test_read_only_out_folder_is_refused_before_training(tmp_path, registry, monkeypatch):
    """A read-only filesystem (EROFS) where the probe file is created: simulated at the one call that
    writes it, since the tests run as root, whom file modes do not stop."""
    import tempfile

    real_mkstemp = tempfile.mkstemp
    read_only = tmp_path / "mounted-read-only"

    def mkstemp(*args, **kwargs):
        if str(kwargs.get("dir", "")).startswith(str(read_only)):
            raise OSError(errno.EROFS, "Read-only file system", str(kwargs["dir"]))
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    with pytest.raises(OutputError, match=rf"--out\) {read_only} cannot be written \(Read-only file system\)"):
        run_benchmark(["never-fit"], SMOKE, [0], read_only, tmp_path / "w", registry=registry,
                      show_progress=False)


def test_read_only_mount_as_out_is_refused_before_training(tmp_path, registry):
    """The same with a real read-only filesystem, where this machine lets the tests mount one."""
    import subprocess

    read_only = tmp_path / "ro"
    read_only.mkdir()
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro", "none", str(read_only)], capture_output=True)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {mount.stderr.decode().strip()}")
    try:
        with pytest.raises(OutputError, match=rf"{read_only} cannot be written \(Read-only file system\)"):
            run_benchmark(["never-fit"], SMOKE, [0], read_only, tmp_path / "w", registry=registry,
                          show_progress=False)
    finally:
        subprocess.run(["umount", str(read_only)], check=True)


def chexpert_track(root):
    return dataclasses.replace(SMOKE, dataset=DatasetSpec("chexpert", {"root": str(root), "image_size": 16}),
                               image_size=16, prompts_for_generation=1, samples_per_prompt=1)


def test_a_corrupt_test_image_stops_the_run_before_training(tmp_path, registry):
    root = make_chexpert(tmp_path / "data")
    bad = tmp_path / "data" / "CheXpert-v1.0-small/valid/patient64541/study1/view1_frontal.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=rf"{bad}: cannot read image .*valid.csv, line 2"):
        run_benchmark(["never-fit"], chexpert_track(root), [0], tmp_path / "r", tmp_path / "w", registry=registry,
                      show_progress=False)
    assert not list((tmp_path / "r").glob("*.json"))


def test_the_dataset_left_out_counts_go_into_the_result(tmp_path, registry, capsys):
    root = make_chexpert(tmp_path / "data")
    [outcome] = run_benchmark(["dummy"], chexpert_track(root), [0], tmp_path / "r", tmp_path / "w",
                              registry=registry, show_progress=False)
    left_out = load_result(outcome.result_path)["dataset"]["left_out"]
    # The fixture's train.csv has one lateral view and one frontal image with no usable label.
    assert left_out == {"lateral view": 1,
                        "no positive label among the eight classes and No Finding not 1.0": 1}
    assert "dataset chexpert left out: 1 lateral view; 1 no positive label" in capsys.readouterr().err


@pytest.mark.slow
def test_a_result_that_cannot_be_written_is_a_failed_run_and_the_others_go_on(tmp_path, registry, monkeypatch):
    import cxrbench.runner as runner

    real_write = runner.atomic_write_json
    target = tmp_path / "r" / "dummy__smoke__seed0.json"

    def write(path, data):
        if path == target:
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        real_write(path, data)

    monkeypatch.setattr(runner, "atomic_write_json", write)
    first, second = run_benchmark(["dummy"], SMOKE, [0, 1], tmp_path / "r", tmp_path / "w", registry=registry,
                                  show_progress=False)
    assert first.status == "failed" and str(target) in first.error and "Read-only file system" in first.error
    kept = load_result(tmp_path / "w" / "dummy__smoke__seed0" / "result.json")
    assert kept["status"] == "failed" and kept["error"]["stage"] == "write"
    assert kept["metrics"]["loc_word_auc_roc"]["value"] is not None  # what was computed is kept
    assert second.status == "ok" and second.result_path.exists()


@pytest.mark.slow
def test_a_per_sample_file_that_cannot_be_written_fails_the_run_at_the_write_stage(tmp_path, registry, monkeypatch):
    import cxrbench.artifacts as artifacts

    def refuse(path, text):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(artifacts, "atomic_write_text", refuse)
    [outcome] = run_benchmark(["dummy"], SMOKE, [0], tmp_path / "r", tmp_path / "w", registry=registry,
                              show_progress=False)
    record = load_result(outcome.result_path)
    assert outcome.status == "failed" and record["error"]["stage"] == "write", record["error"]


@pytest.mark.slow
def test_a_result_of_another_track_version_or_other_options_is_not_overwritten_silently(tmp_path, registry):
    args = (["dummy"], SMOKE, [0], tmp_path / "r", tmp_path / "w")
    [first] = run_benchmark(*args, registry=registry, show_progress=False)
    record = json.loads(first.result_path.read_text())
    record["track"].update(version="2", hash="0123456789abcdef")
    first.result_path.write_text(json.dumps(record))
    before = first.result_path.read_text()
    with pytest.raises(OutputError, match=rf"{first.result_path}: made under track 'smoke' version 2 .*"
                                          rf"this run is version {SMOKE.version}"):
        run_benchmark(*args, registry=registry, show_progress=False)
    assert first.result_path.read_text() == before
    [again] = run_benchmark(*args, registry=registry, show_progress=False, overwrite=True)
    assert again.status == "ok" and load_result(again.result_path)["track"]["hash"] == SMOKE.hash
    with pytest.raises(OutputError, match=r"made with options \{\}, this run has \{'noise': 0.2\}"):
        run_benchmark(*args, options={"dummy": {"noise": 0.2}}, registry=registry, show_progress=False)


def test_cli_refuses_an_overwrite_in_one_message_and_overwrites_when_asked(tmp_path, capsys):
    out = tmp_path / "r"
    out.mkdir()
    stale = out / "box-prior__smoke__seed0.json"
    stale.write_text(json.dumps({"track": {"name": "smoke", "version": "1", "hash": "ffff"}}))
    argv = ["run", "box-prior", "--track", "smoke", "--out", str(out), "--workdir", str(tmp_path / "w"), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{stale}: made under track 'smoke' version 1" in err and "--overwrite" in err
    assert main([*argv, "--overwrite"]) == 0
    assert load_result(stale)["track"]["hash"] == SMOKE.hash


@pytest.mark.slow
def test_temporary_files_of_an_interrupted_write_are_removed_by_the_next_run(tmp_path, registry, capsys):
    out, work = tmp_path / "r", tmp_path / "w"
    out.mkdir()
    leftovers = [out / ".dummy__smoke__seed0.json.k2j4h1x0.tmp", out / ".dummy__smoke__seed0.samples.jsonl.a1.tmp",
                 work / "dummy__smoke__seed0" / ".stages.json.zz9.tmp"]
    other = out / ".other-model__smoke__seed0.json.q1.tmp"  # not this command's result: left alone
    for path in [*leftovers, other]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{")
    run_benchmark(["dummy"], SMOKE, [0], out, work, registry=registry, show_progress=False)
    assert [p for p in leftovers if p.exists()] == [] and other.exists()
    assert "removed 3 temporary file(s)" in capsys.readouterr().err


def test_unexpected_errors_print_one_line_and_keep_the_traceback_in_a_file(tmp_path, capsys, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    out = below_a_file(tmp_path)
    assert main(["data", "show", "synthcxr", "--out", str(out)]) == 3
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().count("\n") == 0
    assert f"{out}" in err and "traceback in " in err
    log = err.rsplit("traceback in ", 1)[1].rstrip(")\n")
    assert log.startswith(str(tmp_path)) and "Traceback" in open(log).read()
    with pytest.raises(OSError):
        main(["--debug", "data", "show", "synthcxr", "--out", str(out)])
