"""What the leaderboard pages show, computed once from a :class:`~cxrbench.leaderboard.board.Leaderboard`.

:func:`page_view` turns the board into plain dataclasses of already formatted text (every number through
:mod:`cxrbench.leaderboard.columns`): tracks, their tables (columns, rows of cells with their tooltips,
sort keys and links), failed runs, the reader-facing paragraphs. The markdown page (``leaderboard.md.j2``)
and the HTML page (``leaderboard.html.j2``) both render this one view, so they cannot disagree on what a
cell holds; they differ only in markup. Nothing here is escaped: the markdown renderer escapes every
plugin-supplied string explicitly, the HTML template autoescapes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cxrbench.leaderboard.board import Entry, FailedRun, Leaderboard, MetricSummary, TrackBoard
from cxrbench.leaderboard.columns import (
    BASELINE_RANK,
    GMM_SEED_COMPARISON,
    GMM_SEED_GROUP,
    HEADLINE_BY_NAME,
    JOINT_SCORE_DECIMALS,
    METRICS_WITH_INTERVAL_IN_CELL,
    MISSING,
    TABLE_METRICS,
    TOKEN_DIAGNOSTIC_METRICS,
    MetricColumn,
    format_csv_number,
    format_interval,
    format_number,
    gmm_seed_metrics,
    metric_decimals,
    token_diagnostic_rows,
)
from cxrbench.leaderboard.explanation import (
    FIGURE_CAPTION,
    GENERATED_BY,
    GMM_SEED_TEXT,
    GMM_SEED_TITLE,
    HOW_TO_READ,
    INTRODUCTION,
    PLUGIN_METRICS_TEXT,
    PLUGIN_METRICS_TITLE,
    TITLE,
    TOKEN_DIAGNOSTICS,
    fid_sample_sizes,
)
from cxrbench.leaderboard.links import PageLinks
from cxrbench.protocol import TRACKS

#: Longest error message in the short form of a failed run's cell (the markdown page); the HTML page
#: shows it in full.
MAX_MESSAGE_CHARS = 300

#: What a cell holds, which decides its markup: ``number`` (a formatted number or rank, never escaped in
#: markdown, right-aligned and sortable on the HTML page), ``name`` (an entry's name), ``code`` (an id
#: shown as code on the HTML page), ``message`` (an error message), ``config`` (configurations, one per
#: line; HTML page only) and ``text`` (any other plugin-supplied text).
CELL_KINDS = ("number", "name", "code", "message", "config", "text")

_INTERVAL_KINDS = {"bootstrap": "bootstrap 95% interval of one seed", "t": "t-interval over {n} seeds"}


@dataclass(frozen=True)
class Link:
    """``text`` linking to ``href`` (a relative URL); an empty ``href`` shows the bare text."""

    text: str
    href: str = ""


@dataclass(frozen=True)
class Cell:
    """One table cell, formatted but not escaped."""

    text: str
    kind: str = "text"
    #: The value's 95% interval, ``[low, high]``; empty when there is none.
    interval: str = ""
    #: What the markdown page shows instead of ``text`` and ``interval`` (None: both, space-separated).
    short: str | None = None
    #: Tooltip on the HTML page.
    title: str = ""
    #: Sort key on the HTML page: a number, ``""`` for a missing value (sorted last), None: sort by text.
    sort: str | None = None
    #: A baseline's name (italics on the markdown page).
    emphasis: bool = False
    #: The cell is these links, space-separated (then ``text`` is not shown).
    links: tuple[Link, ...] = ()
    #: The cell is these lines (then ``text`` is not shown).
    lines: tuple[str, ...] = ()


@dataclass(frozen=True)
class Column:
    header: str
    #: Tooltip of the header on the HTML page.
    title: str = ""
    #: ``left`` or ``right`` on the markdown page.
    align: str = "left"
    #: The header on the markdown page when it differs from ``header``.
    markdown_header: str | None = None
    #: Shown on the HTML page only (too wide for a markdown table).
    html_only: bool = False


@dataclass(frozen=True)
class Row:
    cells: tuple[Cell, ...]
    #: ``frontier`` (Pareto rank 1), ``baseline`` or empty.
    style: str = ""


@dataclass(frozen=True)
class Table:
    #: What the table lists (``leaderboard``, ``tokens``, ``entries``, ``failed``, ...): its class on the
    #: HTML page.
    name: str
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]


@dataclass(frozen=True)
class MetricNote:
    """A footnote on a metric a plugin registered: its name, the distribution that registered it and the
    plugin's description of it."""

    name: str
    source: str
    description: str


