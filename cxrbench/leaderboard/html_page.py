"""The leaderboard as one self-contained HTML page (``index.html``).

Inline CSS, a small inline script that sorts a table by the clicked column header, one trade-off figure per
track inlined as SVG (side by side on a wide screen, stacked on a narrow one); no external resource. Links
(:mod:`cxrbench.leaderboard.links`) lead to the CSV, the markdown page, each result file, the attention
reports and the docs. Tables keep their first column (the entry's name) in view while they scroll
sideways, and every value shows its interval in the cell: nothing needs hovering. Every plugin-supplied
string (model names, distributions, versions, capabilities, configurations, error messages) goes through
:func:`html.escape`.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

from cxrbench.leaderboard.board import Entry, FailedRun, Leaderboard, TrackBoard
from cxrbench.leaderboard.columns import (
    BASELINE_RANK,
    HEADLINE_BY_NAME,
    JOINT_SCORE_DECIMALS,
    MISSING,
    TABLE_METRICS,
    TOKEN_DIAGNOSTIC_METRICS,
    format_csv_number,
    format_interval,
    format_number,
    metric_decimals,
    token_diagnostic_rows,
)
from cxrbench.leaderboard.explanation import (
    FIGURE_CAPTION,
    GENERATED_BY,
    HOW_TO_READ,
    INTRODUCTION,
    TITLE,
    TOKEN_DIAGNOSTICS,
    fid_sample_sizes,
    no_results,
    paragraph_to_html,
)
from cxrbench.leaderboard.links import PageLinks
from cxrbench.protocol import TRACKS

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


def anchor(prefix: str, name: str) -> str:
    return prefix + re.sub(r"[^A-Za-z0-9_-]", "-", name)


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


def render_html(board: Leaderboard, track_svgs: Sequence[str], links: PageLinks = PageLinks()) -> str:
    """The whole ``index.html`` text; ``track_svgs`` holds one SVG document per track, in board order."""
    command = links.command or GENERATED_BY
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(TITLE)}</title>",
        f"<style>{STYLE}</style>",
        "</head>",
        "<body>",
        "<main>",
        f"<h1>{escape(TITLE)}</h1>",
        *_nav(board, links),
        f"<p>{paragraph_to_html(INTRODUCTION)}</p>",
    ]
    if board.is_empty:
        parts.append(f"<p><strong>{paragraph_to_html(no_results(command))}</strong></p>")
    else:
        parts += _figures(board, track_svgs)
        parts += ['<h2 id="how-to-read">How the ranking works</h2>', "<ul>"]
        parts += [f"<li>{paragraph_to_html(paragraph)}</li>" for paragraph in HOW_TO_READ]
        parts += [
            "</ul>",
            '<p class="muted">Click a column header to sort by it, again to reverse; ties keep '
            "the leaderboard's order. A red left edge marks an entry on the Pareto frontier, a grey "
            "italic row a baseline. Each value has its 95% interval under it.</p>",
        ]
        for track in board.tracks:
            parts += _track_section(track, links)
        parts += _failed_section(board.failed, links)
    parts += [
        f"<footer>Generated by <code>{escape(command)}</code>; do not edit by hand.</footer>",
        "</main>",
        f"<script>{SCRIPT}</script>",
        "</body>",
        "</html>",
        "",
    ]
    return "\n".join(parts)


def _nav(board: Leaderboard, links: PageLinks) -> list[str]:
    items = [
        link("leaderboard.csv", "leaderboard.csv (every metric and interval)"),
        link("README.md", "README.md (this page in markdown)"),
    ]
    items += [link(href, f"attention report, track {track}") for track, href in links.reports]
    items += [link(href, label) for label, href in links.docs]
    return ['<nav aria-label="files and docs"><ul>', *(f"<li>{item}</li>" for item in items), "</ul></nav>"]


def _figures(board: Leaderboard, track_svgs: Sequence[str]) -> list[str]:
    parts = ['<div class="plots">']
    for track, svg in zip(board.tracks, track_svgs):
        title = (
            f"Trade-off plot of track {track.name}: FID (reversed) against finding-word AUC-ROC of "
            f"{len(track.ranked_entries)} ranked entries; the table below holds every value."
        )
        parts += ["<figure>", inline_svg(svg, title, anchor("plot-", track.name) + "-"), "</figure>"]
    return parts + ["</div>", f'<p class="caption">{escape(FIGURE_CAPTION)}</p>']


def _metric_td(entry: Entry, metric: str) -> str:
    summary = entry.metrics.get(metric)
    if summary is None or summary.mean is None:
        title = "" if summary is None or not summary.note else f' title="{escape(summary.note)}"'
        return f'<td class="num" data-sort=""{title}>{MISSING}</td>'
    decimals = metric_decimals(metric)
    interval = format_interval(summary.ci_low, summary.ci_high, decimals)
    kind = {
        "bootstrap": "bootstrap 95% interval of one seed",
        "t": f"t-interval over {summary.n_values} seeds",
    }
    title = f"{interval} ({kind[summary.interval_kind]}" if interval else "no interval"
    if interval:
        title += ", cut at the metric's range)" if summary.cut else ")"
    if summary.note:
        title += f"; {summary.note}"
    text = escape(format_number(summary.mean, decimals))
    if interval:
        text += f'<span class="ci">{escape(interval)}</span>'
    return (
        f'<td class="num" data-sort="{format_csv_number(summary.mean)}" title="{escape(title)}">{text}</td>'
    )


def _number_td(value: float | int | None, text: str) -> str:
    sort = "" if value is None else format_csv_number(float(value))
    return f'<td class="num" data-sort="{sort}">{escape(text)}</td>'


def _model_td(entry: Entry) -> str:
    """The entry's name (a baseline's label, with its model id as tooltip)."""
    title = "" if entry.baseline is None else f' title="model {escape(entry.model)}"'
    return f'<td class="model"{title}>{escape(entry.display_name)}</td>'


def _rank_td(entry: Entry) -> str:
    if entry.baseline is not None:
        return f'<td class="num" data-sort="">{escape(BASELINE_RANK)}</td>'
    return _number_td(entry.rank, MISSING if entry.rank is None else str(entry.rank))


def _row_open(entry: Entry) -> str:
    if entry.baseline is not None:
        return '<tr class="baseline">'
    return '<tr class="frontier">' if entry.pareto_rank == 1 else "<tr>"


def _table(css: str, headers: Sequence[str], rows: Sequence[str]) -> list[str]:
    """A sortable table; ``headers`` are complete ``<th>`` elements, ``rows`` complete ``<tr>`` elements."""
    return [
        '<div class="table-wrap">',
        f'<table class="sortable {css}">',
        "<thead><tr>" + "".join(headers) + "</tr></thead>",
        "<tbody>",
        *rows,
        "</tbody>",
        "</table>",
        "</div>",
    ]


def _th(text: str, title: str = "") -> str:
    return f'<th title="{escape(title)}">{escape(text)}</th>' if title else f"<th>{escape(text)}</th>"


def _ranking_table(track: TrackBoard) -> list[str]:
    headers = [_th("model"), _th("rank"), _th("seeds")]
    headers += [_th(HEADLINE_BY_NAME[metric].header, metric) for metric in TABLE_METRICS]
    headers += [_th("Pareto rank"), _th("joint score")]
    rows = [
        _row_open(entry)
        + _model_td(entry)
        + _rank_td(entry)
        + _number_td(entry.n_seeds, str(entry.n_seeds))
        + "".join(_metric_td(entry, metric) for metric in TABLE_METRICS)
        + _number_td(entry.pareto_rank, MISSING if entry.pareto_rank is None else str(entry.pareto_rank))
        + _number_td(entry.joint_score, format_number(entry.joint_score, JOINT_SCORE_DECIMALS))
        + "</tr>"
        for entry in track.entries
    ]
    return _table("leaderboard", headers, rows)


def _token_diagnostics(track: TrackBoard) -> list[str]:
    rows = [
        _row_open(entry)
        + _model_td(entry)
        + f"<td>{escape(label)}</td>"
        + "".join(_metric_td(entry, f"loc_{group}_{column.name}") for column in TOKEN_DIAGNOSTIC_METRICS)
        + "</tr>"
        for entry in track.entries
        for group, label in token_diagnostic_rows(entry)
    ]
    if not rows:
        return []
    headers = [_th("model"), _th("tokens"), *(_th(column.header) for column in TOKEN_DIAGNOSTIC_METRICS)]
    return [
        "<h3>Token diagnostics</h3>",
        f"<p>{paragraph_to_html(TOKEN_DIAGNOSTICS)}</p>",
        *_table("tokens", headers, rows),
    ]


def _seed_links(entry: Entry, links: PageLinks) -> str:
    return " ".join(link(links.result(path), str(seed)) for seed, path in zip(entry.seeds, entry.paths))


def _entries_table(track: TrackBoard, links: PageLinks) -> list[str]:
    rows = [
        _row_open(entry) + _model_td(entry) + f"<td><code>{escape(entry.model)}</code></td>"
        f"<td>{escape(entry.distribution)}</td><td>{escape(entry.version)}</td>"
        f"<td>{escape(', '.join(entry.capabilities)) or MISSING}</td><td>{_seed_links(entry, links)}</td>"
        f'<td class="config">{"<br>".join(escape(config) for config in entry.configs)}</td></tr>'
        for entry in track.entries
    ]
    headers = [
        _th(text)
        for text in (
            "model",
            "model id",
            "distribution",
            "version",
            "capabilities",
            "seeds (result files)",
            "configuration",
        )
    ]
    return ["<h3>Entries</h3>", *_table("entries", headers, rows)]


def _track_section(track: TrackBoard, links: PageLinks) -> list[str]:
    parts = [
        f'<section id="{escape(anchor("track-", track.name))}">',
        f"<h2>Track <code>{escape(track.name)}</code></h2>",
    ]
    definition = TRACKS.get(track.name)
    if definition is not None:
        parts.append(f"<p>{escape(definition.description)}</p>")
    n_entries, n_failed = len(track.entries), len(track.failed)
    parts.append(
        f'<p class="muted">Track version {escape(", ".join(track.versions))}, hash '
        f"<code>{escape(', '.join(track.hashes))}</code>; {n_entries} entr{'y' if n_entries == 1 else 'ies'}, "
        f"{n_failed} failed run{'' if n_failed == 1 else 's'}.</p>"
    )
    sizes = None if definition is None else fid_sample_sizes(definition)
    if sizes:
        parts.append(f'<p class="muted">{escape(sizes)}</p>')
    parts += [
        f"<p>{link(href, f'Attention report of track {track.name}')}: where each model's finding word "
        "and end-of-text token look, per class.</p>"
        for href in links.reports_of(track.name)
    ]
    if not track.entries:
        return parts + ["<p>No successful runs on this track.</p>", "</section>"]
    return (
        parts
        + _ranking_table(track)
        + _token_diagnostics(track)
        + _entries_table(track, links)
        + ["</section>"]
    )


def _failed_section(failed: list[FailedRun], links: PageLinks) -> list[str]:
    parts = ['<section id="failed-runs">', "<h2>Failed runs</h2>"]
    if not failed:
        return parts + ["<p>None.</p>", "</section>"]
    rows = [
        f"<tr><td>{escape(run.model)}</td><td>{escape(run.track)}</td>"
        f'<td class="num" data-sort="{run.seed}">{link(links.result(run.path), str(run.seed))}</td>'
        f'<td>{escape(run.stage)}</td><td class="message">{escape(run.error_type)}: {escape(run.message)}</td></tr>'
        for run in failed
    ]
    headers = [_th(text) for text in ("model", "track", "seed (result file)", "stage", "error")]
    return parts + _table("failed", headers, rows) + ["</section>"]
