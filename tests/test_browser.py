"""The pages in a real browser (headless Chromium through playwright), at a phone's and a desktop's width.

For the leaderboard page and the attention report, each rendered here from records that hold an injected
name, and for the committed pages: no console error or page error, no dialog (an injected name stays text),
every relative link resolves to a file, the page is no wider than the screen, tables keep their first
column in view while they scroll, the plot panels stack on a phone and sit side by side on a desktop, and
every sortable header sorts its table (ascending, then descending; empty cells last; ties in the
leaderboard's order).

Chromium is Debian's package (``apt-get install chromium``). Without it the test is skipped on a
developer's machine, and fails where ``CXRBENCH_REQUIRE_BROWSER=1`` (CI sets it).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from cxrbench.browser import VIEWPORTS, find_chromium
from cxrbench.leaderboard import render_leaderboard
from cxrbench.protocol import get_track
from cxrbench.report import maps_path_for, write_report
from cxrbench.results import load_results_dir
from cxrbench.runner import load_track_data, run_benchmark
from cxrbench.testing import DummyModel, registry_with
from test_leaderboard import baseline_record, failed_record, make_record, metric

ROOT = Path(__file__).resolve().parent.parent
INJECTED = "<img src=x onerror=alert(1)>"

try:
    import playwright  # noqa: F401

    MISSING = None if find_chromium() else "Chromium is not installed (apt-get install chromium)"
except ImportError:
    MISSING = "playwright is not installed (pip install -e .[test])"
if MISSING and os.environ.get("CXRBENCH_REQUIRE_BROWSER") == "1":
    raise RuntimeError(f"CXRBENCH_REQUIRE_BROWSER=1 but {MISSING}")
pytestmark = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")


def _records() -> list[dict]:
    tie = {"loc_word_pointing_game": metric(0.5, 0.4, 0.6)}
    records = [
        make_record("alpha", fid=10.0, auc=0.90, extra=tie),
        make_record("beta", fid=20.0, auc=0.95, extra=tie),
        make_record("gamma", fid=25.0, auc=0.80),
        make_record("delta", fid=9.0, auc=0.70),
        make_record(INJECTED, fid=30.0, auc=0.60, config={"path": INJECTED}),
        make_record("no-loc", fid=5.0),
        baseline_record(auc=0.85),
        failed_record("broken", 3, "fit", f"cannot load {INJECTED}"),
    ]
    records += [
        make_record("multi", seed, track="default", fid=12.0 + seed, auc=0.8 + 0.03 * seed)
        for seed in range(3)
    ]
    return records


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[str, Path]:
    """A leaderboard and an attention report, both showing the injected name, with their result files."""
    tmp = tmp_path_factory.mktemp("pages")
    results = tmp / "board" / "results"
    results.mkdir(parents=True)
    for i, record in enumerate(_records()):
        (results / f"r{i:02d}__{record['track']['name']}__seed{record['seed']}.json").write_text(
            json.dumps(record)
        )
    registry = registry_with(DummyModel)
    smoke = get_track("smoke")
    [outcome] = run_benchmark(
        ["dummy"], smoke, [0], tmp / "runs", tmp / "work", registry=registry, show_progress=False
    )
    injected = json.loads(outcome.result_path.read_text())
    injected["plugin"]["model"] = INJECTED
    renamed = tmp / "runs" / "injected__smoke__seed0.json"
    renamed.write_text(json.dumps(injected))
    shutil.copy(maps_path_for(outcome.result_path), maps_path_for(renamed))
    report = tmp / "report"
    write_report(
        [outcome.result_path, renamed],
        report,
        test=load_track_data(smoke, registry).test,
        leaderboard_dir=tmp / "board",
    )
    render_leaderboard(load_results_dir(results), tmp / "board", report_dirs=[report])
    return {
        "leaderboard": tmp / "board" / "index.html",
        "report": report / "index.html",
        "committed leaderboard": ROOT / "leaderboard" / "index.html",
        "committed report": ROOT / "docs" / "report-default" / "index.html",
    }


READ_COLUMN = """([table, column]) => Array.from(table.tBodies[0].rows).map(row => {
  const cell = row.cells[column];
  const raw = cell.getAttribute("data-sort");
  return [raw === null ? cell.textContent.trim().toLowerCase() : raw, parseInt(row.getAttribute("data-order"), 10)];
})"""


def _key(raw: str, numeric: bool):
    return float(raw) if numeric else raw


def check_sorted(rows: list[list], descending: bool, numeric: bool, where: str) -> None:
    """Present values in order (ties by original order), then missing ones (data-sort="") in original order."""
    present = [(raw, order) for raw, order in rows if raw != "" or not numeric]
    missing = [order for raw, order in rows if raw == "" and numeric]
    assert [order for raw, order in rows[len(present) :]] == missing and missing == sorted(missing), where
    for (a, oa), (b, ob) in zip(present, present[1:]):
        ka, kb = _key(a, numeric), _key(b, numeric)
        if ka == kb:
            assert oa < ob, f"{where}: tie out of the leaderboard's order"
        else:
            assert (ka > kb) if descending else (ka < kb), f"{where}: {a!r} before {b!r}"


def click_every_header(page, name: str) -> int:
    checks = 0
    for t, table in enumerate(page.query_selector_all("table.sortable")):
        headers = table.query_selector_all("thead th")
        for column, header in enumerate(headers):
            numeric = page.evaluate(
                "([t, c]) => Array.from(t.tBodies[0].rows).every(r => "
                "r.cells[c].getAttribute('data-sort') !== null)",
                [table, column],
            )
            for descending in (False, True):
                header.click()
                assert header.get_attribute("aria-sort") == ("descending" if descending else "ascending")
                rows = page.evaluate(READ_COLUMN, [table, column])
                check_sorted(rows, descending, numeric, f"{name} table {t} column {column}")
                checks += 1
    return checks


def check_links(page, html_path: Path) -> None:
    for href in page.eval_on_selector_all("a[href]", "links => links.map(a => a.href)"):
        url = urlparse(href)
        assert url.scheme == "file", f"{html_path.name}: link leaves the files: {href}"
        assert Path(unquote(url.path)).is_file(), f"{html_path}: broken link {href}"


@pytest.mark.slow
@pytest.mark.parametrize("viewport", VIEWPORTS, ids=[v[0] for v in VIEWPORTS])
def test_pages_in_chromium(pages, viewport):
    from cxrbench.browser import chromium

    name, width, height, mobile = viewport
    with chromium(width, height, mobile) as context:
        page = context.new_page()
        problems: list[str] = []
        page.on(
            "console",
            lambda msg: problems.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None,
        )
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        page.on("dialog", lambda dialog: (problems.append(f"dialog: {dialog.message}"), dialog.dismiss()))
        checks = 0
        for label, path in pages.items():
            page.goto(path.as_uri())
            page.wait_for_load_state("load")
            assert page.evaluate("document.documentElement.scrollWidth") <= width, (
                f"{label} wider than {width} px"
            )
            check_links(page, path)
            if not label.startswith("committed"):
                assert INJECTED in page.inner_text("body"), label  # shown as text ...
                assert page.query_selector("img[src='x']") is None, label  # ... never as an element
            _check_sticky_first_column(page, label)
            if "leaderboard" in label:
                _check_panels(page, width, label)
            checks += click_every_header(page, label)
        assert not problems, problems
        assert checks > 100


def _check_sticky_first_column(page, label: str) -> None:
    for wrap in page.query_selector_all(".table-wrap"):
        if page.evaluate("w => w.scrollWidth <= w.clientWidth", wrap):
            continue
        page.evaluate("w => { w.scrollLeft = w.scrollWidth; }", wrap)
        left = page.evaluate("w => w.getBoundingClientRect().left", wrap)
        first = page.evaluate("w => w.querySelector('tbody tr td').getBoundingClientRect().left", wrap)
        assert abs(first - left) < 2, f"{label}: the first column scrolled out of view"
        page.evaluate("w => { w.scrollLeft = 0; }", wrap)


def _check_panels(page, width: int, label: str) -> None:
    boxes = page.eval_on_selector_all(
        ".plots figure", "fs => fs.map(f => f.getBoundingClientRect().toJSON())"
    )
    assert len(boxes) >= 2, label
    first, second = boxes[0], boxes[1]
    if width < 600:
        assert second["top"] >= first["bottom"] - 1, f"{label}: panels not stacked on a phone"
    else:
        assert abs(second["top"] - first["top"]) < 2 and second["left"] >= first["right"], (
            f"{label}: not side by side"
        )
    for svg in page.query_selector_all(".plots svg"):
        assert svg.get_attribute("role") == "img" and svg.get_attribute("aria-labelledby")
