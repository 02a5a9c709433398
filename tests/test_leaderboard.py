"""Leaderboard: Pareto ranking, seed aggregation, rendering (markdown, HTML, CSV, plot) and the CI check."""

from __future__ import annotations

import csv
import io
import math
import re
import pytest

from cxrbench.errors import ResultError
from cxrbench.leaderboard import (
    build_leaderboard,
    check_leaderboard,
    joint_scores,
    pareto_ranks,
    render_leaderboard,
    seed_interval,
)
from cxrbench.protocol import TRACKS
from cxrbench.results import SCHEMA_VERSION, validation_errors

# Student's t quantile t(0.975, df) from printed tables (not computed by the code under test).
T_975 = {1: 12.706205, 2: 4.302653, 3: 3.182446}
XSS_MODEL = "<script>alert(1)</script>"
NASTY_MESSAGE = 'weights at "/models/a&b" and \'c\' <missing>'


def metric(value, ci_low=None, ci_high=None, higher_is_better=True, note=None):
    entry = {"value": value, "ci_low": ci_low, "ci_high": ci_high, "n": 16}
    entry["higher_is_better"] = higher_is_better
    if note is not None:
        entry["note"] = note
    return entry


def make_record(model, seed=0, *, track="smoke", fid=None, auc=None, extra=None, status="ok", error=None,
                distribution=None, config=None, baseline=None):
    """A valid result record; ``fid``/``auc`` None leave that axis out (as a model lacking a capability).

    A baseline's record (``baseline``: its label) names its real model id and distribution, ``cxrbench``:
    validation checks both against the registry."""
    definition = TRACKS[track]
    metrics = {}
    if fid is not None:
        metrics["fid_domain"] = metric(fid, fid - 1.0, fid + 1.0, higher_is_better=False)
    if auc is not None:
        metrics["loc_word_auc_roc"] = metric(auc, auc - 0.02, auc + 0.01)
    metrics.update(extra or {})
    record = {
        "schema_version": SCHEMA_VERSION,
        "status": status,
        "error": error,
        "created": "2026-01-01T00:00:00Z",
        "track": {"name": definition.name, "version": definition.version, "hash": definition.hash},
        "plugin": {
            "model": model,
            "distribution": distribution or f"dist-{model}",
            "version": "1.0",
            "config": config or {},
            "capabilities": ["generate", "localize"],
        },
        "seed": seed,
        "dataset": {},
        "evaluators": {},
        "environment": {},
        "timings": {},
        "metrics": metrics if status == "ok" else {},
        "per_class": {},
        "per_sample_file": None,
    }
    if baseline is not None:
        record["plugin"]["baseline"] = baseline
    assert validation_errors(record) == []
    return record


def failed_record(model, seed, stage, message, track="smoke"):
    return make_record(model, seed, track=track, status="failed",
                       error={"stage": stage, "type": "PluginError", "message": message})


@pytest.fixture(scope="module")
def records():
    return [
        make_record("alpha", fid=10.0, auc=0.90),
        make_record("beta", fid=20.0, auc=0.95),
        make_record("gamma", fid=25.0, auc=0.80),  # dominated by alpha
        make_record("no-fid", auc=0.99, extra={"fid_domain": metric(None, None, None, False, note="no gen")}),
        make_record("no-loc", fid=5.0),
        make_record(XSS_MODEL, fid=30.0, auc=0.60, config={"path": "</script><b>x</b>"}),
        failed_record("broken", 3, "fit", NASTY_MESSAGE),
        make_record("multi", 0, track="default", fid=12.0, auc=0.80),
        make_record("multi", 1, track="default", fid=14.0, auc=0.86),
        make_record("multi", 2, track="default", fid=13.0, auc=0.83),
    ]


@pytest.fixture(scope="module")
def rendered(records, tmp_path_factory):
    out = tmp_path_factory.mktemp("leaderboard")
    paths = render_leaderboard(records, out)
    return out, paths


def markdown_rows(text: str, track: str) -> dict[str, list[str]]:
    """Cells of the leaderboard table of ``track`` in README.md, keyed by model cell (the first column)."""
    section = text.split(f"## Track `{track}`", 1)[1].split("\n## ", 1)[0]
    table_lines = [line for line in section.splitlines() if line.startswith("|")]
    header = next(i for i, line in enumerate(table_lines) if re.search(r"\|\s*rank\s*\|", line))
    rows = {}
    for line in table_lines[header + 2:]:
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 13:  # the next table (entries) has fewer columns
            break
        rows[cells[0]] = cells
    return rows


