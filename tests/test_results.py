from __future__ import annotations

import json
import os

import pytest

from cxrbench.cli import main
from cxrbench.errors import ResultError
from cxrbench.protocol import TRACKS
from cxrbench.results import METRIC_VERSIONS, atomic_write_json, json_safe, load_result, validate_result, validation_errors


def minimal_result(track: str = "smoke") -> dict:
    t = TRACKS[track]
    return {
        "schema_version": 1, "status": "ok", "error": None, "created": "2026-01-01T00:00:00+00:00",
        "track": {"name": t.name, "version": t.version, "hash": t.hash},
        "plugin": {"model": "m", "distribution": "d", "version": "1", "config": {}, "capabilities": ["generate"]},
        "seed": 0, "dataset": {"name": "synthcxr"}, "evaluators": {}, "environment": {}, "timings": {},
        "metrics": {"fid_domain": {"value": 1.5, "ci_low": None, "ci_high": None, "n": 4, "higher_is_better": False}},
        "per_class": {}, "per_sample_file": None,
    }


def test_minimal_result_is_valid():
    assert validation_errors(minimal_result()) == []


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda r: r.update(schema_version=99), "schema_version must be 1"),
        (lambda r: r["track"].update(hash="0000"), "does not match the current definition"),
        (lambda r: r["track"].update(name="nope"), "track name must be one of"),
        (lambda r: r.pop("metrics"), "missing key 'metrics'"),
        (lambda r: r.update(status="failed"), "must carry an 'error' object"),
        (lambda r: r["metrics"]["fid_domain"].update(value="high"), "must be a number or null"),
        (lambda r: r["metrics"]["fid_domain"].pop("higher_is_better"), "is missing"),
        (lambda r: r.update(seed="0"), "key 'seed' must be int"),
    ],
)
def test_validation_names_the_problem(mutate, message):
    record = minimal_result()
    mutate(record)
    problems = validation_errors(record)
    assert any(message in p for p in problems), problems


def _with_kid(record: dict) -> dict:
    record["metrics"]["kid_domain"] = {"value": 0.4, "ci_low": 0.3, "ci_high": 0.5, "n": 100, "higher_is_better": False}
    return record


def test_validation_refuses_kid_of_an_older_metric_version():
    record = _with_kid(minimal_result())  # no metric_versions: every metric at version 1
    problems = validation_errors(record)
    assert any("metric 'kid' (kid_domain)" in p and "version 1" in p and "version 2" in p for p in problems), problems
    record["metric_versions"] = {"kid": 1}
    assert any("metric 'kid' (kid_domain)" in p for p in validation_errors(record))
    record["metric_versions"] = dict(METRIC_VERSIONS)
    assert validation_errors(record) == []


def test_metric_versions_only_concern_the_metrics_a_result_has():
    assert METRIC_VERSIONS["kid"] == 2
    record = minimal_result()  # FID only, whose definition is still version 1
    assert validation_errors(record) == []
    record["metric_versions"] = "new"
    assert any("key 'metric_versions' must be an object" in p for p in validation_errors(record))


def test_validate_cli_exits_nonzero_with_file_name(tmp_path, capsys):
    good, bad, broken = tmp_path / "good.json", tmp_path / "bad.json", tmp_path / "broken.json"
    record = minimal_result()
    # a figure without a value needs no shipped file to re-derive it (tests/test_rederive.py)
    record["metrics"]["fid_domain"].update(value=None, n=0, note="not available: no weights")
    atomic_write_json(good, record)
    record = minimal_result()
    record["track"]["hash"] = "deadbeef"
    atomic_write_json(bad, record)
    broken.write_text("{not json")
    assert main(["validate", str(good)]) == 0
    assert main(["validate", str(good), str(bad), str(broken)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}: INVALID" in err and "deadbeef" in err
    assert f"{broken}" in err and "not valid JSON" in err


def test_json_safe_writes_nan_as_null(tmp_path):
    path = tmp_path / "r.json"
    atomic_write_json(path, {"a": float("nan"), "b": [float("inf"), 1.0]})
    assert json.loads(path.read_text()) == {"a": None, "b": [None, 1.0]}
    assert json_safe({"x": (1, 2)}) == {"x": [1, 2]}


def test_atomic_write_keeps_the_old_file_when_serialization_fails(tmp_path):
    path = tmp_path / "r.json"
    atomic_write_json(path, {"ok": 1})
    with pytest.raises(TypeError):
        atomic_write_json(path, {"bad": object()})
    assert json.loads(path.read_text()) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temp file left behind


def test_load_result_rejects_non_objects(tmp_path):
    path = tmp_path / "list.json"
    path.write_text("[1, 2]")
    with pytest.raises(ResultError, match="must be a JSON object"):
        load_result(path)
    with pytest.raises(ResultError, match="cannot read"):
        load_result(tmp_path / "missing.json")
    with pytest.raises(ResultError, match=os.path.basename(str(path))):
        validate_result({"schema_version": 1}, path)
