"""Attention overlay reports: where each model's finding word and end-of-text token look, per class.

Every run keeps the maps of a fixed set of report queries beside its result (``<stem>.maps.npz``, written
by ``cxrbench.artifacts.save_report_maps``: the first ``REPORT_QUERIES_PER_CLASS`` test queries of every
class, in test order, so every model and seed of a track shows the same images). ``cxrbench report
RESULT.json ...`` turns them into one PNG per (class, test image) and an ``index.html``: the image with its
ground-truth box and phrase, then, per result, the finding-word map and the EOS map over the image with
the same box. Each PNG is narrow (three tiles wide) and drawn at 150 dpi, so its labels stay legible on a
phone; the page links to each result file, the leaderboard and the docs.
"""

from __future__ import annotations

import io
import json
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cxrbench.artifacts import REPORT_GROUPS, maps_path_for
from cxrbench.data.schema import FINDING_CLASSES, Box, Sample
from cxrbench.errors import ResultError
from cxrbench.plan import load_track_data
from cxrbench.protocol import get_track
from cxrbench.registry import get_registry
from cxrbench.results import atomic_write_bytes, atomic_write_text, load_result

@dataclass
class ReportMaps:
    """The report maps of one result: which model, which queries, and the maps per token group."""

    model: str
    track: str
    seed: int
    sample_ids: list[str]
    labels: list[str]
    maps: dict[str, np.ndarray]

    @property
    def title(self) -> str:
        return f"{self.model} (seed {self.seed})"


def load_report_maps(result_path: Path) -> ReportMaps:
    """Read a result file and its maps file; errors name the file and the problem."""
    try:
        record = json.loads(Path(result_path).read_text())
    except (OSError, ValueError) as exc:
        raise ResultError(f"{result_path}: cannot read the result: {exc}") from None
    maps_path = maps_path_for(Path(result_path))
    if not maps_path.exists():
        raise ResultError(f"{result_path}: no attention maps beside it ({maps_path.name} is missing); rerun the "
                          "model with `cxrbench run` to produce them")
    try:
        with np.load(maps_path) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise ResultError(f"{maps_path}: cannot read the maps: {exc}") from None
    model = record.get("plugin", {}).get("model", "?")
    maps = {g: arrays[g].astype(np.float32) for g in REPORT_GROUPS if g in arrays}
    return ReportMaps(model, record.get("track", {}).get("name", "?"), int(record.get("seed", 0)),
                      [str(x) for x in arrays.get("sample_ids", [])], [str(x) for x in arrays.get("labels", [])],
                      maps)


def _normalized(heatmap: np.ndarray) -> np.ndarray:
    lo, hi = float(np.min(heatmap)), float(np.max(heatmap))
    return (heatmap - lo) / (hi - lo) if hi > lo else np.zeros_like(heatmap)


def _draw_boxes(ax: Any, boxes: Sequence[Box], colour: str = "#00ff66") -> None:
    from matplotlib.patches import Rectangle  # lazy, as all of matplotlib and PIL here: only drawing needs them

    for b in boxes:
        ax.add_patch(Rectangle((b.x - 0.5, b.y - 0.5), b.w, b.h, fill=False, edgecolor=colour, linewidth=1.5))


#: Figure geometry of one test image's PNG, in inches (the page shows 100 CSS px per inch), and its dpi.
TILE_IN, LABEL_COLUMN_IN, COLUMN_TITLE_IN, ROW_GAP_IN, EDGE_IN = 1.2, 1.55, 0.42, 0.08, 0.08
REPORT_DPI = 150
LABEL_PT, TITLE_PT, PHRASE_PT = 9.5, 9.5, 9.0


def figure_size(n_runs: int, n_groups: int) -> tuple[float, float]:
    """(width, height) in inches of a sample figure with ``n_runs`` rows of ``n_groups`` maps."""
    width = 2 * EDGE_IN + LABEL_COLUMN_IN + max(2, n_groups) * TILE_IN
    height = 2 * EDGE_IN + TILE_IN + COLUMN_TITLE_IN + n_runs * (TILE_IN + ROW_GAP_IN)
    return width, height


