"""What a person sees: the trade-off plot at any spread, intervals inside each metric's range, pages that
link to every file they describe, and the command they name."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from matplotlib.path import Path as MplPath

from cxrbench.cli import main
from cxrbench.leaderboard import build_leaderboard, render_leaderboard
from cxrbench.leaderboard.plot import FRAME_PAD, LONG_NAME_CHARS, _figure, _plot_style
from cxrbench.results import load_results_dir
from test_leaderboard import make_record, metric

ROOT = Path(__file__).resolve().parent.parent
COMMITTED_RESULTS = ROOT / "leaderboard" / "results"


def synthetic_twenty() -> list[dict]:
    """20 entries spread over a realistic range, intervals from narrow to far wider than the frame, and
    names from short to longer than any label may be."""
    rng = np.random.default_rng(0)
    records = []
    for i in range(20):
        name = f"model-{i:02d}" + ("-with-a-long-descriptive-name" if i % 5 == 0 else "")
        fid, auc = float(rng.uniform(60, 140)), float(rng.uniform(0.35, 0.85))
        record = make_record(name, track="default", fid=fid, auc=auc)
        half = float(rng.uniform(0.5, 30))
        record["metrics"]["fid_domain"].update(ci_low=fid - half, ci_high=fid + half)
        half = float(rng.uniform(0.005, 0.2))
        record["metrics"]["loc_word_auc_roc"].update(ci_low=auc - half, ci_high=auc + half)
        records.append(record)
    return records


def _lines(axes, label: str) -> list:
    return [line for line in axes.get_lines() if line.get_label() == label]


def _segments(axes, label: str) -> list[np.ndarray]:
    """Display coordinates of each drawn line with this label (2 x 2 for a segment)."""
    return [axes.transData.transform(np.column_stack(line.get_data())) for line in _lines(axes, label)]


def _hits(segment: np.ndarray, box) -> bool:
    return MplPath(segment).intersects_bbox(box, filled=False)


def check_panel(figure, axes) -> dict[str, int]:
    """Assert that no label crosses a point, interval, leader or other label, that leaders cross no
    interval, that discs do not overlap, and that labels stay in the frame; return what was drawn."""
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    px = figure.dpi / 72.0
    frame = axes.get_window_extent(renderer)
    labels = [
        t.get_bbox_patch().get_window_extent(renderer) for t in axes.texts if t.get_label() == "_point-label"
    ]
    points = [
        axes.transData.transform(np.column_stack(line.get_data()))[0] for line in _lines(axes, "_point")
    ]
    discs = [
        axes.transData.transform(np.column_stack(line.get_data()))[0] for line in _lines(axes, "_letter-disc")
    ]
    bars = _segments(axes, "_interval") + _segments(axes, "_frontier")
    leaders = _segments(axes, "_leader")
    for i, box in enumerate(labels):
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
        assert not any(box.overlaps(other) for other in labels[i + 1 :]), "labels overlap"
        assert not any(
            box.x0 - 3.5 * px < x < box.x1 + 3.5 * px and box.y0 - 3.5 * px < y < box.y1 + 3.5 * px
            for x, y in points
        ), "a label covers a point"
        assert not any(_hits(bar, box) for bar in bars), "a label crosses an interval or the frontier"
        assert not any(_hits(leader, box) for leader in leaders if not _touches(leader, box)), (
            "crosses a leader"
        )
        for x, y in discs:
            nearest = min(max(x, box.x0), box.x1), min(max(y, box.y0), box.y1)
            assert np.hypot(x - nearest[0], y - nearest[1]) >= 7.5 * px, "a label covers a letter disc"
    for leader in leaders:
        assert not any(MplPath(leader).intersects_path(MplPath(bar), filled=False) for bar in bars), (
            "a leader line crosses an interval"
        )
    for i, (x, y) in enumerate(discs):
        assert all(np.hypot(x - u, y - v) >= 15 * px for u, v in discs[i + 1 :]), "letter discs overlap"
    return {"labels": len(labels), "discs": len(discs), "leaders": len(leaders), "points": len(points)}


def _touches(leader: np.ndarray, box) -> bool:
    """A leader ends on its own label's corner."""
    end = leader[-1]
    return (
        abs(end[0] - box.x0) < 1
        or abs(end[0] - box.x1) < 1
        or abs(end[1] - box.y0) < 1
        or abs(end[1] - box.y1) < 1
    )


def key_lines(figure) -> list[str]:
    """The key's entries, each on one line again (a wrapped line continues indented)."""
    texts = [
        text.get_text().replace("-\n    ", "-") for legend in figure.legends for text in legend.get_texts()
    ]
    return [" ".join(text.split()) for text in texts]


