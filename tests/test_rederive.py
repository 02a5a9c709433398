"""Every figure of a result re-derives from the files it ships; `validate` and `leaderboard` refuse one that
does not, naming the file, the metric, the stored and the re-derived value."""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from cxrbench.cli import main
from cxrbench.protocol import get_track
from cxrbench.rederive import features_path_for, rederivation_errors
from cxrbench.results import atomic_write_json, load_result
from cxrbench.runner import run_benchmark
from cxrbench.testing import DummyModel, registry_with

ROOT = Path(__file__).resolve().parent.parent
COMMITTED_RESULTS = ROOT / "leaderboard" / "results"
STEM = "dummy__smoke__seed0"


@pytest.fixture(scope="module")
def shipped(tmp_path_factory) -> Path:
    """A folder with one untouched smoke result of the dummy model and the files it ships."""
    base = tmp_path_factory.mktemp("shipped")
    [outcome] = run_benchmark(["dummy"], get_track("smoke"), [0], base / "results", base / "work",
                              registry=registry_with(DummyModel), show_progress=False)
    assert outcome.status == "ok", outcome.error
    return base / "results"


@pytest.fixture
def results(shipped, tmp_path) -> Path:
    """A private copy of the shipped folder, free to edit."""
    return Path(shutil.copytree(shipped, tmp_path / "results"))


def edit(results: Path, metric: str, field: str = "value") -> tuple[float, float]:
    """Halve one stored figure of the result by hand; returns (original, edited)."""
    path = results / f"{STEM}.json"
    record = load_result(path)
    original = record["metrics"][metric][field]
    record["metrics"][metric][field] = edited = original / 2.0
    atomic_write_json(path, record)
    return original, edited


def rederived_value(message: str, metric: str, field: str) -> float:
    found = re.search(rf"{re.escape(metric)} {field} is (\S+) in the result, but re-derived from \S+ it is (\S+)",
                      message)
    assert found, message
    return float(found.group(2))


@pytest.mark.slow
def test_run_ships_float32_features_of_every_generated_image(shipped):
    record = load_result(shipped / f"{STEM}.json")
    features = features_path_for(shipped / f"{STEM}.json")
    assert record["features_file"] == features.name
    with np.load(features) as archive:
        generated, probabilities = archive["features/domain"], archive["probabilities/domain"]
    n_images = record["metrics"]["fid_domain"]["n"]
    assert generated.dtype == np.float32 and generated.shape == (n_images, record["evaluators"]["domain"]["feature_dim"])
    assert probabilities.dtype == np.float32 and probabilities.shape == (n_images, 9)


@pytest.mark.slow
def test_untouched_result_passes(shipped, capsys):
    path = shipped / f"{STEM}.json"
    assert rederivation_errors(load_result(path), path) == []
    assert main(["validate", str(path)]) == 0
    assert f"{path}: ok" in capsys.readouterr().out