# Column positions in markdown_rows: model, rank, seeds, FID, AUC, pointing, CNR, mIoU, EOS AUC, MS-SSIM,
# cond. AUROC, pareto rank, joint score.
MODEL, RANK, SEEDS, FID, AUC = range(5)


def test_pareto_ranks_peel_successive_frontiers():
    fid = [10.0, 20.0, 25.0, 30.0, 10.0]
    auc = [0.90, 0.95, 0.80, 0.70, 0.90]
    # (25, .80) is dominated by (10, .90) only; (30, .70) by (25, .80) too; equal points do not dominate.
    assert pareto_ranks(fid, auc) == [1, 1, 2, 3, 1]


def test_joint_score_is_mean_of_min_max_normalized_axes():
    scores = joint_scores([10.0, 20.0, 25.0], [0.90, 0.95, 0.80])
    expected = [(1.0 + 0.10 / 0.15) / 2, (5 / 15 + 1.0) / 2, (0.0 + 0.0) / 2]
    assert scores == pytest.approx(expected)
    assert joint_scores([3.0, 3.0], [0.7, 0.7]) == [0.5, 0.5]


def test_dominated_entry_gets_pareto_rank_two_and_frontier_rank_one(records):
    board = build_leaderboard(records).track("smoke")
    by_model = {entry.model: entry for entry in board.entries}
    assert by_model["alpha"].pareto_rank == 1
    assert by_model["beta"].pareto_rank == 1
    assert by_model["gamma"].pareto_rank == 2
    assert by_model[XSS_MODEL].pareto_rank == 3
    # Within the frontier, the joint score breaks the tie: alpha 0.722 beats beta 0.6.
    assert [entry.model for entry in board.ranked_entries] == ["alpha", "beta", "gamma", XSS_MODEL]
    assert [entry.rank for entry in board.ranked_entries] == [1, 2, 3, 4]
    assert by_model["alpha"].joint_score == pytest.approx((1.0 + 0.30 / 0.35) / 2)


def test_entries_missing_an_axis_rank_last_and_show_dash(records, rendered):
    board = build_leaderboard(records).track("smoke")
    assert [entry.model for entry in board.entries[-2:]] == ["no-fid", "no-loc"]
    for entry in board.entries[-2:]:
        assert entry.rank is None and entry.pareto_rank is None and entry.joint_score is None
    rows = markdown_rows((rendered[0] / "README.md").read_text(encoding="utf-8"), "smoke")
    no_fid = rows["no-fid"]
    assert no_fid[RANK] == "-" and no_fid[FID] == "-"
    assert no_fid[AUC].startswith("0.990")  # the localization it has is still shown
    assert rows["no-loc"][AUC] == "-" and rows["no-loc"][-2:] == ["-", "-"]  # AUC, pareto rank, joint score
    assert rows["alpha"][RANK] == "1" and rows["gamma"][-2] == "2"


def test_seed_aggregation_mean_and_t_interval_by_hand(records):
    entry = build_leaderboard(records).track("default").entries[0]
    assert entry.seeds == (0, 1, 2) and entry.n_seeds == 3
    auc = entry.metrics["loc_word_auc_roc"]
    # values 0.80, 0.86, 0.83: mean 0.83, sd 0.03, half width t(0.975, 2) * 0.03 / sqrt(3)
    half = T_975[2] * 0.03 / math.sqrt(3)
    assert auc.mean == pytest.approx(0.83, abs=1e-12)
    assert auc.ci_low == pytest.approx(0.83 - half, abs=1e-5)
    assert auc.ci_high == pytest.approx(0.83 + half, abs=1e-5)
    assert auc.interval_kind == "t" and auc.n_values == 3
    fid = entry.metrics["fid_domain"]
    assert fid.mean == pytest.approx(13.0)
    assert fid.ci_high - fid.mean == pytest.approx(T_975[2] * 1.0 / math.sqrt(3), abs=1e-5)
    mean, low, high = seed_interval([1.0, 2.0])
    assert (mean, high - mean) == pytest.approx((1.5, T_975[1] * math.sqrt(0.5) / math.sqrt(2)), abs=1e-5)