def sample_figure(sample: Sample, label: str, runs: Sequence[ReportMaps], groups: Sequence[str], path: Path,
                  dpi: int = REPORT_DPI) -> Path:
    """One PNG for one test image and finding: the image with its box and phrase on top, then a row per run
    with its title and its map of each token group over the image (many runs grow it downwards; it is
    narrow enough for a phone)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # lazy: see _draw_boxes
    from matplotlib.figure import Figure

    width, height = figure_size(len(runs), len(groups))
    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    finding = next(f for f in sample.findings if f.label == label)

    def tile(row_top: float, column: int) -> Any:
        left = EDGE_IN + LABEL_COLUMN_IN + column * TILE_IN + 0.04
        ax = fig.add_axes(((left) / width, (height - row_top - TILE_IN + 0.04) / height,
                           (TILE_IN - 0.08) / width, (TILE_IN - 0.08) / height))
        ax.set_axis_off()
        return ax

    def row_label(row_top: float, text: str, seed: int | None = None) -> None:
        lines = _wrap(text, 17) + ([] if seed is None else [f"(seed {seed})"])
        fig.text(EDGE_IN / width, (height - row_top - TILE_IN / 2) / height, "\n".join(lines),
                 ha="left", va="center", fontsize=LABEL_PT)

    row_label(EDGE_IN, "test image and its box (green)")
    ax = tile(EDGE_IN, 0)
    ax.imshow(sample.image, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    _draw_boxes(ax, finding.boxes)
    phrase = tile(EDGE_IN, 1)
    phrase.text(0.0, 0.5, "\n".join(_wrap(f"\u201c{finding.phrase}\u201d", 18)[:6]), ha="left", va="center",
                fontsize=PHRASE_PT, transform=phrase.transAxes, style="italic")
    top = EDGE_IN + TILE_IN + COLUMN_TITLE_IN
    for j, group in enumerate(groups):
        fig.text((EDGE_IN + LABEL_COLUMN_IN + (j + 0.5) * TILE_IN) / width, (height - top + 0.06) / height,
                 REPORT_GROUPS[group], ha="center", va="bottom", fontsize=TITLE_PT, fontweight="bold")
    for k, run in enumerate(runs):
        row_top = top + k * (TILE_IN + ROW_GAP_IN)
        row_label(row_top, run.model, run.seed)
        index = next((i for i, (sid, lab) in enumerate(zip(run.sample_ids, run.labels))
                      if sid == sample.id and lab == label), None)
        for j, group in enumerate(groups):
            _map_tile(tile(row_top, j), sample, finding.boxes, run, group, index)
    atomic_write_bytes(path, _palette_png(fig, dpi))
    return path


def _palette_png(fig: Any, dpi: int) -> bytes:
    """The figure as a 256-colour PNG (a third of the bytes of true colour; maps and text look the same)."""
    from PIL import Image  # lazy: see _draw_boxes

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    with Image.open(io.BytesIO(buffer.getvalue())) as image:
        palette = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    out = io.BytesIO()
    palette.save(out, format="PNG", optimize=True)
    return out.getvalue()


def _map_tile(ax: Any, sample: Sample, boxes: Sequence[Box], run: ReportMaps, group: str, index: int | None) -> None:
    if index is None or group not in run.maps:
        ax.text(0.5, 0.5, "no map", ha="center", va="center", fontsize=LABEL_PT, transform=ax.transAxes)
        return
    ax.imshow(sample.image, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.imshow(_normalized(run.maps[group][index]), cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0,
              interpolation="bilinear")
    _draw_boxes(ax, boxes)


def _wrap(text: str, width: int) -> list[str]:
    return textwrap.wrap(text, width, break_on_hyphens=True) or [""]


def can_localize(result_path: Path) -> bool:
    """Whether the result's model has the ``localize`` capability (a generate-only baseline has no maps)."""
    return "localize" in load_result(result_path)["plugin"].get("capabilities", [])


