"""The leaderboard as one self-contained HTML page (``index.html``).

Inline CSS, a small inline script that sorts a table by the clicked column header, the trade-off plot
inlined as SVG; no external resource. Every plugin-supplied string (model names, distributions, versions,
capabilities, configurations, error messages) goes through :func:`html.escape`.
"""

from __future__ import annotations

import html
import re

from cxrbench.leaderboard.board import Entry, FailedRun, Leaderboard, TrackBoard
from cxrbench.leaderboard.columns import (
    BASELINE_RANK,
    HEADLINE_BY_NAME,
    JOINT_SCORE_DECIMALS,
    METRICS_WITH_INTERVAL_IN_CELL,
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
    GENERATED_BY,
    HOW_TO_READ,
    INTRODUCTION,
    NO_RESULTS,
    TITLE,
    TOKEN_DIAGNOSTICS,
    paragraph_to_html,
)
from cxrbench.protocol import TRACKS

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; margin: 0;
       color: #1b1f24; background: #fff; line-height: 1.45; }
main { max-width: 1240px; margin: 0 auto; padding: 1.2rem 1.5rem 3rem; }
h1 { font-size: 1.7rem; margin: 0.4rem 0 0.6rem; }
h2 { font-size: 1.3rem; margin-top: 2.2rem; border-bottom: 1px solid #d0d7de; padding-bottom: 0.2rem; }
h3 { font-size: 1.05rem; margin-top: 1.4rem; }
code { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 0.9em; background: #f3f4f6;
       padding: 0.05rem 0.25rem; border-radius: 3px; }
.muted { color: #57606a; }
figure { margin: 1rem 0; }
figure svg { max-width: 100%; height: auto; }
figcaption { color: #57606a; font-size: 0.9rem; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.88rem; margin: 0.6rem 0; }
th, td { border: 1px solid #d0d7de; padding: 0.3rem 0.5rem; vertical-align: top; }
th { background: #f6f8fa; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.model { white-space: nowrap; }
td.num .ci { color: #57606a; font-size: 0.85em; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th:hover { background: #eaeef2; }
table.sortable th[aria-sort="ascending"]::after { content: " \\25B2"; font-size: 0.7em; }
table.sortable th[aria-sort="descending"]::after { content: " \\25BC"; font-size: 0.7em; }
tr.frontier td:first-child { border-left: 3px solid #d62728; }
tr.baseline td { font-style: italic; background: #f6f8fa; }
td.message { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 0.85em;
             white-space: pre-wrap; word-break: break-word; max-width: 60rem; }
td.config { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 0.8em; word-break: break-all;
            max-width: 40rem; }
footer { margin-top: 2.5rem; color: #57606a; font-size: 0.85rem; }
"""

#: Sorts a table.sortable by the clicked header: numeric cells by data-sort, others by text; cells with
#: no value (data-sort="") stay at the bottom in either direction.
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
    headers.forEach(function (th, column) {
      th.setAttribute("tabindex", "0");
      function sort() {
        var descending = th.getAttribute("aria-sort") === "ascending";
        headers.forEach(function (other) { other.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", descending ? "descending" : "ascending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows).map(function (row, index) {
          return {row: row, index: index, key: key(row.cells[column])};
        });
        rows.sort(function (a, b) {
          if (a.key.missing || b.key.missing) { return compare(a.key, b.key) || a.index - b.index; }
          var order = compare(a.key, b.key);
          return (descending ? -order : order) || a.index - b.index;
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


def escape(text: object) -> str:
    """HTML-escape any value (quotes included), for element content and attribute values alike."""
    return html.escape(str(text), quote=True)


def inline_svg(svg: str) -> str:
    """The SVG document without its XML declaration and DOCTYPE, ready to sit inside HTML."""
    return _SVG_PROLOGUE.sub("", svg, count=1).strip()


def render_html(board: Leaderboard, tradeoff_svg: str) -> str:
    """The whole ``index.html`` text; ``tradeoff_svg`` is the plot's SVG document."""
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
        f"<p>{paragraph_to_html(INTRODUCTION)}</p>",
    ]
    if board.is_empty:
        parts.append(f"<p><strong>{paragraph_to_html(NO_RESULTS)}</strong></p>")
    else:
        parts += [
            "<figure>",
            inline_svg(tradeoff_svg),
            "<figcaption>Fidelity against localization, one panel per track. The FID axis is reversed, so "
            "the best corner is the top right. Blue: entries on the Pareto frontier, grey: dominated entries; "
            "bars: 95% intervals; red step line: the Pareto frontier; dotted: chance localization "
            "(AUC-ROC 0.5); dashed grey: baselines.</figcaption>",
            "</figure>",
            '<h2 id="how-to-read">How the ranking works</h2>',
            "<ul>",
            *(f"<li>{paragraph_to_html(paragraph)}</li>" for paragraph in HOW_TO_READ),
            "</ul>",
            "<p class=\"muted\">Click a column header to sort by it, again to reverse. A red left edge marks "
            "an entry on the Pareto frontier, a grey italic row a baseline; hover a value for its interval.</p>",
        ]
        for track in board.tracks:
            parts += _track_section(track)
        parts += _failed_section(board.failed)
    parts += [
        f"<footer>Generated by <code>{escape(GENERATED_BY)}</code>; do not edit by hand.</footer>",
        "</main>",
        f"<script>{SCRIPT}</script>",
        "</body>",
        "</html>",
        "",
    ]
    return "\n".join(parts)


def _metric_td(entry: Entry, metric: str, interval_in_cell: bool | None = None) -> str:
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
    title = f"{interval} ({kind[summary.interval_kind]})" if interval else "no interval"
    if summary.note:
        title += f"; {summary.note}"
    text = escape(format_number(summary.mean, decimals))
    if interval_in_cell is None:
        interval_in_cell = metric in METRICS_WITH_INTERVAL_IN_CELL
    if interval and interval_in_cell:
        text += f' <span class="ci">{escape(interval)}</span>'
    sort = format_csv_number(summary.mean)
    return f'<td class="num" data-sort="{sort}" title="{escape(title)}">{text}</td>'


def _number_td(value: float | int | None, text: str) -> str:
    sort = "" if value is None else format_csv_number(float(value))
    return f'<td class="num" data-sort="{sort}">{escape(text)}</td>'


def _model_td(entry: Entry) -> str:
    """The model id, or a baseline's label with the model id as its tooltip."""
    if entry.baseline is not None:
        return f'<td class="model" title="{escape(entry.model)}">{escape(entry.baseline)}</td>'
    return f'<td class="model">{escape(entry.model)}</td>'


def _rank_td(entry: Entry) -> str:
    if entry.baseline is not None:
        return f'<td class="num" data-sort="">{escape(BASELINE_RANK)}</td>'
    return _number_td(entry.rank, MISSING if entry.rank is None else str(entry.rank))


def _row_open(entry: Entry) -> str:
    if entry.baseline is not None:
        return '<tr class="baseline">'
    return '<tr class="frontier">' if entry.pareto_rank == 1 else "<tr>"


def _token_diagnostics(track: TrackBoard) -> list[str]:
    rows = [
        _row_open(entry)
        + _model_td(entry)
        + f"<td>{escape(label)}</td>"
        + "".join(_metric_td(entry, f"loc_{group}_{column.name}", interval_in_cell=True)
                  for column in TOKEN_DIAGNOSTIC_METRICS)
        + "</tr>"
        for entry in track.entries
        for group, label in token_diagnostic_rows(entry)
    ]
    if not rows:
        return []
    header_cells = ["<th>model</th>", "<th>tokens</th>"]
    header_cells += [f"<th>{escape(column.header)}</th>" for column in TOKEN_DIAGNOSTIC_METRICS]
    return [
        "<h3>Token diagnostics</h3>",
        f"<p>{paragraph_to_html(TOKEN_DIAGNOSTICS)}</p>",
        '<div class="table-wrap">',
        '<table class="sortable tokens">',
        "<thead><tr>" + "".join(header_cells) + "</tr></thead>",
        "<tbody>",
        *rows,
        "</tbody>",
        "</table>",
        "</div>",
    ]


def _track_section(track: TrackBoard) -> list[str]:
    anchor = "track-" + re.sub(r"[^A-Za-z0-9_-]", "-", track.name)
    parts = [f'<section id="{escape(anchor)}">', f"<h2>Track <code>{escape(track.name)}</code></h2>"]
    definition = TRACKS.get(track.name)
    if definition is not None:
        parts.append(f"<p>{escape(definition.description)}</p>")
    parts.append(
        f'<p class="muted">Track version {escape(", ".join(track.versions))}, hash '
        f"<code>{escape(', '.join(track.hashes))}</code>; {len(track.entries)} "
        f"entr{'y' if len(track.entries) == 1 else 'ies'}, {len(track.failed)} failed "
        f"run{'' if len(track.failed) == 1 else 's'}.</p>"
    )
    if not track.entries:
        parts += ["<p>No successful runs on this track.</p>", "</section>"]
        return parts
    header_cells = ["<th>rank</th>", "<th>model</th>", "<th>seeds</th>"]
    for metric in TABLE_METRICS:
        column = HEADLINE_BY_NAME[metric]
        header_cells.append(f'<th title="{escape(metric)}">{escape(column.header)}</th>')
    header_cells += ["<th>Pareto rank</th>", "<th>joint score</th>"]
    parts += [
        '<div class="table-wrap">',
        '<table class="sortable leaderboard">',
        "<thead><tr>" + "".join(header_cells) + "</tr></thead>",
        "<tbody>",
    ]
    for entry in track.entries:
        cells = [
            _rank_td(entry),
            _model_td(entry),
            _number_td(entry.n_seeds, str(entry.n_seeds)),
            *(_metric_td(entry, metric) for metric in TABLE_METRICS),
            _number_td(entry.pareto_rank, MISSING if entry.pareto_rank is None else str(entry.pareto_rank)),
            _number_td(entry.joint_score, format_number(entry.joint_score, JOINT_SCORE_DECIMALS)),
        ]
        parts.append(_row_open(entry) + "".join(cells) + "</tr>")
    parts += ["</tbody>", "</table>", "</div>"]
    parts += _token_diagnostics(track)
    parts += [
        "<h3>Entries</h3>",
        '<div class="table-wrap">',
        '<table class="sortable entries">',
        "<thead><tr><th>model</th><th>distribution</th><th>version</th><th>capabilities</th><th>seeds</th>"
        "<th>configuration</th></tr></thead>",
        "<tbody>",
    ]
    for entry in track.entries:
        configs = "<br>".join(escape(config) for config in entry.configs)
        parts.append(
            "<tr>"
            f"<td>{escape(entry.model)}{'' if entry.baseline is None else ' (baseline)'}</td>"
            f"<td>{escape(entry.distribution)}</td>"
            f"<td>{escape(entry.version)}</td>"
            f"<td>{escape(', '.join(entry.capabilities)) or MISSING}</td>"
            f"<td>{escape(', '.join(str(seed) for seed in entry.seeds))}</td>"
            f'<td class="config">{configs}</td>'
            "</tr>"
        )
    parts += ["</tbody>", "</table>", "</div>", "</section>"]
    return parts


def _failed_section(failed: list[FailedRun]) -> list[str]:
    parts = ['<section id="failed-runs">', "<h2>Failed runs</h2>"]
    if not failed:
        return parts + ["<p>None.</p>", "</section>"]
    parts += [
        '<div class="table-wrap">',
        '<table class="sortable failed">',
        "<thead><tr><th>track</th><th>model</th><th>seed</th><th>stage</th><th>error</th></tr></thead>",
        "<tbody>",
    ]
    for run in failed:
        parts.append(
            "<tr>"
            f"<td>{escape(run.track)}</td>"
            f"<td>{escape(run.model)}</td>"
            + _number_td(run.seed, str(run.seed))
            + f"<td>{escape(run.stage)}</td>"
            f'<td class="message">{escape(run.error_type)}: {escape(run.message)}</td>'
            "</tr>"
        )
    return parts + ["</tbody>", "</table>", "</div>", "</section>"]