def test_one_seed_keeps_its_bootstrap_interval(records):
    alpha = build_leaderboard(records).track("smoke").entries[0]
    auc = alpha.metrics["loc_word_auc_roc"]
    assert (auc.mean, auc.ci_low, auc.ci_high) == (0.90, 0.90 - 0.02, 0.90 + 0.01)
    assert auc.interval_kind == "bootstrap" and auc.n_values == 1


def test_seed_with_null_value_is_left_out_of_the_mean():
    records = [
        make_record("m", 0, track="default", fid=10.0, auc=0.7),
        make_record("m", 1, track="default", fid=12.0, auc=0.9),
        make_record("m", 2, track="default", fid=11.0, extra={"loc_word_auc_roc": metric(None, note="nan")}),
    ]
    auc = build_leaderboard(records).track("default").entries[0].metrics["loc_word_auc_roc"]
    assert auc.n_values == 2 and auc.mean == pytest.approx(0.8) and auc.note == "nan"
    # mean +- t(0.975, 1) * sd / sqrt(2) = 0.8 +- 1.27 leaves [0, 1] on both sides: cut to the AUC-ROC's range
    assert T_975[1] * math.sqrt(0.02) / math.sqrt(2) > 0.8
    assert (auc.ci_low, auc.ci_high, auc.cut) == (0.0, 1.0, True)


def test_duplicate_seed_is_rejected():
    with pytest.raises(ResultError, match="seed"):
        build_leaderboard([make_record("m", 0, fid=1.0, auc=0.6), make_record("m", 0, fid=2.0, auc=0.7)])


def test_tracks_in_protocol_order(records):
    assert [board.name for board in build_leaderboard(records).tracks] == ["smoke", "default"]


def test_plugin_strings_are_escaped_in_html(rendered):
    page = (rendered[0] / "index.html").read_text(encoding="utf-8")
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;/script&gt;&lt;b&gt;x&lt;/b&gt;" in page  # a config value
    assert "weights at &quot;/models/a&amp;b&quot; and &#x27;c&#x27; &lt;missing&gt;" in page
    assert page.count("<script") == 1  # only the page's own sorting script
    assert 'src="http' not in page and 'href="http' not in page and "<link" not in page
    assert "<svg" in page  # the plot is inlined


def test_plugin_strings_cannot_inject_markdown(rendered):
    readme = (rendered[0] / "README.md").read_text(encoding="utf-8")
    assert "<script>" not in readme and "&lt;script&gt;" in readme


def test_failed_runs_are_listed(records, rendered):
    failed = build_leaderboard(records).failed
    assert [(run.model, run.seed, run.stage, run.message) for run in failed] == [
        ("broken", 3, "fit", NASTY_MESSAGE)
    ]
    readme = (rendered[0] / "README.md").read_text(encoding="utf-8")
    failed_section = readme.split("## Failed runs", 1)[1]
    assert re.search(r"\| broken\s+\| smoke\s+\| 3\s+\| fit\s+\| PluginError: weights at", failed_section)
    assert "broken" not in readme.split("## Failed runs", 1)[0]  # a failed run is not an entry


def test_csv_columns_and_rows(rendered):
    rows = list(csv.reader(io.StringIO((rendered[0] / "leaderboard.csv").read_text(encoding="utf-8"))))
    headline = ["fid_domain", "kid_domain", "ms_ssim_within_prompt", "cond_auroc", "loc_word_auc_roc",
                "loc_word_pointing_game", "loc_word_cnr", "loc_word_miou_gmm", "loc_eos_auc_roc",
                "precision_domain", "recall_domain"]
    expected = ["track", "model", "baseline", "distribution", "version", "n_seeds", "pareto_rank", "joint_score"]
    expected += [f"{name}_{part}" for name in headline for part in ("mean", "ci_low", "ci_high")]
    assert rows[0] == expected
    assert len(rows) == 1 + 7  # six smoke entries and one default entry; the failed run is no row
    by_model = {row[1]: dict(zip(expected, row)) for row in rows[1:]}
    assert by_model["gamma"]["pareto_rank"] == "2" and by_model["gamma"]["fid_domain_mean"] == "25"
    assert by_model["multi"]["n_seeds"] == "3" and by_model["multi"]["loc_word_auc_roc_mean"] == "0.83"
    assert by_model["no-fid"]["fid_domain_mean"] == "" and by_model["no-fid"]["pareto_rank"] == ""


