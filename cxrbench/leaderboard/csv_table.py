"""The leaderboard as CSV (``leaderboard.csv``): one row per (track, model), in leaderboard order.

Columns: ``track, model, baseline, distribution, version, n_seeds, pareto_rank, joint_score`` (``baseline``: a
baseline's label, empty for a model), then for each metric of
:data:`~cxrbench.leaderboard.columns.HEADLINE_METRICS` ``<metric>_mean, <metric>_ci_low, <metric>_ci_high``.
Missing values are empty cells; numbers carry 6 significant digits. A text cell (track, model, baseline,
distribution, version) that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading
single quote, so that a spreadsheet shows it as text instead of running it as a formula (OWASP's rule against
CSV injection), and a carriage return in it is written as a line feed (so the cell is quoted and stays one
cell); number cells are written as they are, negative ones included.
"""

from __future__ import annotations

import csv
import io

from cxrbench.leaderboard.board import Leaderboard
from cxrbench.leaderboard.columns import HEADLINE_METRICS, format_csv_number

ENTRY_COLUMNS: tuple[str, ...] = (
    "track", "model", "baseline", "distribution", "version", "n_seeds", "pareto_rank", "joint_score"
)
CSV_COLUMNS: tuple[str, ...] = ENTRY_COLUMNS + tuple(
    f"{column.name}_{part}" for column in HEADLINE_METRICS for part in ("mean", "ci_low", "ci_high")
)

#: First characters that make a spreadsheet read a cell as a formula.
FORMULA_PREFIXES: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")


def text_cell(value: object) -> str:
    """``value`` as a CSV cell a spreadsheet shows as text: quoted with ``'`` when it would start a formula.

    A carriage return becomes a line feed: the writer quotes a cell with a line feed (its line terminator)
    but not one with a lone carriage return, which would split the row for a reader.
    """
    text = str(value)
    cell = text.replace("\r\n", "\n").replace("\r", "\n")
    return "'" + cell if text.startswith(FORMULA_PREFIXES) else cell


def render_csv(board: Leaderboard) -> str:
    """The whole ``leaderboard.csv`` text (header only when there are no entries)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for entry in board.entries:
        row = [
            *map(text_cell, (entry.track, entry.model, entry.baseline or "", entry.distribution, entry.version)),
            str(entry.n_seeds),
            "" if entry.pareto_rank is None else str(entry.pareto_rank),
            format_csv_number(entry.joint_score),
        ]
        for column in HEADLINE_METRICS:
            summary = entry.metrics.get(column.name)
            if summary is None:
                row += ["", "", ""]
            else:
                row += [format_csv_number(v) for v in (summary.mean, summary.ci_low, summary.ci_high)]
        writer.writerow(row)
    return buffer.getvalue()
