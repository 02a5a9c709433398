"""Writing the leaderboard files and checking that committed ones are up to date.

Files (all byte-deterministic for the same records and library versions; no timestamps):
``README.md`` (markdown), ``index.html`` (self-contained page), ``leaderboard.csv``, ``tradeoff.svg`` and
``tradeoff.png`` (the trade-off plot).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from cxrbench.leaderboard.board import build_leaderboard
from cxrbench.leaderboard.csv_table import render_csv
from cxrbench.leaderboard.html_page import render_html
from cxrbench.leaderboard.links import PageLinks, page_links
from cxrbench.leaderboard.markdown import render_markdown
from cxrbench.leaderboard.plot import render_track_svgs, render_tradeoff
from cxrbench.leaderboard.view import page_view
from cxrbench.results import atomic_write_bytes

MARKDOWN_FILE = "README.md"
HTML_FILE = "index.html"
CSV_FILE = "leaderboard.csv"
SVG_FILE = "tradeoff.svg"
PNG_FILE = "tradeoff.png"
#: Files rendered, in this order.
OUTPUT_FILES: tuple[str, ...] = (MARKDOWN_FILE, HTML_FILE, CSV_FILE, SVG_FILE, PNG_FILE)
#: Files :func:`check_leaderboard` compares byte for byte (the PNG is not: rasterization may differ
#: between FreeType builds even with the same matplotlib).
CHECKED_FILES: tuple[str, ...] = (MARKDOWN_FILE, HTML_FILE, CSV_FILE, SVG_FILE)


def leaderboard_files(records: Iterable[dict[str, Any]], links: PageLinks = PageLinks()) -> dict[str, bytes]:
    """The content of every output file, by file name, rendered from ``records`` with ``links``."""
    board = build_leaderboard(records)
    svg, png = render_tradeoff(board)
    view = page_view(board, links)
    return {
        MARKDOWN_FILE: render_markdown(view).encode("utf-8"),
        HTML_FILE: render_html(view, render_track_svgs(board)).encode("utf-8"),
        CSV_FILE: render_csv(board).encode("utf-8"),
        SVG_FILE: svg,
        PNG_FILE: png,
    }


def render_leaderboard(records: Iterable[dict[str, Any]], out_dir: Path, *, command: str | None = None,
                       report_dirs: Sequence[Path] = ()) -> list[Path]:
    """Render the leaderboard of ``records`` into ``out_dir`` (created if needed); return the paths written.

    Writes ``README.md``, ``index.html``, ``leaderboard.csv``, ``tradeoff.svg`` and ``tradeoff.png``, each
    atomically. Empty ``records`` give pages that say there are no results yet. ``command`` is the command
    line the pages name as their source; ``report_dirs`` are attention reports to link to. Links are
    relative to ``out_dir`` (:func:`cxrbench.leaderboard.links.page_links`).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    records = list(records)
    written = []
    for name, content in leaderboard_files(records, page_links(out_dir, records, command, report_dirs)).items():
        path = out_dir / name
        atomic_write_bytes(path, content)
        written.append(path)
    return written


def check_leaderboard(records: Iterable[dict[str, Any]], out_dir: Path, *, command: str | None = None,
                      report_dirs: Sequence[Path] = ()) -> list[str]:
    """Names among ``CHECKED_FILES`` whose content in ``out_dir`` differs from a fresh render, or is missing.

    The leaderboard is rendered in memory, with the links it would have in ``out_dir``, and compared byte for
    byte. ``tradeoff.png`` is rendered but not compared, since rasterization may differ across FreeType
    builds. Empty list: up to date.
    """
    out_dir = Path(out_dir)
    records = list(records)
    fresh = leaderboard_files(records, page_links(out_dir, records, command, report_dirs))
    return [name for name in CHECKED_FILES
            if not (out_dir / name).is_file() or (out_dir / name).read_bytes() != fresh[name]]
