"""The trade-off plot: one panel per track, fidelity (FID) on x, localization (AUC-ROC) on y.

The x axis is reversed so that better (lower FID) is to the right and better localization is up: the best
corner is the top right. Error bars are the leaderboard intervals; the Pareto frontier (rank 1) is drawn as
a step line; the dotted line is chance localization (AUC-ROC 0.5). A baseline is a dashed grey line at its
value on each axis it has (the box prior: a dashed horizontal line at its AUC-ROC; the nearest training image:
a dash-dotted vertical line at its FID, or an arrow at the panel's edge with its value when it lies far outside
the entries' range). Labels never overlap: a crowded label moves down, with a leader line to its point.
Models lacking either axis are not drawn.

Rendering is byte-deterministic for one matplotlib version: Agg, Matplotlib's default style with fixed
``svg.hashsalt``, text kept as text (``svg.fonttype = "none"``), no date or software metadata.
"""

from __future__ import annotations

import io

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cxrbench.leaderboard.board import Entry, Leaderboard, TrackBoard
from cxrbench.results import HEADLINE_FIDELITY, HEADLINE_LOCALIZATION

PLOT_RC: dict[str, object] = {
    "svg.hashsalt": "cxrbench-leaderboard",
    "svg.fonttype": "none",
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans"],
    "font.size": 9.0,
    "figure.dpi": 100.0,
    "savefig.dpi": 100.0,
    "path.simplify": False,
}
SVG_METADATA = {"Date": None, "Creator": None}
PNG_METADATA = {"Software": None}
PANEL_WIDTH_IN = 5.6
PANEL_HEIGHT_IN = 4.6
#: Fixed margins (inches) rather than a layout engine: cheaper, and the labels are known to fit.
MARGIN_LEFT_IN, MARGIN_RIGHT_IN, MARGIN_BOTTOM_IN, MARGIN_TOP_IN, PANEL_GAP_IN = 0.75, 0.2, 0.6, 0.35, 0.85
FRONTIER_COLOR = "#d62728"
POINT_COLOR = "#1f77b4"
DOMINATED_COLOR = "#7f7f7f"
BASELINE_COLOR = "#6e7781"


def render_tradeoff(board: Leaderboard) -> tuple[bytes, bytes]:
    """The trade-off figure as (SVG bytes, PNG bytes)."""
    with matplotlib.rc_context():
        matplotlib.rcdefaults()
        matplotlib.rcParams.update(PLOT_RC)
        figure = _figure(board)
        svg, png = io.BytesIO(), io.BytesIO()
        figure.savefig(svg, format="svg", metadata=SVG_METADATA)
        figure.savefig(png, format="png", metadata=PNG_METADATA)
    return svg.getvalue(), png.getvalue()


def _figure(board: Leaderboard) -> Figure:
    tracks = board.tracks or []
    n_panels = max(1, len(tracks))
    width = PANEL_WIDTH_IN * n_panels
    figure = Figure(figsize=(width, PANEL_HEIGHT_IN))
    FigureCanvasAgg(figure)
    axes_width = (width - MARGIN_LEFT_IN - MARGIN_RIGHT_IN - PANEL_GAP_IN * (n_panels - 1)) / n_panels
    figure.subplots_adjust(
        left=MARGIN_LEFT_IN / width,
        right=1.0 - MARGIN_RIGHT_IN / width,
        bottom=MARGIN_BOTTOM_IN / PANEL_HEIGHT_IN,
        top=1.0 - MARGIN_TOP_IN / PANEL_HEIGHT_IN,
        wspace=PANEL_GAP_IN / axes_width,
    )
    if not tracks:
        axes = figure.add_subplot()
        axes.set_axis_off()
        axes.text(0.5, 0.5, "No results yet", ha="center", va="center", fontsize=14, transform=axes.transAxes)
        return figure
    for index, track in enumerate(tracks):
        _panel(figure.add_subplot(1, n_panels, index + 1), track)
    return figure


def _error(value: float, low: float | None, high: float | None) -> tuple[float, float]:
    if low is None or high is None:
        return 0.0, 0.0
    return max(0.0, value - low), max(0.0, high - value)


#: Label box estimate in points: height, and width per character (8 pt text).
LABEL_HEIGHT_PT, LABEL_CHAR_PT = 10.0, 4.9


def _label_points(axes, entries: list[Entry]) -> None:
    """Name each point without labels overlapping.

    A label sits 6 pt right of its point (left of it in the right third of the panel) and 5 pt up. Labels
    are placed from the top point down; one that would overlap a label already placed moves down in
    steps of a label height, and a thin leader line joins it to its point when it moved.
    """
    left, right = axes.get_xlim()
    figure = axes.get_figure()
    to_points = 72.0 / figure.dpi
    placed: list[tuple[float, float, float, float]] = []  # (x0, x1, y0, y1) in points
    order = sorted(entries, key=lambda e: (-e.value(HEADLINE_LOCALIZATION), e.model))
    for entry in order:
        x, y = entry.value(HEADLINE_FIDELITY), entry.value(HEADLINE_LOCALIZATION)
        fraction = (x - left) / (right - left) if right != left else 0.5
        to_the_left = fraction > 0.66
        px, py = (v * to_points for v in axes.transData.transform((x, y)))
        width = LABEL_CHAR_PT * len(entry.model)
        dx = -6.0 if to_the_left else 6.0
        x0 = px + dx - width if to_the_left else px + dx
        dy = 5.0
        for _ in range(40):
            y0 = py + dy - 2.0
            if not any(x0 < b1 and b0 < x0 + width and y0 < c1 and c0 < y0 + LABEL_HEIGHT_PT
                       for b0, b1, c0, c1 in placed):
                break
            dy -= LABEL_HEIGHT_PT
        placed.append((x0, x0 + width, py + dy - 2.0, py + dy - 2.0 + LABEL_HEIGHT_PT))
        axes.annotate(
            entry.model,
            (x, y),
            xytext=(dx, dy),
            textcoords="offset points",
            ha="right" if to_the_left else "left",
            fontsize=8,
            parse_math=False,
            bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.75},
            arrowprops=None if dy == 5.0 else {"arrowstyle": "-", "color": "0.6", "linewidth": 0.6,
                                               "shrinkA": 0, "shrinkB": 3},
            zorder=4,
        )


