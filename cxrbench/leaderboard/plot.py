"""The trade-off plot: fidelity (FID) on x, localization (AUC-ROC) on y, one panel per track.

What a panel shows, so that the decision can be read at any spread of the entries:

- **Axes fitted to the entries' means.** The x axis is reversed, so better (lower FID) is to the right and
  better localization is up: the best corner is the top right. Intervals do not stretch the axes.
- **Intervals drawn lighter** than the points. Where an interval leaves the frame it is cut at the frame
  and a small triangle on the frame's edge points the way it goes on.
- **The Pareto frontier on top** of the intervals: a red step line through the entries of Pareto rank 1.
- **Labels that cross nothing**: each label is placed (:mod:`cxrbench.leaderboard.labels`) where it
  overlaps no point, interval, line or other label, with a leader line (which crosses nothing either) when
  it had to move away from its point. A name that does not fit, or is longer than ``LONG_NAME_CHARS``, is
  shortened to a letter, and the key under the panel says which entry each letter is.
- **Reference lines** (chance localization, AUC-ROC 0.5, and the baselines: the box prior's AUC-ROC, the
  nearest training image's FID) are drawn where they fall inside the frame; one outside it is listed in
  the key with its value and the side of the frame it lies on.

``render_tradeoff`` draws every track side by side (``tradeoff.svg``, ``tradeoff.png``);
``render_track_svgs`` draws one figure per track, which the HTML page stacks on narrow screens.

Rendering is byte-deterministic for one matplotlib version: Agg, Matplotlib's default style with fixed
``svg.hashsalt``, text kept as text (``svg.fonttype = "none"``), no date or software metadata, and a
label layout computed from DejaVu Sans metrics (shipped with matplotlib).
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from cxrbench.leaderboard.board import Entry, Leaderboard, TrackBoard
from cxrbench.leaderboard.columns import format_number, metric_decimals
from cxrbench.leaderboard.labels import LabelPlacer, Rect, entry_codes
from cxrbench.results import HEADLINE_FIDELITY, HEADLINE_LOCALIZATION

PLOT_RC: dict[str, object] = {
    "svg.hashsalt": "cxrbench-leaderboard",
    "svg.fonttype": "none",
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans"],
    "font.size": 13.0,
    "axes.titlesize": 14.0,
    "axes.labelsize": 13.0,
    "xtick.labelsize": 12.0,
    "ytick.labelsize": 12.0,
    "legend.fontsize": 12.0,
    "figure.dpi": 100.0,
    "savefig.dpi": 100.0,
    "path.simplify": False,
}
SVG_METADATA = {"Date": None, "Creator": None}
PNG_METADATA = {"Software": None}
#: Resolution of ``tradeoff.png`` (the SVG is vector; the PNG is what the markdown page shows).
PNG_DPI = 150.0
#: One panel, in inches: the axes box and the margins around it (fixed: no layout engine, so the label
#: layout is computed on the final geometry). The key below the axes adds what it needs. Fonts are large
#: for the panel (13 pt on 5 inches) so that a phone, which shows a panel about 360 px wide, keeps them
#: legible (about 10 px).
AXES_WIDTH_IN, AXES_HEIGHT_IN = 3.85, 3.3
MARGIN_LEFT_IN, MARGIN_RIGHT_IN, MARGIN_TOP_IN, AXIS_BELOW_IN, KEY_PAD_IN = 0.95, 0.2, 0.45, 0.72, 0.1
PANEL_WIDTH_IN = MARGIN_LEFT_IN + AXES_WIDTH_IN + MARGIN_RIGHT_IN
#: Share of the means' span added on each side of the frame.
FRAME_PAD = 0.16
LONG_NAME_CHARS = 24
KEY_WRAP_CHARS = 40
LABEL_FONT_PT = 12.0
FRONTIER_COLOR = "#d62728"
POINT_COLOR = "#1f77b4"
DOMINATED_COLOR = "#6e6e6e"
BASELINE_COLOR = "#6e7781"
INTERVAL_ALPHA = 0.35
MARKER_PT = 7.0
LINE_HALF_PT = 1.0


@dataclass
class PanelKey:
    """What the key under a panel lists: line styles, references outside the frame, letters, notes."""

    handles: list[Line2D] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)

    def add(self, label: str, handle: Line2D | None = None) -> None:
        self.handles.append(handle if handle is not None else Line2D([], [], linestyle="none"))
        self.labels.append(label)


def render_tradeoff(board: Leaderboard) -> tuple[bytes, bytes]:
    """Every track side by side, as (SVG bytes, PNG bytes)."""
    with _plot_style():
        figure = _figure(board.tracks)
        svg, png = io.BytesIO(), io.BytesIO()
        figure.savefig(svg, format="svg", metadata=SVG_METADATA)
        figure.savefig(png, format="png", metadata=PNG_METADATA, dpi=PNG_DPI)
    return svg.getvalue(), png.getvalue()


def render_track_svgs(board: Leaderboard) -> list[str]:
    """One SVG document per track, in the board's order (the HTML page's figures)."""
    documents = []
    for track in board.tracks:
        with _plot_style(salt=f"cxrbench-leaderboard-{track.name}"):
            buffer = io.BytesIO()
            _figure([track]).savefig(buffer, format="svg", metadata=SVG_METADATA)
        documents.append(buffer.getvalue().decode("utf-8"))
    return documents


@contextmanager
def _plot_style(salt: str | None = None) -> Iterator[None]:
    with matplotlib.rc_context():
        matplotlib.rcdefaults()
        matplotlib.rcParams.update(PLOT_RC)
        if salt is not None:
            matplotlib.rcParams["svg.hashsalt"] = salt
        yield


def _figure(tracks: Sequence[TrackBoard]) -> Figure:
    """Panels side by side, axes top-aligned, each panel's key under its axes; the figure as tall as the
    tallest panel needs."""
    n_panels = max(1, len(tracks))
    width = PANEL_WIDTH_IN * n_panels
    provisional = MARGIN_TOP_IN + AXES_HEIGHT_IN + AXIS_BELOW_IN + 8.0
    figure = Figure(figsize=(width, provisional))
    FigureCanvasAgg(figure)
    if not tracks:
        axes = figure.add_axes((0, 0, 1, 1))
        axes.set_axis_off()
        axes.text(0.5, 0.5, "No results yet", ha="center", va="center", fontsize=14, transform=axes.transAxes)
        figure.set_size_inches(width, 2.0)
        return figure
    panels = []
    for index, track in enumerate(tracks):
        axes = figure.add_axes(_axes_rect(index, width, provisional))
        panels.append((axes, _panel(axes, track)))
    renderer = figure.canvas.get_renderer()
    legends = [_key_legend(figure, axes, key) for axes, key in panels]
    key_height = max(
        (legend.get_window_extent(renderer).height / figure.dpi for legend in legends if legend), default=0.0
    )
    height = MARGIN_TOP_IN + AXES_HEIGHT_IN + AXIS_BELOW_IN + key_height + 2 * KEY_PAD_IN
    figure.set_size_inches(width, height)
    for index, ((axes, _), legend) in enumerate(zip(panels, legends)):
        axes.set_position(_axes_rect(index, width, height))
        if legend is not None:
            legend.set_bbox_to_anchor(
                (index * PANEL_WIDTH_IN + 0.15, key_height + KEY_PAD_IN), transform=figure.dpi_scale_trans
            )
    return figure


def _axes_rect(index: int, width: float, height: float) -> tuple[float, float, float, float]:
    """Axes position (figure fractions) of panel ``index``: fixed inches from the top left."""
    left = index * PANEL_WIDTH_IN + MARGIN_LEFT_IN
    bottom = height - MARGIN_TOP_IN - AXES_HEIGHT_IN
    return left / width, bottom / height, AXES_WIDTH_IN / width, AXES_HEIGHT_IN / height


def _key_legend(figure: Figure, axes, key: PanelKey):
    if not key.labels:
        return None
    wrapped = [_wrap(label, KEY_WRAP_CHARS) for label in key.labels]
    return figure.legend(
        key.handles,
        wrapped,
        loc="upper left",
        bbox_to_anchor=(0, 0),
        bbox_transform=figure.dpi_scale_trans,
        ncols=1,
        frameon=False,
        handlelength=1.8,
        borderaxespad=0.0,
        borderpad=0.0,
        labelspacing=0.35,
    )


def _wrap(text: str, width: int) -> str:
    return "\n".join(textwrap.wrap(text, width, break_on_hyphens=True, subsequent_indent="    ")) or text


# ------------------------------------------------------------------------------------------- one panel
def _panel(axes, track: TrackBoard) -> PanelKey:
    """Draw one track on ``axes``; return what its key lists."""
    entries: list[Entry] = track.ranked_entries
    key = PanelKey()
    axes.set_title(f"track: {track.name}", parse_math=False)
    axes.set_xlabel("FID (domain) \u2193   \u00b7   axis reversed: better \u2192")
    axes.set_ylabel("finding-word AUC-ROC \u2191 (better)")
    axes.grid(True, linewidth=0.4, alpha=0.45)
    _set_frame(axes, entries, track.baselines)
    lines: list[Rect] = []
    _style_key(key, entries)
    _reference_lines(axes, track, key, lines)
    for entry in entries:
        lines += _draw_entry(axes, entry)
    lines += _draw_frontier(axes, entries)
    if not entries:
        axes.text(0.5, 0.6, "no entry has both axes", ha="center", va="center", transform=axes.transAxes)
    codes = entry_codes([entry.model for entry in entries])
    colors = {entry.model: _color(entry) for entry in entries}
    placer = LabelPlacer(axes, lines, colors, font_pt=LABEL_FONT_PT)
    for entry, label in placer.place(entries, codes, long_name_chars=LONG_NAME_CHARS):
        if label.coded:
            key.add(f"{label.text} = {entry.model}")
    unplotted = [entry.model for entry in track.unranked_entries]
    if unplotted:
        key.add("not drawn (lacks an axis): " + ", ".join(unplotted))
    return key


def _axis_values(entries: Sequence[Entry], metric: str) -> list[float]:
    return [value for value in (entry.value(metric) for entry in entries) if value is not None]


def _span(values: Sequence[float], fallback_half_width: float) -> tuple[float, float]:
    """Frame around ``values``: their span padded by ``FRAME_PAD`` on each side (a fixed half width when all
    are equal)."""
    low, high = min(values), max(values)
    pad = FRAME_PAD * (high - low) if high > low else max(fallback_half_width, 0.05 * abs(high))
    return low - pad, high + pad


def _set_frame(axes, entries: Sequence[Entry], baselines: Sequence[Entry]) -> None:
    """Fit the axes to the entries' means (x reversed); without entries, to the baselines' FID, if any."""
    fids, aucs = _axis_values(entries, HEADLINE_FIDELITY), _axis_values(entries, HEADLINE_LOCALIZATION)
    if not fids:
        fids = _axis_values(baselines, HEADLINE_FIDELITY)
        aucs = []
    if fids:
        low, high = _span(fids, 1.0)
        axes.set_xlim(high, low)
    else:
        axes.set_xlim(1.0, 0.0)
        axes.set_xticks([])
    low, high = _span(aucs, 0.05) if aucs else (0.4, 0.6)
    axes.set_ylim(low, high)


def _inside(axes, value: float, axis: str) -> bool:
    low, high = sorted(axes.get_xlim() if axis == "x" else axes.get_ylim())
    return low <= value <= high


def _side(axes, value: float, axis: str) -> str:
    """Which side of the frame an out-of-frame value lies on, in words (the x axis is reversed)."""
    if axis == "y":
        return "above the frame" if value > max(axes.get_ylim()) else "below the frame"
    return "left of the frame" if value > max(axes.get_xlim()) else "right of the frame"


def _style_key(key: PanelKey, entries: Sequence[Entry]) -> None:
    if not entries:
        return
    key.add("Pareto frontier", Line2D([], [], color=FRONTIER_COLOR, linewidth=2.0))
    key.add("entry on the frontier", Line2D([], [], color=POINT_COLOR, marker="o", linestyle="none"))
    if any(entry.pareto_rank != 1 for entry in entries):
        key.add("dominated entry", Line2D([], [], color=DOMINATED_COLOR, marker="o", linestyle="none"))
    key.add(
        "95% interval (\u25b8 = cut at the frame)",
        Line2D([], [], color=POINT_COLOR, alpha=INTERVAL_ALPHA, linewidth=1.2),
    )


def _reference_lines(axes, track: TrackBoard, key: PanelKey, obstacles: list[Rect]) -> None:
    """Chance and baseline lines inside the frame (obstacles for labels); those outside go to the key."""
    references = [("y", 0.5, "chance", {"color": "black", "linestyle": ":", "linewidth": 1.0})]
    for entry in track.baselines:
        style = {"color": BASELINE_COLOR, "linewidth": 1.2}
        auc, fid = entry.value(HEADLINE_LOCALIZATION), entry.value(HEADLINE_FIDELITY)
        if auc is not None:
            references.append(("y", auc, f"baseline: {entry.display_name}", {**style, "linestyle": "--"}))
        if fid is not None:
            references.append(("x", fid, f"baseline: {entry.display_name}", {**style, "linestyle": "-."}))
    for axis, value, label, style in references:
        name, metric = ("AUC-ROC", HEADLINE_LOCALIZATION) if axis == "y" else ("FID", HEADLINE_FIDELITY)
        text = f"{label}: {name} {format_number(value, metric_decimals(metric))}"
        if not _inside(axes, value, axis):
            key.add(f"{text}, {_side(axes, value, axis)}", Line2D([], [], **style))
            continue
        line = (
            axes.axhline(value, zorder=1, **style) if axis == "y" else axes.axvline(value, zorder=1, **style)
        )
        line.set_label("_reference")
        key.add(text, Line2D([], [], **style))
        obstacles.append(_line_rect(axes, axis, value))


def _to_points(axes, x: float, y: float) -> tuple[float, float]:
    px, py = axes.transData.transform((x, y))
    scale = 72.0 / axes.get_figure().dpi
    return px * scale, py * scale


def _line_rect(axes, axis: str, value: float) -> Rect:
    """The obstacle of a full-frame reference line."""
    frame = Rect.of_axes(axes)
    if axis == "y":
        _, y = _to_points(axes, axes.get_xlim()[0], value)
        return Rect(frame.x0, y - LINE_HALF_PT, frame.x1, y + LINE_HALF_PT)
    x, _ = _to_points(axes, value, axes.get_ylim()[0])
    return Rect(x - LINE_HALF_PT, frame.y0, x + LINE_HALF_PT, frame.y1)


def _color(entry: Entry) -> str:
    return POINT_COLOR if entry.pareto_rank == 1 else DOMINATED_COLOR


def _draw_entry(axes, entry: Entry) -> list[Rect]:
    """The entry's point and its two intervals (cut at the frame); return the intervals' obstacles."""
    color = _color(entry)
    fid, auc = entry.metrics[HEADLINE_FIDELITY], entry.metrics[HEADLINE_LOCALIZATION]
    rects = []
    for axis, summary in (("x", fid), ("y", auc)):
        if summary.ci_low is not None and summary.ci_high is not None:
            rects += _draw_interval(axes, axis, fid.mean, auc.mean, summary.ci_low, summary.ci_high, color)
    axes.plot(
        [fid.mean],
        [auc.mean],
        marker="o",
        markersize=MARKER_PT,
        color=color,
        linestyle="none",
        zorder=5,
        markeredgecolor="white",
        markeredgewidth=0.8,
        label="_point",
    )
    return rects


def _draw_interval(axes, axis: str, x: float, y: float, low: float, high: float, color: str) -> list[Rect]:
    """One interval bar through (x, y), cut at the frame; a cap at an end inside the frame, a triangle
    pointing outwards where it leaves. Returns the obstacles (bar, caps and triangles)."""
    limits = sorted(axes.get_xlim() if axis == "x" else axes.get_ylim())
    start, stop = max(low, limits[0]), min(high, limits[1])
    if start > stop:
        return []
    xs, ys = ([start, stop], [y, y]) if axis == "x" else ([x, x], [start, stop])
    axes.plot(
        xs,
        ys,
        color=color,
        alpha=INTERVAL_ALPHA,
        linewidth=1.2,
        solid_capstyle="butt",
        zorder=2,
        label="_interval",
    )
    (x0, y0), (x1, y1) = _to_points(axes, xs[0], ys[0]), _to_points(axes, xs[1], ys[1])
    rects = [
        Rect(
            min(x0, x1) - LINE_HALF_PT,
            min(y0, y1) - LINE_HALF_PT,
            max(x0, x1) + LINE_HALF_PT,
            max(y0, y1) + LINE_HALF_PT,
        )
    ]
    for end, clipped in ((start, start > low), (stop, stop < high)):
        px, py = (end, y) if axis == "x" else (x, end)
        marker = _end_marker(axes, axis, end, clipped, x, y)
        axes.plot(
            [px],
            [py],
            marker=marker,
            markersize=6.0 if clipped else 5.0,
            color=color,
            alpha=0.8 if clipped else INTERVAL_ALPHA,
            linestyle="none",
            zorder=2,
            clip_on=False,
            label="_interval-cut" if clipped else "_interval-cap",
        )
        cx, cy = _to_points(axes, px, py)
        rects.append(Rect(cx - 3.5, cy - 3.5, cx + 3.5, cy + 3.5))
    return rects


def _end_marker(axes, axis: str, end: float, clipped: bool, x: float, y: float) -> str:
    """A cap across the bar, or a triangle pointing the way the cut interval goes on (in display space)."""
    if not clipped:
        return "|" if axis == "x" else "_"
    here = _to_points(axes, *((end, y) if axis == "x" else (x, end)))
    centre = _to_points(axes, x, y)
    if axis == "x":
        return ">" if here[0] > centre[0] else "<"
    return "^" if here[1] > centre[1] else "v"


def _draw_frontier(axes, entries: Sequence[Entry]) -> list[Rect]:
    """The Pareto frontier as a step line above the intervals; return its segments' obstacles."""
    frontier = sorted(
        (entry for entry in entries if entry.pareto_rank == 1),
        key=lambda e: (e.value(HEADLINE_FIDELITY), e.value(HEADLINE_LOCALIZATION)),
    )
    if len(frontier) < 2:
        return []
    xs, ys = [], []
    for entry in frontier:
        x, y = entry.value(HEADLINE_FIDELITY), entry.value(HEADLINE_LOCALIZATION)
        if xs:
            xs.append(x)
            ys.append(ys[-1])
        xs.append(x)
        ys.append(y)
    axes.plot(
        xs,
        ys,
        color=FRONTIER_COLOR,
        linewidth=2.0,
        alpha=0.9,
        zorder=4,
        solid_joinstyle="miter",
        label="_frontier",
    )
    points = [_to_points(axes, x, y) for x, y in zip(xs, ys)]
    return [
        Rect(
            min(a[0], b[0]) - LINE_HALF_PT,
            min(a[1], b[1]) - LINE_HALF_PT,
            max(a[0], b[0]) + LINE_HALF_PT,
            max(a[1], b[1]) + LINE_HALF_PT,
        )
        for a, b in zip(points, points[1:])
    ]
