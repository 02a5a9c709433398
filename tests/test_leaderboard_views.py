"""The leaderboard's view model and its templates: both pages render one view; the templates ship."""

from __future__ import annotations

import math
import re
from fnmatch import fnmatch
from importlib import resources
from pathlib import Path

import tomllib
from test_leaderboard import T_975, XSS_MODEL, baseline_record, failed_record, make_record, metric

from cxrbench.leaderboard import build_leaderboard
from cxrbench.leaderboard.explanation import GMM_SEED_TITLE, PLUGIN_METRICS_TITLE
from cxrbench.leaderboard.html_page import render_html
from cxrbench.leaderboard.markdown import render_markdown
from cxrbench.leaderboard.templating import TEMPLATE_FOLDER, TEMPLATES, environment
from cxrbench.leaderboard.view import page_view

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_templates_are_package_data_found_through_importlib_resources():
    folder = resources.files("cxrbench.leaderboard") / TEMPLATE_FOLDER
    assert sorted(item.name for item in folder.iterdir() if item.is_file()) == sorted(TEMPLATES)
    package_data = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["tool"]["setuptools"]["package-data"]
    globs = package_data["cxrbench.leaderboard"]  # what a (non-editable) wheel of the package holds
    for name in TEMPLATES:
        assert any(fnmatch(f"{TEMPLATE_FOLDER}/{name}", pattern) for pattern in globs), name
    assert sorted(environment(autoescape_html=False, filters={}).list_templates()) == sorted(TEMPLATES)


def test_html_template_autoescapes_and_the_markdown_template_does_not():
    markdown = environment(autoescape_html=False, filters={}).from_string("{{ x }}").render(x="<b>'")
    html_env = environment(autoescape_html=True, filters={})
    page = html_env.get_template("macros.html.j2").module.link_to("", "<b>'")
    assert markdown == "<b>'"
    assert str(page) == "&lt;b&gt;&#x27;"  # html.escape's entities, as the page has always written them


def test_both_pages_show_the_cells_of_one_view():
    records = [make_record("alpha", fid=10.0, auc=0.9), make_record(XSS_MODEL, fid=20.0, auc=0.95),
               baseline_record(auc=0.7), failed_record("broken", 3, "fit", "no weights")]
    view = page_view(build_leaderboard(records))
    markdown, page = render_markdown(view), render_html(view, ["<svg></svg>"])
    (track,) = view.tracks
    fid_column = [column.header for column in track.ranking.columns].index("FID (domain) \u2193")
    for row in track.ranking.rows:
        cell = row.cells[fid_column]
        if cell.text != "-":
            shown = re.escape(f"{cell.text} {cell.interval}")
            assert re.search(rf"\|\s+{shown}\s+\|", markdown)
            value = f'{cell.text}<span class="ci">{cell.interval}</span>'
            assert f'data-sort="{cell.sort}" title="{cell.title}">{value}</td>' in page
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert escaped in markdown and escaped in page
    assert XSS_MODEL not in markdown.replace("\\", "") and XSS_MODEL not in page
    assert page.count('<tr class="baseline">') == 3  # ranking, token diagnostics and entries rows


# ------------------------------------------------------------------ diagnostics: GMM seed variants, plugins
def _pages(records: list[dict]) -> tuple[str, str]:
    view = page_view(build_leaderboard(records))
    return render_markdown(view), render_html(view, ["<svg></svg>"] * len(view.tracks))


def _markdown_table(text: str, title: str) -> list[list[str]]:
    """Header and rows of the first table after the paragraph that starts with ``title``."""
    lines = text.split(f"\n{title}. ", 1)[1].split("\n\n", 2)[1].splitlines()
    return [[cell.strip() for cell in line.strip("|").split("|")] for i, line in enumerate(lines) if i != 1]


def _html_table(page: str, name: str) -> list[list[str]]:
    """Header and rows of the table of class ``name``, each cell's text (a value and its interval
    space-separated)."""
    table = page.split(f'<table class="sortable {name}">', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", table)
    cells = [re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row) for row in rows]
    return [[" ".join(re.sub(r"<[^>]+>", " ", cell).split()) for cell in row] for row in cells]


def _two_seed_cell(values: tuple[float, float], decimals: int, bounds: tuple[float, float | None]) -> str:
    """Mean and t-interval over two seeds, cut at ``bounds``, by hand (t from the printed table)."""
    mean = sum(values) / 2
    half = T_975[1] * abs(values[0] - values[1]) / math.sqrt(2) / math.sqrt(2)  # sd = |a - b| / sqrt(2)
    low, high = max(mean - half, bounds[0]), mean + half if bounds[1] is None else min(mean + half, bounds[1])
    return f"{mean:.{decimals}f} [{low:.{decimals}f}, {high:.{decimals}f}]"


