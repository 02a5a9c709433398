"""What the leaderboard's pages link to, as paths relative to the folder the pages are written to.

- the other files of the leaderboard (``README.md``, ``index.html``, ``leaderboard.csv``);
- each result file (the path a record was loaded from, ``_path``), so every number leads to its source;
- attention reports (``--report DIR``: a folder ``cxrbench report`` wrote, whose ``report.json`` names its
  track);
- the project's docs, when the pages are written inside a cxrbench checkout (the nearest folder above them
  that holds ``pyproject.toml`` and ``docs/leaderboard.md``); elsewhere the pages name the docs without a
  link.

Every link is relative, so the pages work wherever the checkout lies and CI regenerates the same bytes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from cxrbench.errors import ResultError

#: Docs linked from the pages: (label, path in the checkout).
DOCS: tuple[tuple[str, str], ...] = (
    ("how the leaderboard works", "docs/leaderboard.md"),
    ("metrics", "docs/metrics.md"),
    ("README", "README.md"),
    ("contributing a model", "CONTRIBUTING.md"),
)
REPORT_MANIFEST = "report.json"


@dataclass(frozen=True)
class PageLinks:
    """Links of one folder's pages; every href is relative to that folder (empty: no link)."""

    #: The command that regenerates the pages (None: the pages name the command without arguments).
    command: str | None = None
    docs: tuple[tuple[str, str], ...] = ()
    #: (track, href of the report's index.html).
    reports: tuple[tuple[str, str], ...] = ()
    #: A record's ``_path`` -> href of that result file.
    results: dict[str, str] = field(default_factory=dict)

    def result(self, path: str | None) -> str:
        return self.results.get(path, "") if path else ""

    def reports_of(self, track: str) -> list[str]:
        return [href for name, href in self.reports if name == track]


def href(target: Path, folder: Path) -> str:
    """``target`` relative to ``folder``, as a URL path (``/`` separators, special characters quoted)."""
    return quote(Path(os.path.relpath(Path(target).resolve(), Path(folder).resolve())).as_posix())


def checkout_root(folder: Path) -> Path | None:
    """The cxrbench checkout that holds ``folder`` (a folder with pyproject.toml and docs/leaderboard.md)."""
    for candidate in (Path(folder).resolve(), *Path(folder).resolve().parents):
        if (candidate / "pyproject.toml").is_file() and (candidate / "docs" / "leaderboard.md").is_file():
            return candidate
    return None


def docs_links(folder: Path) -> tuple[tuple[str, str], ...]:
    """(label, href) of each doc in :data:`DOCS`, when ``folder`` lies in a checkout that has it."""
    root = checkout_root(folder)
    if root is None:
        return ()
    return tuple((label, href(root / path, folder)) for label, path in DOCS if (root / path).is_file())


def report_track(report_dir: Path) -> str:
    """The track of the report in ``report_dir`` (from its ``report.json``)."""
    manifest = Path(report_dir) / REPORT_MANIFEST
    try:
        return str(json.loads(manifest.read_text(encoding="utf-8"))["track"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ResultError(
            f"{report_dir}: not a report folder written by `cxrbench report` ({REPORT_MANIFEST}: {exc})"
        ) from None


def page_links(
    out_dir: Path,
    records: Iterable[dict[str, Any]],
    command: str | None = None,
    report_dirs: Sequence[Path] = (),
) -> PageLinks:
    """The links of the leaderboard pages written to ``out_dir``."""
    results = {str(r["_path"]): href(Path(r["_path"]), out_dir) for r in records if r.get("_path")}
    reports = tuple((report_track(d), href(Path(d) / "index.html", out_dir)) for d in report_dirs)
    return PageLinks(command=command, docs=docs_links(out_dir), reports=reports, results=results)