@dataclass(frozen=True)
class TableSection:
    """A titled table of a track's diagnostics part, with a paragraph that explains it and footnotes on its
    metrics."""

    title: str
    text: str
    table: Table
    notes: tuple[MetricNote, ...] = ()


@dataclass(frozen=True)
class TrackSection:
    name: str
    #: The section's id on the HTML page.
    anchor: str
    #: The protocol's description of the track (None for a track the protocol does not define).
    description: str | None
    versions: tuple[str, ...]
    hashes: str
    #: ``N entries, M failed runs``.
    counts: str
    sample_sizes: str | None
    #: Attention reports of this track.
    reports: tuple[str, ...]
    #: Accessible title of the track's trade-off figure.
    plot_title: str
    #: None when the track has no successful run (then neither has the other tables).
    ranking: Table | None
    #: Token diagnostics and the other tables about where attention looks, in page order.
    diagnostics: tuple[TableSection, ...]
    entries: Table | None


@dataclass(frozen=True)
class PageView:
    title: str
    #: The command that regenerates the pages.
    command: str
    introduction: str
    #: Attention reports and docs the pages link to.
    reports: tuple[Link, ...]
    docs: tuple[Link, ...]
    how_to_read: tuple[str, ...]
    figure_caption: str
    tracks: tuple[TrackSection, ...]
    #: None when no run failed.
    failed: Table | None
    is_empty: bool


def page_view(board: Leaderboard, links: PageLinks | None = None) -> PageView:
    """The view of ``board`` that both pages render, with ``links`` (None: no links)."""
    links = PageLinks() if links is None else links
    return PageView(
        title=TITLE,
        command=links.command or GENERATED_BY,
        introduction=INTRODUCTION,
        reports=tuple(Link(f"attention report, track {track}", href) for track, href in links.reports),
        docs=tuple(Link(label, href) for label, href in links.docs),
        how_to_read=HOW_TO_READ,
        figure_caption=FIGURE_CAPTION,
        tracks=tuple(track_section(track, links) for track in board.tracks),
        failed=failed_table(board.failed, links) if board.failed else None,
        is_empty=board.is_empty,
    )


def anchor(prefix: str, name: str) -> str:
    """An HTML id: ``prefix`` and ``name`` with every character outside ``[A-Za-z0-9_-]`` as ``-``."""
    return prefix + re.sub(r"[^A-Za-z0-9_-]", "-", name)


def plural(count: int, singular: str, plural_form: str) -> str:
    return f"{count} {singular if count == 1 else plural_form}"


def track_section(track: TrackBoard, links: PageLinks) -> TrackSection:
    definition = TRACKS.get(track.name)
    has_entries = bool(track.entries)
    return TrackSection(
        name=track.name,
        anchor=anchor("track-", track.name),
        description=None if definition is None else definition.description,
        versions=track.versions,
        hashes=", ".join(track.hashes),
        counts=f"{plural(len(track.entries), 'entry', 'entries')}, "
        f"{plural(len(track.failed), 'failed run', 'failed runs')}",
        sample_sizes=None if definition is None else fid_sample_sizes(definition),
        reports=tuple(links.reports_of(track.name)),
        plot_title=f"Trade-off plot of track {track.name}: FID (reversed) against finding-word AUC-ROC of "
        f"{len(track.ranked_entries)} ranked entries; the table below holds every value.",
        ranking=ranking_table(track) if has_entries else None,
        diagnostics=diagnostic_sections(track) if has_entries else (),
        entries=entries_table(track, links) if has_entries else None,
    )


