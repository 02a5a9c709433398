"""The typed result record (cxrbench.result_schema): the committed JSON Schema, the committed results, and
messages that name the file and the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cxrbench.cli import main
from cxrbench.result_schema import SCHEMA_FILE, ResultRecord, result_json_schema, result_schema_text
from cxrbench.results import atomic_write_json, validation_errors

from test_results import minimal_result

ROOT = Path(__file__).resolve().parents[1]
COMMITTED_RESULTS = sorted((ROOT / "leaderboard" / "results").glob("*.json"))


def test_committed_schema_is_the_models_schema():
    # docs/result-schema.json cannot drift from the model: regenerate it with `cxrbench schema --out`.
    assert (ROOT / SCHEMA_FILE).read_text(encoding="utf-8") == result_schema_text()


def test_schema_command_prints_and_writes_the_schema(tmp_path, capsys):
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == result_json_schema()
    out = tmp_path / "schema.json"
    assert main(["schema", "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == result_schema_text()


def test_every_committed_result_fits_the_model():
    assert len(COMMITTED_RESULTS) >= 39
    for path in COMMITTED_RESULTS:
        ResultRecord.model_validate(json.loads(path.read_text(encoding="utf-8")))


@pytest.mark.slow
def test_every_committed_result_fits_the_committed_json_schema():
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(json.loads((ROOT / SCHEMA_FILE).read_text(encoding="utf-8")))
    for path in COMMITTED_RESULTS:
        data = json.loads(path.read_text(encoding="utf-8"))
        assert [e.message for e in validator.iter_errors(data)] == [], path.name


def test_metric_names_are_open_and_plugin_metrics_carry_source_and_description():
    record = minimal_result()
    record["metrics"]["example_sharpness"] = {
        "value": 0.4, "ci_low": 0.3, "ci_high": 0.5, "n": 8, "higher_is_better": True,
        "source": "cxrbench-example-metric", "description": "mean gradient energy", "std": 0.05,
    }
    assert validation_errors(record) == []
    record["metrics"]["example_sharpness"]["unit"] = "px"
    assert validation_errors(record) == [
        "metric 'example_sharpness' field 'unit' is not part of the result format (docs/result-schema.json)"]


def test_open_parts_of_the_record_accept_more_keys_and_closed_parts_do_not():
    record = minimal_result()
    record["plugin"]["config"] = {"rank": 4, "target_modules": ["query", "value"]}
    record["environment"] = {"python": "3.11.7", "accelerate": "1.0.0"}
    record["evaluators"]["inception"] = {"name": "inception", "available": True, "weights_url": None}
    assert validation_errors(record) == []
    record["plugin"]["colour"] = "blue"
    record["comment"] = "hand-edited"
    problems = validation_errors(record)
    assert "plugin field 'colour' is not part of the result format (docs/result-schema.json)" in problems
    assert "key 'comment' is not part of the result format (docs/result-schema.json)" in problems


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda r: r["per_class"].update(cond_auroc={"Effusion": {"value": 0.5, "ci_low": None, "ci_high": None,
                                                                   "n": "3"}}),
         "per_class 'cond_auroc' class 'Effusion' field 'n' must be int, but got str '3'"),
        (lambda r: r["evaluators"].update(domain={"name": "domain", "available": "yes"}),
         "evaluator 'domain' field 'available' must be true or false, but got str 'yes'"),
        (lambda r: r["timings"].update(fit_s="slow"), "timings field 'fit_s' must be a number or null, but got str 'slow'"),
        (lambda r: r["metrics"].update(fid_domain=[1.5]), "metric 'fid_domain' must be an object, but got list"),
        (lambda r: r["metrics"]["fid_domain"].update(n=4.0), "metric 'fid_domain' field 'n' must be int, but got float 4.0"),
        (lambda r: r["track"].pop("hash"), "track is missing 'hash'"),
        (lambda r: r.update(status="done"), "key 'status' must be 'ok' or 'failed', but got str 'done'"),
        (lambda r: r.update(seed=True), "key 'seed' must be int, but got bool True"),
    ],
)
def test_problems_name_the_field(mutate, message):
    record = minimal_result()
    mutate(record)
    assert message in validation_errors(record)


def test_another_schema_version_is_reported_alone():
    record = minimal_result()
    record.update(schema_version=2, seed="0")
    assert validation_errors(record) == ["schema_version must be 1, but got 2"]


def test_validate_names_the_file_and_the_nested_field(tmp_path, capsys):
    path = tmp_path / "m__smoke__seed0.json"
    record = minimal_result()
    record["metrics"]["fid_domain"].update(value=None, n=0, note="not available: no weights")
    record["per_class"]["cond_auroc"] = {"Effusion": {"value": "0.5", "ci_low": None, "ci_high": None, "n": 3}}
    atomic_write_json(path, record)
    assert main(["validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}: INVALID\n  - per_class 'cond_auroc' class 'Effusion' field 'value' must be a number or null" in err