def write_report(result_paths: Sequence[Path], out_dir: Path, test: Sequence[Sample] | None = None,
                 on_skip: Callable[[Path], None] | None = None, leaderboard_dir: Path | None = None) -> Path:
    """Write ``out_dir/index.html``, one ``<class>_<n>.png`` per (class, test image) and ``report.json``.

    Results of models that cannot localize are left out (``on_skip`` is called with each). All results
    must be of one track; ``test`` (the track's test split) is built from the registry when not given.
    The page links to each result file, to the leaderboard in ``leaderboard_dir`` (when given) and to the
    docs, all relative to ``out_dir``. Returns the path of the HTML page.
    """
    if not result_paths:
        raise ResultError("report needs at least one result file")
    kept = []
    for path in map(Path, result_paths):
        if can_localize(path):
            kept.append(path)
        elif on_skip is not None:
            on_skip(path)
    if not kept:
        raise ResultError("none of the results is of a model that localizes; there are no maps to draw")
    runs = [load_report_maps(p) for p in kept]
    tracks = sorted({r.track for r in runs})
    if len(tracks) != 1:
        raise ResultError(f"results must all be of one track, but got tracks {tracks}")
    if test is None:
        test = load_track_data(get_track(tracks[0]), get_registry()).test
    out_dir.mkdir(parents=True, exist_ok=True)
    sections = _draw_classes(runs, {s.id: s for s in test}, out_dir)
    # lazy, as matplotlib below: the cxrbench.leaderboard package imports matplotlib and scipy
    from cxrbench.leaderboard.links import REPORT_MANIFEST, docs_links, href

    results = [(run, href(path, out_dir)) for run, path in zip(runs, kept)]
    board = href(leaderboard_dir / "index.html", out_dir) if leaderboard_dir is not None else ""
    index = out_dir / "index.html"
    atomic_write_text(index, report_page(tracks[0], results, sections, board, docs_links(out_dir)))
    manifest = {"track": tracks[0], "results": [link for _, link in results]}
    atomic_write_text(out_dir / REPORT_MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return index


@dataclass(frozen=True)
class ReportImage:
    """One drawn PNG: its file name, size in CSS pixels, the test image's id and the finding's phrase."""

    name: str
    width: int
    height: int
    sample_id: str
    phrase: str


def _draw_classes(runs: Sequence[ReportMaps], by_id: dict[str, Sample], out_dir: Path) -> list[tuple[str, list[ReportImage]]]:
    """Draw every class's report images; return (class, images) for the classes that have any."""
    groups = [g for g in REPORT_GROUPS if any(g in r.maps for r in runs)] or list(REPORT_GROUPS)[:1]
    sections = []
    for label in FINDING_CLASSES:
        ids: list[str] = []
        for run in runs:
            for sid, lab in zip(run.sample_ids, run.labels):
                if lab == label and sid not in ids and sid in by_id:
                    ids.append(sid)
        images = []
        for n, sid in enumerate(ids, start=1):
            name = f"{label.lower().replace(' ', '_')}_{n}.png"
            sample_figure(by_id[sid], label, runs, groups, out_dir / name)
            width, height = figure_size(len(runs), len(groups))
            phrase = next(f.phrase for f in by_id[sid].findings if f.label == label)
            images.append(ReportImage(name, round(width * 100), round(height * 100), sid, phrase))
        if images:
            sections.append((label, images))
    return sections


REPORT_STYLE = """
.samples { display: flex; flex-wrap: wrap; gap: 1rem 1.5rem; }
.samples figure { margin: 0; flex: 0 1 auto; max-width: 100%; }
.samples img { max-width: 100%; height: auto; display: block; }
"""


def report_page(track: str, results: Sequence[tuple[ReportMaps, str]], sections: Sequence[tuple[str, list[ReportImage]]],
                leaderboard_href: str, docs: Sequence[tuple[str, str]]) -> str:
    """The report's ``index.html``: links, the results it draws (a sortable table), one section per class."""
    from cxrbench.leaderboard.html_page import SCRIPT, STYLE, escape, link  # lazy: see write_report

    nav = ([link(leaderboard_href, "leaderboard")] if leaderboard_href else []) + [link(h, t) for t, h in docs]
    rows = "".join(f"<tr><td>{escape(run.model)}</td><td class=\"num\" data-sort=\"{run.seed}\">{run.seed}</td>"
                   f"<td>{link(href, href.rsplit('/', 1)[-1])}</td></tr>" for run, href in results)
    body = [
        f"<h1>Attention report: track <code>{escape(track)}</code></h1>",
        '<nav aria-label="leaderboard and docs"><ul>' + "".join(f"<li>{item}</li>" for item in nav) + "</ul></nav>",
        "<p>For each class, the first test images of the track, each with its ground-truth box (green) and the "
        "finding's phrase; under it, one row per result: the cross-attention map of the finding word(s) and of "
        "the end-of-text token over the image (red = high; each map scaled to its own range).</p>",
        '<div class="table-wrap"><table class="sortable results"><thead><tr><th>model</th><th>seed</th>'
        f"<th>result file</th></tr></thead><tbody>{rows}</tbody></table></div>",
    ]
    for label, images in sections:
        body.append(f'<section id="{escape(label.lower().replace(" ", "-"))}"><h2>{escape(label)}</h2><div class="samples">')
        body += [f'<figure><img src="{escape(im.name)}" width="{im.width}" height="{im.height}" alt="{escape(label)}, '
                 f'test image {escape(im.sample_id)}: its box and the attention maps of {len(results)} results">'
                 f"<figcaption>test image <code>{escape(im.sample_id)}</code></figcaption></figure>" for im in images]
        body.append("</div></section>")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>cxrbench attention report: {escape(track)}</title>\n<style>{STYLE}{REPORT_STYLE}</style>\n</head>\n"
        "<body>\n<main>\n" + "\n".join(body) + f"\n</main>\n<script>{SCRIPT}</script>\n</body>\n</html>\n"
    )
