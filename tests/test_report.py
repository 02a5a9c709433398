"""Attention reports: the runner keeps the report queries' maps; `cxrbench report` draws them per class."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
from PIL import Image

from cxrbench.cli import main
from cxrbench.artifacts import REPORT_QUERIES_PER_CLASS, maps_path_for, report_query_indices
from cxrbench.errors import ResultError
from cxrbench.model import LocalizationQuery
from cxrbench.plan import load_track_data, localization_queries
from cxrbench.protocol import get_track
from cxrbench.report import load_report_maps, write_report
from cxrbench.runner import run_benchmark
from cxrbench.testing import DummyModel, registry_with

SMOKE = get_track("smoke")


def _query(sample_id: str, label: str) -> LocalizationQuery:
    return LocalizationQuery(sample_id, "report", "phrase", label, ("x",))


def test_report_queries_are_the_first_of_each_class_in_test_order():
    queries = [_query("a", "Edema"), _query("b", "Edema"), _query("c", "Edema"), _query("d", "Atelectasis")]
    assert REPORT_QUERIES_PER_CLASS == 2
    assert report_query_indices(queries) == [0, 1, 3]


@pytest.fixture(scope="module")
def smoke_result(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    registry = registry_with(DummyModel)
    [outcome] = run_benchmark(["dummy"], SMOKE, [0], tmp / "results", tmp / "work", registry=registry,
                              show_progress=False)
    assert outcome.status == "ok", outcome.error
    return outcome.result_path, registry


@pytest.mark.slow
def test_run_keeps_the_report_maps_of_the_same_queries_the_scores_used(smoke_result):
    result_path, registry = smoke_result
    maps = load_report_maps(result_path)
    data = load_track_data(SMOKE, registry)
    queries = localization_queries(data.test)
    chosen = [queries[i] for i in report_query_indices(queries)]
    assert maps.model == "dummy" and maps.track == "smoke" and maps.seed == 0
    assert maps.sample_ids == [q.sample_id for q in chosen] and maps.labels == [q.label for q in chosen]
    size = SMOKE.image_size
    assert maps.maps["word"].shape == (len(chosen), size, size)
    # The dummy model answers with its training box prior: each map is brightest inside the class's region.
    assert all(np.ptp(m) > 0 for m in maps.maps["word"])


@pytest.mark.slow
def test_report_writes_a_page_and_a_png_per_class_and_test_image(smoke_result, tmp_path):
    result_path, registry = smoke_result
    test = load_track_data(SMOKE, registry).test
    index = write_report([result_path], tmp_path / "report", test=test, leaderboard_dir=tmp_path / "board")
    html = index.read_text()
    maps = load_report_maps(result_path)
    for label in set(maps.labels):
        for n in range(1, maps.labels.count(label) + 1):
            png = tmp_path / "report" / f"{label.lower().replace(' ', '_')}_{n}.png"
            assert f'src="{png.name}"' in html
            with Image.open(png) as im:  # 150 dpi, shown at 100 CSS px per inch: labels stay legible
                shown = re.search(rf'src="{png.name}" width="(\d+)" height="(\d+)"', html)
                assert im.size[0] == pytest.approx(1.5 * int(shown.group(1)), abs=2)
                assert int(shown.group(1)) <= 430  # narrow enough for a phone
    assert "<td>dummy</td>" in html
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    # links relative to the report's folder: the result file and the leaderboard
    assert f'href="../{result_path.parent.name}/{result_path.name}"' in html or \
        f'href="{os.path.relpath(result_path, tmp_path / "report")}"' in html
    assert 'href="../board/index.html"' in html
    assert json.loads((tmp_path / "report" / "report.json").read_text())["track"] == "smoke"


@pytest.mark.slow
def test_report_names_the_result_whose_maps_are_missing(smoke_result, tmp_path):
    result_path, _ = smoke_result
    copy = tmp_path / "copy.json"
    copy.write_text(result_path.read_text())
    with pytest.raises(ResultError, match="copy.json.*copy.maps.npz is missing"):
        load_report_maps(copy)
    assert maps_path_for(copy).name == "copy.maps.npz"
    assert main(["report", str(copy), "--out", str(tmp_path / "r")]) != 0


@pytest.mark.slow
def test_report_leaves_out_results_of_models_that_cannot_localize(smoke_result, tmp_path, capsys):
    result_path, registry = smoke_result
    generate_only = json.loads(result_path.read_text())
    generate_only["plugin"]["capabilities"] = ["generate"]
    other = tmp_path / "generator.json"  # no maps beside it: drawing it would fail
    other.write_text(json.dumps(generate_only))
    test = load_track_data(SMOKE, registry).test
    skipped: list = []
    index = write_report([result_path, other], tmp_path / "report", test=test, on_skip=skipped.append)
    assert "<td>dummy</td>" in index.read_text() and "generator.json" not in index.read_text()
    assert skipped == [other]
    with pytest.raises(ResultError, match="none of the results is of a model that localizes"):
        write_report([other], tmp_path / "alone", test=test)
