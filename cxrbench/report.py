"""Attention overlay reports: where each model's finding word and end-of-text token look, per class.

Every run keeps the maps of a fixed set of report queries beside its result (``<stem>.maps.npz``: the
first ``REPORT_QUERIES_PER_CLASS`` test queries of every class, in test order, so every model and seed
of a track shows the same images). ``cxrbench report RESULT.json ...`` turns them into one PNG per class
and an ``index.html``: for each query image, the image with its ground-truth box, then, per result, the
finding-word map and the EOS map over the image with the same box.
"""

from __future__ import annotations

import html
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cxrbench.data.schema import FINDING_CLASSES, Box, Sample
from cxrbench.errors import ResultError
from cxrbench.model import LocalizationQuery
from cxrbench.results import atomic_write_bytes, atomic_write_text

#: Queries kept per class for reports (the first ones of the test split, in its order).
REPORT_QUERIES_PER_CLASS = 2
#: Token groups shown in reports, with their column titles.
REPORT_GROUPS: dict[str, str] = {"word": "finding word", "eos": "end-of-text token"}


def report_query_indices(queries: Sequence[LocalizationQuery]) -> list[int]:
    """Indices of the queries whose maps a run keeps for reports (the first few of each class)."""
    taken: dict[str, int] = {}
    chosen = []
    for i, q in enumerate(queries):
        if taken.get(q.label, 0) < REPORT_QUERIES_PER_CLASS:
            taken[q.label] = taken.get(q.label, 0) + 1
            chosen.append(i)
    return chosen


def maps_path_for(result_path: Path) -> Path:
    """Where the report maps of a result file live: ``x.json`` -> ``x.maps.npz``."""
    return result_path.with_name(result_path.name[: -len(".json")] + ".maps.npz")


def save_report_maps(path: Path, queries: Sequence[LocalizationQuery], maps: Sequence[dict[str, np.ndarray]]) -> None:
    """Keep the report queries' word and EOS maps (float16; each map as the model returned it)."""
    arrays: dict[str, np.ndarray] = {}
    chosen = report_query_indices(queries)
    arrays["sample_ids"] = np.array([queries[i].sample_id for i in chosen])
    arrays["labels"] = np.array([queries[i].label for i in chosen])
    for group in REPORT_GROUPS:
        if all(group in maps[i] for i in chosen) and chosen:
            arrays[group] = np.stack([np.asarray(maps[i][group], dtype=np.float16) for i in chosen])
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


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
    from matplotlib.patches import Rectangle

    for b in boxes:
        ax.add_patch(Rectangle((b.x - 0.5, b.y - 0.5), b.w, b.h, fill=False, edgecolor=colour, linewidth=1.2))


def class_figure(label: str, samples: Sequence[Sample], runs: Sequence[ReportMaps], path: Path, dpi: int = 75) -> Path:
    """One PNG: the query images of ``label`` with their boxes on top, then a row per run with its word and
    EOS maps under each image (so many runs grow the page downwards, not sideways)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    groups = [g for g in REPORT_GROUPS if any(g in r.maps for r in runs)] or list(REPORT_GROUPS)[:1]
    columns = 1 + len(samples) * len(groups)
    rows = 1 + len(runs)
    tile = 1.6
    fig = Figure(figsize=(columns * tile, rows * tile + 0.9), dpi=dpi)
    FigureCanvasAgg(fig)

    def label_cell(row: int, text: str) -> None:
        ax = fig.add_subplot(rows, columns, row * columns + 1)
        ax.set_axis_off()
        ax.text(1.0, 0.5, "\n".join(_wrap(text, 22)), ha="right", va="center", fontsize=7,
                transform=ax.transAxes)

    label_cell(0, "image and box")
    findings = [next(f for f in sample.findings if f.label == label) for sample in samples]
    for s, (sample, finding) in enumerate(zip(samples, findings)):
        for j in range(len(groups)):
            ax = fig.add_subplot(rows, columns, 2 + s * len(groups) + j)
            ax.set_axis_off()
            if j == 0:
                ax.imshow(sample.image, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
                _draw_boxes(ax, finding.boxes)
                ax.set_title("\n".join(_wrap(finding.phrase, 28)[:3]), fontsize=6)
    for k, run in enumerate(runs):
        row = 1 + k
        label_cell(row, run.title)
        for s, (sample, finding) in enumerate(zip(samples, findings)):
            index = next((i for i, (sid, lab) in enumerate(zip(run.sample_ids, run.labels))
                          if sid == sample.id and lab == label), None)
            for j, group in enumerate(groups):
                ax = fig.add_subplot(rows, columns, row * columns + 2 + s * len(groups) + j)
                ax.set_axis_off()
                if k == 0:
                    ax.set_title(REPORT_GROUPS[group], fontsize=6)
                if index is None or group not in run.maps:
                    ax.text(0.5, 0.5, "no map", ha="center", va="center", fontsize=6, transform=ax.transAxes)
                    continue
                ax.imshow(sample.image, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
                ax.imshow(_normalized(run.maps[group][index]), cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0,
                          interpolation="bilinear")
                _draw_boxes(ax, finding.boxes)
    fig.suptitle(f"{label}: ground-truth box (green) and attention (red = high)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width) or [""]


def can_localize(result_path: Path) -> bool:
    """Whether the result's model has the ``localize`` capability (a generate-only baseline has no maps)."""
    from cxrbench.results import load_result

    return "localize" in load_result(result_path)["plugin"].get("capabilities", [])