@pytest.mark.parametrize("metric, field", [
    ("loc_word_auc_roc", "value"),
    ("loc_word_auc_roc_macro", "ci_high"),
    ("loc_eos_pointing_game", "ci_low"),
    ("fid_domain", "value"),
    ("kid_domain", "ci_high"),
    ("precision_domain", "value"),
    ("cond_top1", "value"),
])
@pytest.mark.slow
def test_validate_refuses_a_hand_edited_figure_naming_metric_stored_and_rederived_value(results, capsys,
                                                                                      metric, field):
    original, edited = edit(results, metric, field)
    path = results / f"{STEM}.json"
    assert main(["validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}: INVALID" in err and f"{path}: {metric} {field} is {edited!r} in the result" in err
    assert math.isclose(rederived_value(err, metric, field), original, rel_tol=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("metric", ["loc_word_auc_roc", "fid_domain"])
def test_leaderboard_refuses_a_hand_edited_headline(results, tmp_path, capsys, metric):
    original, edited = edit(results, metric)
    out = tmp_path / "board"
    assert main(["leaderboard", "--results", str(results), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{results / STEM}.json: {metric} value is {edited!r} in the result" in err
    assert math.isclose(rederived_value(err, metric, "value"), original, rel_tol=1e-9)
    assert not out.exists()  # nothing ranked


@pytest.mark.slow
def test_hand_edited_per_class_entry_is_refused(results, capsys):
    path = results / f"{STEM}.json"
    record = load_result(path)
    label, entry = next((k, v) for k, v in record["per_class"]["loc_word_auc_roc"].items() if v["value"] is not None)
    entry["value"] = 1.0 - entry["value"]
    atomic_write_json(path, record)
    assert main(["validate", str(path)]) == 1
    assert f"loc_word_auc_roc per_class[{label!r}] value is {entry['value']!r} in the result" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("suffix, key", [(".features.npz", "features file"), (".samples.jsonl", "per-sample file")])
def test_missing_shipped_file_is_named(results, capsys, suffix, key):
    missing = results / f"{STEM}{suffix}"
    missing.unlink()
    assert main(["validate", str(results / f"{STEM}.json")]) == 1
    err = capsys.readouterr().err
    assert f"its {key} {missing} is missing" in err
    assert len([line for line in err.splitlines() if line.startswith("  - ")]) == 1  # once, not per metric


@pytest.mark.slow
def test_result_naming_no_features_file_is_refused(results, capsys):
    path = results / f"{STEM}.json"
    record = load_result(path)
    del record["features_file"], record["features_sha256"]
    atomic_write_json(path, record)
    assert main(["validate", str(path)]) == 1
    assert f"names no features file (features_file; a run writes {STEM}.features.npz)" in capsys.readouterr().err


@pytest.mark.slow
def test_edited_features_file_is_refused_by_its_sha256(results, capsys):
    features = results / f"{STEM}.features.npz"
    with np.load(features) as archive:
        arrays = {key: archive[key] for key in archive.files}
    arrays["features/domain"] = arrays["features/domain"] * 1.01
    np.savez_compressed(features, **arrays)
    assert main(["validate", str(results / f"{STEM}.json")]) == 1
    assert f"its features file {features.name} has sha256" in capsys.readouterr().err


@pytest.mark.slow
def test_failed_result_ships_nothing_and_stays_valid(results, capsys):
    path = results / f"{STEM}.json"
    record = load_result(path)
    record.update(status="failed", error={"stage": "fit", "type": "RuntimeError", "message": "out of memory"},
                  metrics={}, per_class={}, per_sample_file=None)
    del record["features_file"], record["features_sha256"]
    atomic_write_json(path, record)
    for companion in results.glob(f"{STEM}.*"):
        if companion != path:
            companion.unlink()
    assert main(["validate", str(path)]) == 0


def test_committed_smoke_results_rederive(capsys):
    paths = sorted(COMMITTED_RESULTS.glob("*__smoke__*.json"))
    assert paths
    assert main(["validate", *map(str, paths)]) == 0, capsys.readouterr().err


@pytest.mark.slow
def test_kid_of_the_whole_set_rule_is_refused_by_re_derivation(results):
    """A KID computed with version 1's subsets (the whole smaller set) disagrees with the re-derived one, even
    when the result claims the current metric versions."""
    from cxrbench.metrics.fidelity import _unbiased_mmd2, kid_subset_size
    from cxrbench.rederive import real_features
    from cxrbench.runner import load_track_data

    path = results / f"{STEM}.json"
    record = load_result(path)
    registry = registry_with(DummyModel)
    track = get_track("smoke")
    real = real_features(track, "domain", load_track_data(track, registry).test, registry)
    generated = np.load(features_path_for(path))["features/domain"].astype(np.float64)
    kid = record["metrics"]["kid_domain"]
    assert kid["n"] == kid_subset_size(len(real), len(generated)) < min(len(real), len(generated))
    assert kid["ci_high"] > kid["ci_low"]
    whole_set = _unbiased_mmd2(real, generated, 3, 1.0 / real.shape[1], 1.0)  # N == M: every subset is the set
    assert len(real) == len(generated) and not math.isclose(whole_set, kid["value"], rel_tol=1e-6)
    record["metrics"]["kid_domain"].update(value=whole_set, ci_low=whole_set, ci_high=whole_set, n=len(real))
    atomic_write_json(path, record)
    problems = rederivation_errors(load_result(path), path, registry)
    assert any(f"{path}: kid_domain value is {whole_set!r} in the result" in p for p in problems), problems