def _baseline_lines(axes, baselines: list[Entry], keep_x_range: bool) -> None:
    """A line per baseline axis value: dashed horizontal at its AUC-ROC, dash-dotted vertical at its FID.

    With ``keep_x_range`` (the panel has entries), a FID outside the entries' x range is not drawn there
    (it would squeeze the entries into a corner): an arrow at the panel's edge points to it and says its
    value.
    """
    left, right = axes.get_xlim()
    for entry in baselines:
        auc, fid = entry.value(HEADLINE_LOCALIZATION), entry.value(HEADLINE_FIDELITY)
        label = f"baseline: {entry.display_name}".replace("$", r"\$")  # plugin text, never mathtext
        if auc is not None:
            axes.axhline(auc, color=BASELINE_COLOR, linestyle="--", linewidth=1.2, label=label, zorder=1)
            label = None
        if fid is None:
            continue
        if not keep_x_range or min(left, right) <= fid <= max(left, right):
            axes.axvline(fid, color=BASELINE_COLOR, linestyle="-.", linewidth=1.2, label=label, zorder=1)
            continue
        beyond_right = (fid - left) / (right - left) > 1.0 if right != left else True
        edge = 0.99 if beyond_right else 0.01
        axes.annotate(
            f"{entry.display_name}: FID {fid:.2f}",
            xy=(edge, 0.03), xycoords="axes fraction",
            xytext=(-14 if beyond_right else 14, 0), textcoords="offset points",
            ha="right" if beyond_right else "left", va="center", fontsize=7, color=BASELINE_COLOR,
            parse_math=False, zorder=4,
            arrowprops={"arrowstyle": "->", "color": BASELINE_COLOR, "linewidth": 1.0},
        )


def _panel(axes, track: TrackBoard) -> None:
    entries: list[Entry] = track.ranked_entries
    axes.set_title(f"track: {track.name}", parse_math=False)
    axes.set_xlabel("FID, domain evaluator (lower is better; axis reversed, better \u2192)")
    axes.set_ylabel("AUC-ROC of the finding word's attention (higher is better \u2191)")
    axes.axhline(0.5, color="black", linestyle=":", linewidth=1.0, label="chance (AUC-ROC 0.5)")
    if not entries:
        axes.text(0.5, 0.6, "no entry has both axes", ha="center", va="center", transform=axes.transAxes)
        fids = [fid for fid in (e.value(HEADLINE_FIDELITY) for e in track.baselines) if fid is not None]
        if fids:  # a baseline's FID line is all there is on x: frame it (reversed, as with entries)
            low, high = min(fids), max(fids)
            pad = max(0.15 * (high - low), 0.1 * max(abs(high), 1.0))
            axes.set_xlim(high + pad, low - pad)
        else:
            axes.set_xlim(1.0, 0.0)
            axes.set_xticks([])
    labelled: set[str] = set()
    for entry in entries:
        fid = entry.metrics[HEADLINE_FIDELITY]
        auc = entry.metrics[HEADLINE_LOCALIZATION]
        on_frontier = entry.pareto_rank == 1
        kind = "entry on the frontier" if on_frontier else "dominated entry"
        x_err, y_err = _error(fid.mean, fid.ci_low, fid.ci_high), _error(auc.mean, auc.ci_low, auc.ci_high)
        axes.errorbar(
            [fid.mean],
            [auc.mean],
            xerr=[[x_err[0]], [x_err[1]]],
            yerr=[[y_err[0]], [y_err[1]]],
            fmt="o",
            color=POINT_COLOR if on_frontier else DOMINATED_COLOR,
            markersize=6,
            capsize=3,
            elinewidth=1.0,
            zorder=3,
            label=None if kind in labelled else kind,
        )
        labelled.add(kind)
    frontier = sorted(
        (entry for entry in entries if entry.pareto_rank == 1),
        key=lambda e: (e.value(HEADLINE_FIDELITY), e.value(HEADLINE_LOCALIZATION)),
    )
    if frontier:
        axes.step(
            [e.value(HEADLINE_FIDELITY) for e in frontier],
            [e.value(HEADLINE_LOCALIZATION) for e in frontier],
            where="post",
            color=FRONTIER_COLOR,
            linewidth=1.5,
            alpha=0.8,
            label="Pareto frontier",
            zorder=2,
        )
    if entries:
        if not axes.xaxis_inverted():
            axes.invert_xaxis()
        axes.margins(x=0.15, y=0.12)
    _baseline_lines(axes, track.baselines, keep_x_range=bool(entries))
    bottom, top = axes.get_ylim()
    axes.set_ylim(min(bottom, 0.45), max(top, 0.55))
    _label_points(axes, entries)
    axes.grid(True, linewidth=0.4, alpha=0.5)
    unplotted = [entry.model for entry in track.unranked_entries]
    if unplotted:
        axes.text(
            0.01,
            0.01,
            "not drawn (lacks an axis): " + ", ".join(unplotted),
            transform=axes.transAxes,
            fontsize=7,
            color="0.35",
            va="bottom",
            parse_math=False,
        )
    axes.legend(loc="best", fontsize=7, frameon=False)