def test_synthetic_twenty_entries_are_labelled_without_crossings_and_long_names_are_lettered():
    board = build_leaderboard(synthetic_twenty())
    with _plot_style():
        figure = _figure(board.tracks)
    [axes] = figure.axes
    drawn = check_panel(figure, axes)
    assert drawn["points"] == 20 and drawn["labels"] + drawn["discs"] == 20
    shown = {t.get_text() for t in axes.texts if t.get_label() in ("_point-label", "_disc-letter")}
    key = key_lines(figure)
    entries = board.track("default").ranked_entries
    for entry in entries:
        if entry.model in shown:
            assert len(entry.model) <= LONG_NAME_CHARS
        else:
            [letter] = [line.split(" = ")[0] for line in key if line.endswith(f" = {entry.model}")]
            assert letter in shown
    assert any(len(e.model) > LONG_NAME_CHARS for e in entries)


def test_synthetic_twenty_axes_fit_the_means_and_cut_intervals_point_on():
    board = build_leaderboard(synthetic_twenty())
    with _plot_style():
        figure = _figure(board.tracks)
    [axes] = figure.axes
    entries = board.track("default").ranked_entries
    fids = [e.value("fid_domain") for e in entries]
    aucs = [e.value("loc_word_auc_roc") for e in entries]
    left, right = axes.get_xlim()
    bottom, top = axes.get_ylim()
    assert left > right  # reversed
    span = max(fids) - min(fids)
    assert left == pytest.approx(max(fids) + FRAME_PAD * span) and right == pytest.approx(
        min(fids) - FRAME_PAD * span
    )
    assert bottom == pytest.approx(min(aucs) - FRAME_PAD * (max(aucs) - min(aucs)))
    leaving = sum(
        int(e.metrics["fid_domain"].ci_low < right)
        + int(e.metrics["fid_domain"].ci_high > left)
        + int(e.metrics["loc_word_auc_roc"].ci_low < bottom)
        + int(e.metrics["loc_word_auc_roc"].ci_high > top)
        for e in entries
    )
    cut_marks = _lines(axes, "_interval-cut")
    assert leaving >= 5 and len(cut_marks) == leaving
    assert {line.get_marker() for line in cut_marks} <= {"<", ">", "^", "v"}
    [frontier] = _lines(axes, "_frontier")
    assert frontier.get_zorder() > max(line.get_zorder() for line in _lines(axes, "_interval"))


def test_committed_default_track_plot_reads_at_its_spread():
    board = build_leaderboard(load_results_dir(COMMITTED_RESULTS))
    with _plot_style():
        figure = _figure([board.track("default")])
    [axes] = figure.axes
    drawn = check_panel(figure, axes)
    ranked = board.track("default").ranked_entries
    assert drawn["points"] == len(ranked) == 9 and drawn["labels"] + drawn["discs"] == 9
    fids = [e.value("fid_domain") for e in ranked]
    left, right = axes.get_xlim()
    assert left - right == pytest.approx((max(fids) - min(fids)) * (1 + 2 * FRAME_PAD))  # about 5.7, not 50
    key = key_lines(figure)
    # the baselines lie outside the frame fitted to the entries (above it: a higher AUC; right of it: a
    # lower FID on the reversed axis), so the key lists them with their values
    baselines = {e.baseline: e for e in board.track("default").baselines}
    prior = baselines["box prior (train)"].value("loc_word_auc_roc")
    nearest = baselines["nearest training image"].value("fid_domain")
    bottom, top = axes.get_ylim()
    assert prior > top and nearest < right
    assert f"baseline: box prior (train): AUC-ROC {prior:.3f}, above the frame" in key
    assert f"baseline: nearest training image: FID {nearest:.2f}, right of the frame" in key


def test_intervals_are_cut_at_the_metric_range():
    extra = {"loc_word_pointing_game": metric(0.0)}
    records = [
        make_record(
            "m", seed, track="default", fid=fid, auc=0.6, extra={"loc_word_pointing_game": metric(value)}
        )
        for seed, (fid, value) in enumerate([(3.0, 0.0), (1.0, 0.05), (2.0, 0.2)])
    ]
    records.append(make_record("one", track="default", fid=5.0, auc=0.7, extra=extra))
    entry = build_leaderboard(records).track("default").entries[0]
    pointing = entry.metrics["loc_word_pointing_game"]
    assert pointing.ci_low == 0.0 and pointing.cut and pointing.ci_high > pointing.mean
    fid = entry.metrics["fid_domain"]  # 2 +- 4.3 * 1 / sqrt(3): the low end would be below 0
    assert fid.ci_low == 0.0 and fid.cut and fid.ci_high == pytest.approx(2.0 + 4.302653 / 3**0.5, abs=1e-5)
    assert not entry.metrics["loc_word_auc_roc"].cut


def _results_folder(tmp_path: Path) -> Path:
    results = tmp_path / "board" / "results"
    results.mkdir(parents=True)
    for record in (
        make_record("alpha", fid=10.0, auc=0.9),
        make_record("<img src=x onerror=alert(1)>", fid=20.0, auc=0.95),
    ):
        name = "xss" if record["plugin"]["model"].startswith("<") else record["plugin"]["model"]
        (results / f"{name}__smoke__seed0.json").write_text(json.dumps(record))
    return results