def test_render_is_byte_deterministic(records, rendered, tmp_path):
    first_dir, paths = rendered
    assert sorted(p.name for p in paths) == sorted(
        ["README.md", "index.html", "leaderboard.csv", "tradeoff.svg", "tradeoff.png"]
    )
    render_leaderboard(list(reversed(records)), tmp_path)
    for path in paths:
        assert (tmp_path / path.name).read_bytes() == path.read_bytes(), path.name
    svg = (first_dir / "tradeoff.svg").read_text(encoding="utf-8")
    assert "<dc:date>" not in svg and "2026" not in svg


@pytest.mark.slow
def test_check_leaderboard_reports_stale_files(records, tmp_path):
    smoke = records[:3]
    render_leaderboard(smoke, tmp_path)
    assert check_leaderboard(smoke, tmp_path) == []
    (tmp_path / "README.md").write_text("edited by hand\n", encoding="utf-8")
    (tmp_path / "leaderboard.csv").unlink()
    (tmp_path / "tradeoff.png").write_bytes(b"not compared")
    assert check_leaderboard(smoke, tmp_path) == ["README.md", "leaderboard.csv"]


def test_check_leaderboard_reports_every_file_when_the_records_change(rendered, records):
    stale = check_leaderboard(records[:2], rendered[0])
    assert stale == ["README.md", "index.html", "leaderboard.csv", "tradeoff.svg"]


def test_empty_records_say_no_results_yet(tmp_path):
    render_leaderboard([], tmp_path)
    assert "No results yet" in (tmp_path / "README.md").read_text(encoding="utf-8")
    assert "No results yet" in (tmp_path / "index.html").read_text(encoding="utf-8")
    assert (tmp_path / "leaderboard.csv").read_text(encoding="utf-8").count("\n") == 1
    assert (tmp_path / "tradeoff.png").read_bytes().startswith(b"\x89PNG")
    assert check_leaderboard([], tmp_path) == []


def test_track_with_only_failed_runs_renders(tmp_path):
    render_leaderboard([failed_record("broken", 0, "generate", "out of memory")], tmp_path)
    readme = (tmp_path / "README.md").read_text(encoding="utf-8")
    assert "No successful runs on this track." in readme and "out of memory" in readme


# ------------------------------------------------------------------------------------ baselines
BOX_PRIOR_LABEL = "box prior (train)"


def baseline_record(model="box-prior", seed=0, *, fid=None, auc=0.7, track="smoke"):
    record = make_record(model, seed, track=track, fid=fid, auc=auc, distribution="cxrbench", baseline=BOX_PRIOR_LABEL)
    record["plugin"]["capabilities"] = ["localize"]
    assert validation_errors(record) == []
    return record


def test_baseline_is_listed_last_under_its_label_and_never_ranked(tmp_path):
    # A baseline that would dominate every model on both axes still ranks nobody out.
    records = [make_record("alpha", fid=10.0, auc=0.90), make_record("beta", fid=20.0, auc=0.95),
               baseline_record(fid=1.0, auc=0.99), make_record("no-loc", fid=5.0)]
    board = build_leaderboard(records).track("smoke")
    assert [entry.model for entry in board.entries] == ["alpha", "beta", "no-loc", "box-prior"]
    prior = board.entries[-1]
    assert prior.baseline == BOX_PRIOR_LABEL and prior.display_name == BOX_PRIOR_LABEL
    assert (prior.rank, prior.pareto_rank, prior.joint_score) == (None, None, None)
    assert [entry.pareto_rank for entry in board.entries[:2]] == [1, 1]
    assert board.baselines == [prior] and [e.model for e in board.unranked_entries] == ["no-loc"]

    render_leaderboard(records, tmp_path)
    readme = (tmp_path / "README.md").read_text(encoding="utf-8")
    row = markdown_rows(readme, "smoke")[f"*{BOX_PRIOR_LABEL}*"]
    assert row[RANK] == "baseline" and row[AUC].startswith("0.990") and row[-2:] == ["-", "-"]
    # every table names the baseline by its label; the entries table adds its model id
    assert re.search(rf"\| \*{re.escape(BOX_PRIOR_LABEL)}\*\s+\| box-prior\s+\|", readme)
    assert "(baseline)" not in readme
    page = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert f'<tr class="baseline"><td class="model" title="model box-prior">{BOX_PRIOR_LABEL}</td>' \
           f'<td class="num" data-sort="">baseline</td>' in page
    assert page.count(f'<td class="model" title="model box-prior">{BOX_PRIOR_LABEL}</td>') == 3  # every table
    svg = (tmp_path / "tradeoff.svg").read_text(encoding="utf-8")
    assert f"baseline: {BOX_PRIOR_LABEL}" in svg
    rows = {row["model"]: row for row in csv.DictReader(io.StringIO((tmp_path / "leaderboard.csv").read_text()))}
    assert rows["box-prior"]["baseline"] == BOX_PRIOR_LABEL and rows["alpha"]["baseline"] == ""
    assert rows["box-prior"]["pareto_rank"] == ""