def diagnostic_sections(track: TrackBoard) -> tuple[TableSection, ...]:
    """The tables of a track's diagnostics part that have rows, in page order: token diagnostics, the GMM
    comparison (when an entry reports a seed-pipeline variant) and metrics from plugins (when a metric has a
    source)."""
    sections = []
    tokens = token_table(track)
    if tokens.rows:
        sections.append(TableSection("Token diagnostics", TOKEN_DIAGNOSTICS, tokens))
    seed_variants = [f"loc_{GMM_SEED_GROUP}_{seed.name}" for _, seed in GMM_SEED_COMPARISON]
    if any(name in entry.metrics for entry in track.entries for name in seed_variants):
        sections.append(TableSection(GMM_SEED_TITLE, GMM_SEED_TEXT, gmm_seed_table(track)))
    plugin_metrics = plugin_metric_summaries(track)
    if plugin_metrics:
        sections.append(plugin_metrics_section(track, plugin_metrics))
    return tuple(sections)


# ------------------------------------------------------------------------------------------- cells
def metric_cell(entry: Entry, metric: str, decimals: int | None = None, *, short: bool = False) -> Cell:
    """The seed-aggregated value of ``metric`` with its interval, how it was computed as tooltip and its
    mean as sort key; ``-`` (with the metric's note, if any) when missing. ``short``: the markdown page
    shows the value without its interval."""
    summary = entry.metrics.get(metric)
    if summary is None or summary.mean is None:
        title = "" if summary is None or not summary.note else summary.note
        return Cell(MISSING, "number", title=title, sort="")
    decimals = metric_decimals(metric) if decimals is None else decimals
    interval = format_interval(summary.ci_low, summary.ci_high, decimals)
    title = "no interval"
    if interval:
        kind = _INTERVAL_KINDS[summary.interval_kind].format(n=summary.n_values)
        title = f"{interval} ({kind}" + (", cut at the metric's range)" if summary.cut else ")")
    if summary.note:
        title += f"; {summary.note}"
    text = format_number(summary.mean, decimals)
    return Cell(text, "number", interval=interval, short=text if short else None, title=title,
                sort=format_csv_number(summary.mean))


def number_cell(value: float | None, text: str) -> Cell:
    return Cell(text, "number", sort="" if value is None else format_csv_number(float(value)))


def name_cell(entry: Entry) -> Cell:
    """The entry's name: a baseline's label (emphasized, its model id as tooltip), else the model id."""
    if entry.baseline is None:
        return Cell(entry.model, "name")
    return Cell(entry.baseline, "name", title=f"model {entry.model}", emphasis=True)


def rank_cell(entry: Entry) -> Cell:
    if entry.baseline is not None:
        return Cell(BASELINE_RANK, "number", sort="")
    return number_cell(entry.rank, MISSING if entry.rank is None else str(entry.rank))


def row_style(entry: Entry) -> str:
    if entry.baseline is not None:
        return "baseline"
    return "frontier" if entry.pareto_rank == 1 else ""


# ------------------------------------------------------------------------------------------ tables
def ranking_table(track: TrackBoard) -> Table:
    columns = (
        Column("model"),
        Column("rank", align="right"),
        Column("seeds", align="right"),
        *(Column(HEADLINE_BY_NAME[metric].header, metric, "right") for metric in TABLE_METRICS),
        Column("Pareto rank", align="right", markdown_header="pareto rank"),
        Column("joint score", align="right"),
    )
    rows = tuple(
        Row(
            (
                name_cell(entry),
                rank_cell(entry),
                number_cell(entry.n_seeds, str(entry.n_seeds)),
                *(metric_cell(entry, metric, short=metric not in METRICS_WITH_INTERVAL_IN_CELL)
                  for metric in TABLE_METRICS),
                number_cell(entry.pareto_rank,
                            MISSING if entry.pareto_rank is None else str(entry.pareto_rank)),
                number_cell(entry.joint_score, format_number(entry.joint_score, JOINT_SCORE_DECIMALS)),
            ),
            row_style(entry),
        )
        for entry in track.entries
    )
    return Table("leaderboard", columns, rows)


def token_table(track: TrackBoard) -> Table:
    """One row per (entry, token group it reports): AUC-ROC and pointing game of that group's map."""
    columns = (
        Column("model"),
        Column("tokens"),
        *(Column(column.header, align="right") for column in TOKEN_DIAGNOSTIC_METRICS),
    )
    rows = tuple(
        Row(
            (
                name_cell(entry),
                Cell(label),
                *(metric_cell(entry, f"loc_{group}_{column.name}", column.decimals)
                  for column in TOKEN_DIAGNOSTIC_METRICS),
            ),
            row_style(entry),
        )
        for entry in track.entries
        for group, label in token_diagnostic_rows(entry)
    )
    return Table("tokens", columns, rows)