def _shipped_results_folder(tmp_path: Path) -> Path:
    """The committed smoke results with the files they ship: what `validate` and `leaderboard` accept."""
    results = tmp_path / "board" / "results"
    results.mkdir(parents=True)
    for path in COMMITTED_RESULTS.glob("*__smoke__seed0.*"):
        (results / path.name).write_bytes(path.read_bytes())
    return results


def test_pages_link_the_csv_every_result_file_the_report_and_the_docs(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[project]\n")  # a checkout: the docs are linked
    for doc in ("docs/leaderboard.md", "docs/metrics.md", "README.md", "CONTRIBUTING.md"):
        (tmp_path / doc).parent.mkdir(exist_ok=True)
        (tmp_path / doc).write_text("# doc\n")
    results = _results_folder(tmp_path)
    report = tmp_path / "docs" / "report-smoke"
    report.mkdir()
    (report / "report.json").write_text(json.dumps({"track": "smoke"}))
    (report / "index.html").write_text("<!DOCTYPE html>\n")
    render_leaderboard(load_results_dir(results), tmp_path / "board", report_dirs=[report])
    page = (tmp_path / "board" / "index.html").read_text(encoding="utf-8")
    readme = (tmp_path / "board" / "README.md").read_text(encoding="utf-8")
    hrefs = re.findall(r'href="([^"#]+)"', page)
    for target in (
        "leaderboard.csv",
        "README.md",
        "results/alpha__smoke__seed0.json",
        "results/xss__smoke__seed0.json",
        "../docs/report-smoke/index.html",
        "../docs/leaderboard.md",
        "../docs/metrics.md",
        "../README.md",
        "../CONTRIBUTING.md",
    ):
        assert target in hrefs, target
        assert f"]({target})" in readme or target == "README.md", target
    for href in hrefs:
        assert (tmp_path / "board" / href).is_file(), href  # every link resolves, relative to the page


def test_pages_outside_a_checkout_name_the_docs_without_links(tmp_path):
    results = _results_folder(tmp_path)
    render_leaderboard(load_results_dir(results), tmp_path / "board")
    page = (tmp_path / "board" / "index.html").read_text(encoding="utf-8")
    assert "../docs/" not in page and 'href="results/alpha__smoke__seed0.json"' in page


def test_page_is_readable_without_hovering(tmp_path):
    extra = {"loc_word_pointing_game": metric(0.25, 0.125, 0.375), "cond_auroc": metric(0.6, 0.55, 0.65)}
    render_leaderboard(
        [make_record("alpha", fid=10.0, auc=0.9, extra=extra), make_record("beta", fid=5.0, auc=0.8)],
        tmp_path,
    )
    page = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    for interval in ("[0.125, 0.375]", "[0.550, 0.650]"):  # non-headline columns too
        assert f'<span class="ci">{interval}</span>' in page
    assert "position: sticky; left: 0" in page and "break-all" not in page
    assert "<em>box prior (train)</em>" in page and "*box prior" not in page  # no markdown asterisks
    assert page.count('role="img" aria-labelledby=') == 1 and "<title id=" in page
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids))


@pytest.mark.slow
def test_leaderboard_pages_name_the_paths_they_were_made_with(tmp_path, monkeypatch, capsys):
    results = _shipped_results_folder(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["leaderboard", "--results", "board/results", "--out", "elsewhere"]) == 0
    command = "cxrbench leaderboard --results board/results --out elsewhere"
    for name in ("README.md", "index.html"):
        assert command in (tmp_path / "elsewhere" / name).read_text(encoding="utf-8")
    assert "leaderboard/results" not in (tmp_path / "elsewhere" / "README.md").read_text(encoding="utf-8")
    assert main(["leaderboard", "--results", "board/results", "--out", "elsewhere", "--check"]) == 0
    assert main(["leaderboard", "--results", str(results), "--out", "elsewhere", "--check"]) == 1
    # another command line is another page; the message names the command that was checked
    assert f"cxrbench leaderboard --results {results} --out elsewhere" in capsys.readouterr().err


def test_validate_skips_the_files_a_run_writes_beside_its_result(tmp_path, capsys):
    results = _shipped_results_folder(tmp_path)
    (tmp_path / "orphan.samples.jsonl").write_text("")
    assert main(["validate", *map(str, sorted(results.iterdir()))]) == 0
    out = capsys.readouterr().out
    for companion in (".samples.jsonl", ".maps.npz", ".features.npz"):
        assert f"frozen-encoder__smoke__seed0{companion}: skipped" in out
    assert "not valid JSON" not in out
    assert main(["validate", str(tmp_path / "orphan.samples.jsonl")]) == 1