NEAREST_LABEL = "nearest training image"


def test_fidelity_only_baseline_shows_its_fid_and_no_localization(tmp_path):
    # nearest-report: generate only, so FID, MS-SSIM and conditional AUROC but no localization metric.
    extra = {"ms_ssim_within_prompt": metric(0.9, 0.85, 0.95, False), "cond_auroc": metric(0.8, 0.7, 0.9)}
    nearest = make_record("nearest-report", fid=3.0, extra=extra, distribution="cxrbench", baseline=NEAREST_LABEL)
    nearest["plugin"].update(baseline=NEAREST_LABEL, capabilities=["generate"])
    assert validation_errors(nearest) == []
    records = [make_record("alpha", fid=10.0, auc=0.90), make_record("beta", fid=20.0, auc=0.95),
               baseline_record(auc=0.7), nearest]
    board = build_leaderboard(records).track("smoke")
    assert [entry.model for entry in board.entries] == ["alpha", "beta", "box-prior", "nearest-report"]
    entry = board.entries[-1]
    assert entry.display_name == NEAREST_LABEL
    assert (entry.rank, entry.pareto_rank, entry.joint_score) == (None, None, None)
    # its lower FID does not rank the models out or change their joint scores
    assert [(e.pareto_rank, e.joint_score) for e in board.entries[:2]] == [(1, 0.5), (1, 0.5)]

    render_leaderboard(records, tmp_path)
    readme = (tmp_path / "README.md").read_text(encoding="utf-8")
    row = markdown_rows(readme, "smoke")[f"*{NEAREST_LABEL}*"]
    assert row[RANK] == "baseline" and row[FID] == "3.00 [2.00, 4.00]"
    assert row[4:9] == ["-"] * 5 and row[9:11] == ["0.900", "0.800"] and row[-2:] == ["-", "-"]
    assert "| nearest-report " in readme
    tokens = readme.split("Token diagnostics.", 1)[1].split("Entries:", 1)[0]
    assert NEAREST_LABEL not in tokens  # it localizes nothing
    page = (tmp_path / "index.html").read_text(encoding="utf-8")
    html_row = page.split(f'<tr class="baseline"><td class="model" title="model nearest-report">{NEAREST_LABEL}</td>'
                          '<td class="num" data-sort="">baseline</td>', 1)[1].split("</tr>", 1)[0]
    assert '<td class="num" data-sort="3" ' in html_row and '<span class="ci">[2.00, 4.00]</span>' in html_row
    svg = (tmp_path / "tradeoff.svg").read_text(encoding="utf-8")
    # FID 3 lies outside the models' range (10-20): the key says its value and where it lies
    assert f"{NEAREST_LABEL}: FID" in svg and "3.00, right of the frame" in svg and f"baseline: {BOX_PRIOR_LABEL}" in svg
    table = csv.DictReader(io.StringIO((tmp_path / "leaderboard.csv").read_text()))
    row = next(row for row in table if row["model"] == "nearest-report")
    assert row["baseline"] == NEAREST_LABEL and row["pareto_rank"] == ""
    assert row["fid_domain_mean"] == "3" and row["loc_word_auc_roc_mean"] == ""