def write_report(result_paths: Sequence[Path], out_dir: Path, test: Sequence[Sample] | None = None,
                 on_skip: Callable[[Path], None] | None = None) -> Path:
    """Write ``out_dir/index.html`` and one ``<class>.png`` per class from the given results.

    Results of models that cannot localize are left out (``on_skip`` is called with each). All results must be of one track; ``test`` (the track's test split) is built from the registry when
    not given. Returns the path of the HTML page.
    """
    if not result_paths:
        raise ResultError("report needs at least one result file")
    kept = []
    for path in map(Path, result_paths):
        if can_localize(path):
            kept.append(path)
        elif on_skip is not None:
            on_skip(path)
    result_paths = kept
    if not result_paths:
        raise ResultError("none of the results is of a model that localizes; there are no maps to draw")
    runs = [load_report_maps(Path(p)) for p in result_paths]
    tracks = sorted({r.track for r in runs})
    if len(tracks) != 1:
        raise ResultError(f"results must all be of one track, but got tracks {tracks}")
    if test is None:
        from cxrbench.protocol import get_track
        from cxrbench.registry import get_registry
        from cxrbench.runner import load_track_data

        test = load_track_data(get_track(tracks[0]), get_registry()).test
    by_id = {s.id: s for s in test}
    out_dir.mkdir(parents=True, exist_ok=True)
    sections = []
    for label in FINDING_CLASSES:
        ids: list[str] = []
        for run in runs:
            for sid, lab in zip(run.sample_ids, run.labels):
                if lab == label and sid not in ids and sid in by_id:
                    ids.append(sid)
        if not ids:
            continue
        name = label.lower().replace(" ", "_") + ".png"
        class_figure(label, [by_id[i] for i in ids], runs, out_dir / name)
        sections.append(f'<section><h2>{html.escape(label)}</h2><img src="{name}" alt="{html.escape(label)}: '
                        f'attention maps of {len(runs)} results on {len(ids)} test images"></section>')
    items = "".join(f"<li>{html.escape(r.title)}: {html.escape(str(p))}</li>" for r, p in zip(runs, result_paths))
    page = (
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>cxrbench attention report: "
        f"{html.escape(tracks[0])}</title><style>body{{font-family:sans-serif;margin:1.5em}}img{{max-width:100%}}"
        "</style></head><body>"
        f"<h1>Attention report: track {html.escape(tracks[0])}</h1>"
        "<p>The top row shows test images with their ground-truth boxes (green); below, each row is one "
        "result's cross-attention map of the finding word(s) and of the end-of-text token over each image "
        "(each map scaled to its own range).</p>"
        f"<ul>{items}</ul>{''.join(sections)}</body></html>\n"
    )
    index = out_dir / "index.html"
    atomic_write_text(index, page)
    return index