GMM_SEEDS = {  # metric -> (seed 0, seed 1)
    "loc_word_iou_gmm": (0.4, 0.5),
    "loc_word_iou_gmm_seed": (0.2, 0.3),
    "loc_word_centre_distance": (0.10, 0.12),
    "loc_word_centre_distance_seed": (2.0, 6.0),  # pixels: cut at 0, not at 1
}


def test_gmm_table_sets_each_metric_beside_its_seed_pipeline_variant_on_both_pages():
    def gmm(seed):
        return {name: metric(values[seed], None, None, higher_is_better="centre" not in name)
                for name, values in GMM_SEEDS.items()}

    records = [make_record("alpha", 0, fid=10.0, auc=0.9, extra=gmm(0)),
               make_record("alpha", 1, fid=11.0, auc=0.8, extra=gmm(1)),
               make_record("beta", fid=12.0, auc=0.7, extra={"loc_word_miou_gmm": metric(0.6, 0.5, 0.7)}),
               make_record("gamma", fid=9.0, auc=0.6)]
    markdown, page = _pages(records)
    alpha = ["alpha", _two_seed_cell(GMM_SEEDS["loc_word_iou_gmm"], 3, (0.0, 1.0)),
             _two_seed_cell(GMM_SEEDS["loc_word_iou_gmm_seed"], 3, (0.0, 1.0)), "-", "-", "-", "-",
             _two_seed_cell(GMM_SEEDS["loc_word_centre_distance"], 3, (0.0, 1.0)),
             _two_seed_cell(GMM_SEEDS["loc_word_centre_distance_seed"], 1, (0.0, None))]
    beta = ["beta", "-", "-", "0.600 [0.500, 0.700]", "-", "-", "-", "-", "-"]  # gamma reports none: no row
    for table in (_markdown_table(markdown, GMM_SEED_TITLE), _html_table(page, "gmm-seed")):
        header = [cell.replace("\\", "") for cell in table[0]]
        assert header[1:3] == ["IoU (GMM) \u2191", "IoU (GMM), seed pipeline \u2191"]
        assert header[7:] == ["centre distance (image diagonals) \u2193",
                              "centre distance, seed pipeline (pixels) \u2193"]
        assert table[1:] == [alpha, beta]
    title = "loc_word_centre_distance_seed: the seed code&#x27;s distance between the centres, in pixels"
    assert f'title="{title}' in page


def test_plugin_metrics_are_listed_with_their_source_and_description_on_both_pages():
    def plugin_metric(value, higher_is_better, description):
        entry = metric(value, value - 0.1, value + 0.1, higher_is_better)
        return {**entry, "source": "cxrbench-example-metric", "description": description}

    extra = {"example_score": plugin_metric(0.4, True, "share of <odd> maps"),
             "example_error": plugin_metric(2.5, False, "pixels off"),
             "loc_word_cnr": metric(1.5, 1.0, 2.0)}  # built-in: no source, no column
    records = [make_record("alpha", fid=10.0, auc=0.9, extra=extra), make_record("beta", fid=12.0, auc=0.7)]
    markdown, page = _pages(records)
    for table in (_markdown_table(markdown, PLUGIN_METRICS_TITLE), _html_table(page, "plugin-metrics")):
        header = [cell.replace("\\", "") for cell in table[0]]
        assert header == ["model", "example_error \u2193", "example_score \u2191"]
        # beta reports no plugin metric: no row
        assert table[1:] == [["alpha", "2.500 [2.400, 2.600]", "0.400 [0.300, 0.500]"]]
    assert "- `example_score` (from `cxrbench-example-metric`): share of &lt;odd&gt; maps" in markdown
    source = "(from <code>cxrbench-example-metric</code>)"
    assert f"<li><code>example_score</code> {source}: share of &lt;odd&gt; maps</li>" in page
    assert 'title="pixels off (from cxrbench-example-metric)">example_error \u2193</th>' in page


def test_gmm_and_plugin_tables_are_absent_without_seed_variants_or_sources():
    extra = {"loc_word_iou_gmm": metric(0.4, 0.3, 0.5), "loc_eos_auc_roc": metric(0.4, 0.3, 0.5),
             "loc_word_centre_distance": metric(0.1, 0.0, 0.2, higher_is_better=False)}
    markdown, page = _pages([make_record("alpha", fid=10.0, auc=0.9, extra=extra)])
    for text in (markdown, page):
        assert "Token diagnostics" in text
        assert GMM_SEED_TITLE not in text and PLUGIN_METRICS_TITLE not in text
    assert "gmm-seed" not in page and "plugin-metrics" not in page