def test_fidelity_only_baseline_is_a_vertical_line_at_its_fid_even_without_ranked_entries():
    from cxrbench.leaderboard.plot import BASELINE_COLOR, _figure

    nearest = make_record("nearest-report", fid=30.0, distribution="cxrbench", baseline=NEAREST_LABEL)
    nearest["plugin"].update(baseline=NEAREST_LABEL, capabilities=["generate"])
    entries = [make_record("alpha", fid=10.0, auc=0.90), make_record("beta", fid=45.0, auc=0.95)]
    for records in (entries + [nearest], [nearest]):
        [axes] = _figure(build_leaderboard(records).tracks).axes
        dashed = [line for line in axes.get_lines() if line.get_color() == BASELINE_COLOR]
        assert [list(line.get_xdata()) for line in dashed] == [[30.0, 30.0]]  # vertical: x fixed, y spans
        right, left = axes.get_xlim()  # reversed: lower FID to the right
        assert left < 30.0 < right, (left, right)


def test_a_baseline_fid_far_outside_the_entries_is_listed_in_the_key_and_keeps_the_entries_range():
    from cxrbench.leaderboard.plot import BASELINE_COLOR, _figure

    nearest = make_record("nearest-report", fid=2.0, distribution="cxrbench", baseline=NEAREST_LABEL)
    nearest["plugin"].update(baseline=NEAREST_LABEL, capabilities=["generate"])
    entries = [make_record("alpha", fid=100.0, auc=0.50), make_record("beta", fid=110.0, auc=0.55)]
    figure = _figure(build_leaderboard(entries + [nearest]).tracks)
    [axes] = figure.axes
    assert not [line for line in axes.get_lines() if line.get_color() == BASELINE_COLOR]
    right, left = axes.get_xlim()
    assert 2.0 < left < 100.0 < 110.0 < right, (left, right)  # not stretched down to 2
    key = [" ".join(text.get_text().split()) for legend in figure.legends for text in legend.get_texts()]
    assert [line for line in key if "FID" in line] == [f"baseline: {NEAREST_LABEL}: FID 2.00, right of the frame"]


# ---------------------------------------------------------------------------- token diagnostics
def test_token_diagnostics_table_lists_each_reported_group_with_intervals(tmp_path):
    groups = {
        "loc_eos_auc_roc": metric(0.41, 0.35, 0.47),
        "loc_eos_pointing_game": metric(0.05, 0.0, 0.1),
        "loc_word_pointing_game": metric(0.25, 0.125, 0.375),
        "loc_all_tokens_auc_roc": metric(0.55, 0.5, 0.6),
    }
    records = [make_record("alpha", fid=10.0, auc=0.90, extra=groups), baseline_record(auc=0.7),
               make_record("no-loc", fid=5.0)]
    render_leaderboard(records, tmp_path)
    readme = (tmp_path / "README.md").read_text(encoding="utf-8")
    section = readme.split("Token diagnostics.", 1)[1].split("Entries:", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    assert cells[0] == ["model", "tokens", "AUC-ROC \u2191", "pointing game \u2191"]
    assert cells[2:] == [
        ["alpha", "finding word(s)", "0.900 [0.880, 0.910]", "0.250 [0.125, 0.375]"],
        ["alpha", "EOS token", "0.410 [0.350, 0.470]", "0.050 [0.000, 0.100]"],
        ["alpha", "all prompt tokens", "0.550 [0.500, 0.600]", "-"],
        [f"*{BOX_PRIOR_LABEL}*", "finding word(s)", "0.700 [0.680, 0.710]", "-"],
    ]  # other_words is reported by nobody; no-loc has no row
    page = (tmp_path / "index.html").read_text(encoding="utf-8")
    tokens = page.split('<table class="sortable tokens">', 1)[1].split("</table>", 1)[0]
    assert tokens.count("<tr") == 1 + 4 and "EOS token" in tokens
    assert '<span class="ci">[0.350, 0.470]</span>' in tokens


def test_pages_state_the_fid_sample_sizes_of_a_track():
    from cxrbench.leaderboard.explanation import fid_sample_sizes
    from cxrbench.protocol import TRACKS

    default = TRACKS["default"]
    n_generated = default.prompts_for_generation * default.samples_per_prompt
    text = fid_sample_sizes(default)
    assert f"{default.dataset.params['n_test']} held-out real images against {n_generated} generated" in text
    assert fid_sample_sizes(TRACKS["paper"]) is None  # a real dataset's test split has no fixed size