def gmm_seed_table(track: TrackBoard) -> Table:
    """One row per entry that reports a GMM-based metric of the finding word: cxrbench's value of each beside
    the seed pipeline's (:data:`cxrbench.leaderboard.columns.GMM_SEED_COMPARISON`)."""
    metrics = list(zip(gmm_seed_metrics(), [column for pair in GMM_SEED_COMPARISON for column in pair]))
    columns = (
        Column("model"),
        *(Column(column.header, f"{name}: {column.description}", "right") for name, column in metrics),
    )
    rows = tuple(
        Row(
            (name_cell(entry), *(metric_cell(entry, name, column.decimals) for name, column in metrics)),
            row_style(entry),
        )
        for entry in track.entries
        if any(name in entry.metrics for name in gmm_seed_metrics())
    )
    return Table("gmm-seed", columns, rows)


def plugin_metric_summaries(track: TrackBoard) -> dict[str, MetricSummary]:
    """Each metric of the track's entries that a plugin registered (its summary has a ``source``), sorted by
    name: the summary of the first entry that reports it (its direction, source and description)."""
    found: dict[str, MetricSummary] = {}
    for entry in track.entries:
        for name, summary in entry.metrics.items():
            if summary.source and name not in found:
                found[name] = summary
    return dict(sorted(found.items()))


def plugin_metrics_section(track: TrackBoard, metrics: dict[str, MetricSummary]) -> TableSection:
    """Entries x metrics from plugins: mean over seeds with its interval, the plugin's direction as arrow,
    its description as tooltip and footnote, the distribution that registered it named."""
    notes = tuple(
        MetricNote(name, summary.source or "", summary.description or "no description")
        for name, summary in metrics.items()
    )
    columns = (
        Column("model"),
        *(
            Column(MetricColumn(note.name, note.name, metrics[note.name].higher_is_better, 3).header,
                   f"{note.description} (from {note.source})", "right")
            for note in notes
        ),
    )
    rows = tuple(
        Row((name_cell(entry), *(metric_cell(entry, name) for name in metrics)), row_style(entry))
        for entry in track.entries
        if any(name in entry.metrics for name in metrics)
    )
    table = Table("plugin-metrics", columns, rows)
    return TableSection(PLUGIN_METRICS_TITLE, PLUGIN_METRICS_TEXT, table, notes)


def entries_table(track: TrackBoard, links: PageLinks) -> Table:
    """Who each entry is: model id, distribution, version, capabilities, result files, configuration."""
    headers = ("model", "model id", "distribution", "version", "capabilities", "seeds (result files)")
    columns = (*map(Column, headers), Column("configuration", html_only=True))
    rows = tuple(
        Row(
            (
                name_cell(entry),
                Cell(entry.model, "code"),
                Cell(entry.distribution),
                Cell(entry.version),
                Cell(", ".join(entry.capabilities) or MISSING),
                Cell("", links=tuple(Link(str(seed), links.result(path))
                                     for seed, path in zip(entry.seeds, entry.paths))),
                Cell("", "config", lines=entry.configs),
            ),
            row_style(entry),
        )
        for entry in track.entries
    )
    return Table("entries", columns, rows)


def failed_table(failed: list[FailedRun], links: PageLinks) -> Table:
    """Every failed run: where it stopped and why, its seed linking to its result file."""
    headers = ("model", "track", "seed (result file)", "stage", "error")
    rows = tuple(
        Row(
            (
                Cell(run.model),
                Cell(run.track),
                Cell(str(run.seed), "number", sort=str(run.seed),
                     links=(Link(str(run.seed), links.result(run.path)),)),
                Cell(run.stage),
                Cell(f"{run.error_type}: {run.message}", "message",
                     short=f"{run.error_type}: {short_message(run.message)}"),
            )
        )
        for run in failed
    )
    return Table("failed", tuple(map(Column, headers)), rows)


def short_message(message: str) -> str:
    """``message`` on one line, cut to :data:`MAX_MESSAGE_CHARS` characters (an ellipsis where cut)."""
    message = " ".join(message.split())
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 1] + "\u2026"
    return message
