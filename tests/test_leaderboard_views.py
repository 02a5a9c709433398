"""The leaderboard's view model and its templates: both pages render one view; the templates ship."""

from __future__ import annotations

import re
from fnmatch import fnmatch
from importlib import resources
from pathlib import Path

import tomllib
from test_leaderboard import XSS_MODEL, baseline_record, failed_record, make_record

from cxrbench.leaderboard import build_leaderboard
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
            td = f'data-sort="{cell.sort}" title="{cell.title}">{cell.text}<span class="ci">{cell.interval}</span>'
            assert td in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in markdown and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert XSS_MODEL not in markdown.replace("\\", "") and XSS_MODEL not in page
    assert page.count('<tr class="baseline">') == 3  # ranking, token diagnostics and entries rows
