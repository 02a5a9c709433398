"""The leaderboard as one self-contained HTML page (``index.html``).

Inline CSS, a small inline script that sorts a table by the clicked column header, one trade-off figure per
track inlined as SVG (side by side on a wide screen, stacked on a narrow one); no external resource. Links
(:mod:`cxrbench.leaderboard.links`) lead to the CSV, the markdown page, each result file, the attention
reports and the docs. Tables keep their first column (the entry's name) in view while they scroll
sideways, and every value shows its interval in the cell: nothing needs hovering. The page renders the
view the markdown page renders too (:mod:`cxrbench.leaderboard.view`) with the template
``templates/leaderboard.html.j2``, which autoescapes: every plugin-supplied string (model names,
distributions, versions, capabilities, configurations, error messages) goes through :func:`html.escape`.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from functools import cache

from jinja2 import Environment
from markupsafe import Markup

from cxrbench.leaderboard.explanation import no_results, paragraph_to_html
from cxrbench.leaderboard.templating import HTML_TEMPLATE, environment
from cxrbench.leaderboard.view import PageView, anchor

__all__ = ["SCRIPT", "STYLE", "anchor", "escape", "inline_svg", "link", "render_html"]

#: Shared by the leaderboard page and the attention report (``cxrbench.report``).
STYLE = """
*, *::before, *::after { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; margin: 0;
       color: #1b1f24; background: #fff; line-height: 1.45; font-size: 16px; }
main { max-width: 1300px; margin: 0 auto; padding: 1rem 1rem 3rem; }
h1 { font-size: 1.7rem; margin: 0.4rem 0 0.6rem; }
h2 { font-size: 1.3rem; margin-top: 2.2rem; border-bottom: 1px solid #d0d7de; padding-bottom: 0.2rem; }
h3 { font-size: 1.05rem; margin-top: 1.4rem; }
a { color: #0550ae; }
code { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 0.9em; background: #f3f4f6;
       padding: 0.05rem 0.25rem; border-radius: 3px; overflow-wrap: anywhere; }
nav ul { list-style: none; padding: 0; margin: 0.4rem 0 1rem; display: flex; flex-wrap: wrap; gap: 0.3rem 1.2rem; }
.muted { color: #57606a; }
.plots { display: flex; flex-wrap: wrap; gap: 1rem; align-items: flex-start; margin: 1rem 0 0.5rem; }
.plots figure { margin: 0; flex: 1 1 440px; max-width: 560px; }
.plots svg { width: 100%; height: auto; display: block; }
figcaption, .caption { color: #57606a; font-size: 0.9rem; }
.table-wrap { overflow-x: auto; margin: 0.6rem 0; max-width: 100%; }
table { border-collapse: separate; border-spacing: 0; font-size: 0.9rem; }
th, td { border-right: 1px solid #d0d7de; border-bottom: 1px solid #d0d7de; padding: 0.3rem 0.5rem;
         vertical-align: top; background: #fff; }
tr > :first-child { border-left: 1px solid #d0d7de; }
thead th { border-top: 1px solid #d0d7de; background: #f6f8fa; text-align: left; }
th:first-child, td:first-child { position: sticky; left: 0; z-index: 1; box-shadow: 2px 0 0 #d0d7de; }
thead th:first-child { z-index: 2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.num .ci { display: block; color: #57606a; font-size: 0.8em; }
td.model { white-space: nowrap; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th:hover, table.sortable th:focus { background: #eaeef2; }
table.sortable th[aria-sort="ascending"]::after { content: " \\25B2"; font-size: 0.7em; }
table.sortable th[aria-sort="descending"]::after { content: " \\25BC"; font-size: 0.7em; }
tr.frontier > td:first-child { box-shadow: inset 4px 0 0 #d62728, 2px 0 0 #d0d7de; }
tr.baseline > td { font-style: italic; background: #f6f8fa; }
td.message { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 0.85em;
             white-space: pre-wrap; overflow-wrap: break-word; min-width: 16rem; max-width: 60rem; }
td.config { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 0.8em;
            overflow-wrap: break-word; min-width: 14rem; max-width: 40rem; }
footer { margin-top: 2.5rem; color: #57606a; font-size: 0.85rem; }
@media (max-width: 600px) {
  h1 { font-size: 1.45rem; } main { padding: 0.75rem 0.75rem 2rem; }
  td.model { white-space: normal; min-width: 6.5rem; max-width: 8.5rem; overflow-wrap: anywhere; }
}
"""

#: Sorts a table.sortable by the clicked header: numeric cells by data-sort, others by text; cells with
#: no value (data-sort="") stay at the bottom in either direction; ties keep the leaderboard's own order
#: (for "Pareto rank": the joint score), whatever was sorted before.
SCRIPT = """
(function () {
  function key(cell) {
    var raw = cell.getAttribute("data-sort");
    if (raw === null) { return {missing: false, num: null, text: cell.textContent.trim().toLowerCase()}; }
    if (raw === "") { return {missing: true}; }
    return {missing: false, num: parseFloat(raw), text: raw};
  }
  function compare(a, b) {
    if (a.missing || b.missing) { return (a.missing ? 1 : 0) - (b.missing ? 1 : 0); }
    if (a.num !== null && b.num !== null) { return a.num - b.num; }
    return a.text < b.text ? -1 : (a.text > b.text ? 1 : 0);
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var headers = table.querySelectorAll("thead th");
    var body = table.tBodies[0];
    Array.prototype.forEach.call(body.rows, function (row, index) { row.setAttribute("data-order", index); });
    headers.forEach(function (th, column) {
      th.setAttribute("tabindex", "0");
      function sort() {
        var descending = th.getAttribute("aria-sort") === "ascending";
        headers.forEach(function (other) { other.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", descending ? "descending" : "ascending");
        var rows = Array.prototype.slice.call(body.rows).map(function (row) {
          return {row: row, order: parseInt(row.getAttribute("data-order"), 10), key: key(row.cells[column])};
        });
        rows.sort(function (a, b) {
          if (a.key.missing || b.key.missing) { return compare(a.key, b.key) || a.order - b.order; }
          var order = compare(a.key, b.key);
          return (descending ? -order : order) || a.order - b.order;
        });
        rows.forEach(function (item) { body.appendChild(item.row); });
      }
      th.addEventListener("click", sort);
      th.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") { event.preventDefault(); sort(); }
      });
    });
  });
})();
"""

_SVG_PROLOGUE = re.compile(r"\A\s*<\?xml[^>]*\?>\s*(<!DOCTYPE[^>]*>\s*)?", re.DOTALL)
_SVG_METADATA = re.compile(r"\s*<metadata>.*?</metadata>", re.DOTALL)
_SVG_IDS = re.compile(r'(\bid="|url\(#|href="#)')


def escape(text: object) -> str:
    """HTML-escape any value (quotes included), for element content and attribute values alike."""
    return html.escape(str(text), quote=True)


def inline_svg(svg: str, title: str = "", id_prefix: str = "") -> str:
    """The SVG document ready to sit inside HTML: no XML declaration, DOCTYPE or metadata; its ids (and
    references to them) prefixed with ``id_prefix`` so that several figures on one page never share an id;
    with ``title``, an image role and an accessible name."""
    svg = _SVG_METADATA.sub("", _SVG_PROLOGUE.sub("", svg, count=1), count=1).strip()
    if id_prefix:
        svg = _SVG_IDS.sub(lambda m: m.group(1) + id_prefix, svg)
    if title:
        title_id = f"{id_prefix}title"
        svg = svg.replace("<svg ", f'<svg role="img" aria-labelledby="{escape(title_id)}" ', 1)
        svg = re.sub(
            r"(<svg[^>]*>)",
            lambda m: f'{m.group(1)}<title id="{escape(title_id)}">{escape(title)}</title>',
            svg,
            count=1,
        )
    return svg


def link(href: str, text: str) -> str:
    """``<a>`` to ``href`` (already a relative URL) or the bare escaped text when there is no link."""
    return f'<a href="{escape(href)}">{escape(text)}</a>' if href else escape(text)


#: The ``class`` of a table cell on the page, by the kind of value it holds
#: (:data:`cxrbench.leaderboard.view.CELL_KINDS`).
CELL_CLASSES = {"number": "num", "name": "model", "message": "message", "config": "config"}


@cache
def _environment() -> Environment:
    template_globals = {"cell_classes": CELL_CLASSES, "no_results": no_results, "style": Markup(STYLE),
                        "script": Markup(SCRIPT)}
    filters = {"paragraph": lambda text: Markup(paragraph_to_html(text))}
    return environment(autoescape_html=True, filters=filters, template_globals=template_globals)


def render_html(view: PageView, track_svgs: Sequence[str]) -> str:
    """The whole ``index.html`` text of the page view (:func:`cxrbench.leaderboard.view.page_view`);
    ``track_svgs`` holds one SVG document per track, in view order."""
    figures = [
        Markup(inline_svg(svg, track.plot_title, anchor("plot-", track.name) + "-"))
        for track, svg in zip(view.tracks, track_svgs)
    ]
    return _environment().get_template(HTML_TEMPLATE).render(page=view, figures=figures)
