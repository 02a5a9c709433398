"""Placing the trade-off plot's point labels where they cross nothing.

Everything is laid out in points on the final figure geometry (the axes' size and limits are fixed before
labels are placed). What a label must not touch: the interval bars and their end marks, the frontier's
segments and reference lines (``lines``), the entries' markers (``markers``), and the labels, letter discs
and leader lines placed before. For each entry, in this order:

1. its name next to the point, touching the marker (names longer than ``long_name_chars`` are not tried);
2. a letter disc: the point drawn as a larger disc with its letter inside, when the disc overlaps no other
   marker, disc, label or leader (it may lie over other entries' bars: it covers them);
3. its letter next to the point;
4. its letter further out, with a leader line that crosses nothing either.

A label must lie inside the frame. Entries with the most neighbours are placed first. An entry shown by its
letter is listed in the panel's key. If nothing is free (two points almost on top of each other among many
intervals; not so on the committed tracks nor on the 20-entry test), the letter is placed as in 3-4 but
over interval bars (its white box covers them), else where it overlaps least; ``LabelPlacer.collisions``
counts these.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from string import ascii_uppercase

from cxrbench.results import HEADLINE_FIDELITY, HEADLINE_LOCALIZATION

#: Directions tried around a point, in this order (degrees, counter-clockwise from +x).
DIRECTIONS_DEG: tuple[float, ...] = (
    45,
    135,
    315,
    225,
    0,
    180,
    90,
    270,
    20,
    160,
    340,
    200,
    70,
    110,
    290,
    250,
    30,
    150,
    330,
    210,
    60,
    120,
    300,
    240,
)
#: Gaps (points) between the marker's edge and the label: touching it, then with a leader line.
NEAR_GAPS_PT: tuple[float, ...] = (1.0, 3.0, 5.0)
FAR_GAPS_PT: tuple[float, ...] = (8.0, 12.0, 17.0, 23.0, 30.0, 40.0, 52.0, 66.0, 84.0, 105.0, 135.0)
#: Half the size of a point's marker obstacle, in points (the marker is 7 pt across).
MARKER_HALF_PT = 4.5
#: Half the size of a letter disc, and its letter's size (points).
DISC_HALF_PT = 7.5
DISC_FONT_PT = 9.5
#: Padding of a name's and of a letter's white box, in font sizes; room kept free around every obstacle.
NAME_PAD, LETTER_PAD = 0.2, 0.08
CLEARANCE_PT = 0.5
NEIGHBOUR_PT = 50.0
LEADER_COLOR = "0.45"


@dataclass(frozen=True)
class Rect:
    """An axis-aligned rectangle in points (display coordinates scaled to 72 per inch)."""

    x0: float
    y0: float
    x1: float
    y1: float

    def overlaps(self, other: Rect, margin: float = 0.0) -> bool:
        return (
            self.x0 - margin < other.x1
            and other.x0 < self.x1 + margin
            and self.y0 - margin < other.y1
            and other.y0 < self.y1 + margin
        )

    def inside(self, other: Rect, inset: float = 0.0) -> bool:
        return (
            self.x0 >= other.x0 + inset
            and self.x1 <= other.x1 - inset
            and self.y0 >= other.y0 + inset
            and self.y1 <= other.y1 - inset
        )

    def grown(self, by: float) -> Rect:
        return Rect(self.x0 - by, self.y0 - by, self.x1 + by, self.y1 + by)

    @classmethod
    def of_axes(cls, axes) -> Rect:
        box = axes.get_window_extent()
        scale = 72.0 / axes.get_figure().dpi
        return cls(box.x0 * scale, box.y0 * scale, box.x1 * scale, box.y1 * scale)


Segment = tuple[tuple[float, float], tuple[float, float]]


@dataclass(frozen=True)
class PlacedLabel:
    """A label as drawn: its text, whether it is a letter standing for the name, its box, its leader line,
    and whether it is a letter disc (the point itself, drawn larger with the letter inside)."""

    text: str
    coded: bool
    box: Rect
    leader: Segment | None = None
    disc: bool = False


def entry_codes(models: Sequence[str]) -> dict[str, str]:
    """A letter per model, in the given order: A-Z, then AA, AB, ..."""
    codes = {}
    for index, model in enumerate(models):
        code, n = "", index
        while True:
            code = ascii_uppercase[n % 26] + code
            n = n // 26 - 1
            if n < 0:
                break
        codes[model] = code
    return codes


def segment_hits_rect(segment: Segment, rect: Rect) -> bool:
    """Whether a segment meets a rectangle (Liang-Barsky clipping)."""
    (x0, y0), (x1, y1) = segment
    dx, dy = x1 - x0, y1 - y0
    t0, t1 = 0.0, 1.0
    for p, q in ((-dx, x0 - rect.x0), (dx, rect.x1 - x0), (-dy, y0 - rect.y0), (dy, rect.y1 - y0)):
        if p == 0:
            if q < 0:
                return False
            continue
        t = q / p
        if p < 0:
            t0 = max(t0, t)
        else:
            t1 = min(t1, t)
        if t0 > t1:
            return False
    return True


def segments_cross(a: Segment, b: Segment) -> bool:
    """Whether two segments intersect (touching counts)."""

    def orientation(p, q, r) -> float:
        return (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])

    d1, d2 = orientation(b[0], b[1], a[0]), orientation(b[0], b[1], a[1])
    d3, d4 = orientation(a[0], a[1], b[0]), orientation(a[0], a[1], b[1])
    return d1 * d2 <= 0 and d3 * d4 <= 0


def circle_hits_rect(x: float, y: float, radius: float, rect: Rect) -> bool:
    """Whether a circle meets a rectangle."""
    nearest_x, nearest_y = min(max(x, rect.x0), rect.x1), min(max(y, rect.y0), rect.y1)
    return math.hypot(x - nearest_x, y - nearest_y) < radius


def marker_rect(x: float, y: float, half: float = MARKER_HALF_PT) -> Rect:
    return Rect(x - half, y - half, x + half, y + half)


class LabelPlacer:
    """Places and draws the labels of one panel's entries; see the module docstring.

    ``lines``: obstacle rectangles of bars, end marks, frontier segments and reference lines; ``colors``:
    each entry's marker colour (for its letter disc).
    """

    def __init__(self, axes, lines: Sequence[Rect], colors: dict[str, str], font_pt: float) -> None:
        self.axes = axes
        self.lines = list(lines)
        self.colors = colors
        self.font_pt = font_pt
        self.frame = Rect.of_axes(axes)
        self.labels: list[Rect] = []
        self.discs: list[tuple[float, float]] = []
        self.leaders: list[Segment] = []
        self.markers: dict[str, Rect] = {}
        self.collisions = 0
        self._scale = 72.0 / axes.get_figure().dpi
        self._renderer = axes.get_figure().canvas.get_renderer()

    def place(self, entries, codes: dict[str, str], long_name_chars: int) -> list[tuple[object, PlacedLabel]]:
        """Place every entry's label (most crowded first), draw it, return (entry, label) in entry order."""
        points = {entry.model: self._point(entry) for entry in entries}
        self.markers = {model: marker_rect(*point) for model, point in points.items()}
        order = sorted(
            entries, key=lambda e: (-self._neighbours(points, e.model), list(points).index(e.model))
        )
        placed = {}
        for entry in order:
            label = self._choose(entry.model, points[entry.model], codes[entry.model], long_name_chars)
            self._draw(entry, points[entry.model], label)
            placed[entry.model] = label
        return [(entry, placed[entry.model]) for entry in entries]

    def _point(self, entry) -> tuple[float, float]:
        px, py = self.axes.transData.transform(
            (entry.value(HEADLINE_FIDELITY), entry.value(HEADLINE_LOCALIZATION))
        )
        return px * self._scale, py * self._scale

    @staticmethod
    def _neighbours(points: dict[str, tuple[float, float]], model: str) -> int:
        x, y = points[model]
        return sum(
            1
            for other, (u, v) in points.items()
            if other != model and math.hypot(u - x, v - y) < NEIGHBOUR_PT
        )

    def _size(self, text: str, coded: bool) -> tuple[float, float]:
        """Width and height in points of ``text``'s box (its padding included)."""
        probe = self.axes.text(0, 0, text, fontsize=self.font_pt, fontweight=self._weight(coded))
        extent = probe.get_window_extent(self._renderer)
        probe.remove()
        pad = 2 * self._pad(coded) * self.font_pt
        return extent.width * self._scale + pad, extent.height * self._scale + pad

    @staticmethod
    def _pad(coded: bool) -> float:
        return LETTER_PAD if coded else NAME_PAD

    @staticmethod
    def _weight(coded: bool) -> str:
        return "bold" if coded else "normal"

    def _choose(self, model: str, point, code: str, long_name_chars: int) -> PlacedLabel:
        if len(model) <= long_name_chars:
            found = self._beside(model, point, self._size(model, False), NEAR_GAPS_PT, coded=False)
            if found is not None:
                return found
        if self._disc_free(model, point):
            return PlacedLabel(code, True, marker_rect(*point, half=DISC_HALF_PT), disc=True)
        size = self._size(code, True)
        found = self._beside(code, point, size, NEAR_GAPS_PT) or self._beside(code, point, size, FAR_GAPS_PT)
        if found is not None:
            return found
        self.collisions += 1
        lines, self.lines = self.lines, []  # last resort: over interval bars (the white box covers them)
        try:
            found = self._beside(code, point, size, NEAR_GAPS_PT) or self._beside(
                code, point, size, FAR_GAPS_PT
            )
        finally:
            self.lines = lines
        return found or self._least_bad(point, code, size)

    def _beside(
        self, text: str, point, size, gaps: Sequence[float], coded: bool = True
    ) -> PlacedLabel | None:
        for gap in gaps:
            for angle in DIRECTIONS_DEG:
                box, leader = self._candidate(point, size, angle, gap, with_leader=gaps is FAR_GAPS_PT)
                if self._free(box, leader, point):
                    return PlacedLabel(text, coded, box, leader)
        return None

    def _candidate(
        self, point, size, angle: float, gap: float, with_leader: bool
    ) -> tuple[Rect, Segment | None]:
        (x, y), (width, height) = point, size
        c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
        reach = MARKER_HALF_PT + gap
        ax, ay = x + reach * c, y + reach * s
        x0 = ax if c > 0.3 else (ax - width if c < -0.3 else ax - width / 2)
        y0 = ay if s > 0.3 else (ay - height if s < -0.3 else ay - height / 2)
        leader = ((x + MARKER_HALF_PT * c, y + MARKER_HALF_PT * s), (ax, ay)) if with_leader else None
        return Rect(x0, y0, x0 + width, y0 + height), leader

    def _obstacles(self) -> list[Rect]:
        """Rectangles a label or leader must not touch (discs are checked as circles)."""
        return self.lines + list(self.markers.values()) + self.labels

    def _free(self, box: Rect, leader: Segment | None, point) -> bool:
        if not box.inside(self.frame, CLEARANCE_PT):
            return False
        if any(box.overlaps(rect, CLEARANCE_PT) for rect in self._obstacles()):
            return False
        if any(circle_hits_rect(x, y, DISC_HALF_PT + CLEARANCE_PT, box) for x, y in self.discs):
            return False
        if any(segment_hits_rect(other, box.grown(CLEARANCE_PT)) for other in self.leaders):
            return False
        if leader is None:
            return True
        own = marker_rect(*point)
        return not (
            any(segment_hits_rect(leader, rect) for rect in self._obstacles() if rect != own)
            or any(segment_hits_rect(leader, marker_rect(u, v, DISC_HALF_PT)) for u, v in self.discs)
            or any(segments_cross(leader, other) for other in self.leaders)
        )

    def _disc_free(self, model: str, point) -> bool:
        """A disc may cover bars and lines, not another marker, disc, label or leader, nor leave the frame."""
        x, y = point
        reach = DISC_HALF_PT + CLEARANCE_PT
        others = [rect for other, rect in self.markers.items() if other != model] + self.labels
        return (
            marker_rect(x, y, DISC_HALF_PT).inside(self.frame)
            and not any(circle_hits_rect(x, y, reach, rect) for rect in others)
            and not any(math.hypot(x - u, y - v) < 2 * DISC_HALF_PT + CLEARANCE_PT for u, v in self.discs)
            and not any(segment_hits_rect(leader, marker_rect(x, y, reach)) for leader in self.leaders)
        )

    def _least_bad(self, point, code: str, size) -> PlacedLabel:
        candidates = [
            self._candidate(point, size, angle, NEAR_GAPS_PT[0], False)[0] for angle in DIRECTIONS_DEG
        ]
        inside = [box for box in candidates if box.inside(self.frame)] or candidates
        box = min(inside, key=lambda b: sum(b.overlaps(rect) for rect in self._obstacles()))
        return PlacedLabel(code, True, box)

    def _draw(self, entry, point, label: PlacedLabel) -> None:
        xy = (entry.value(HEADLINE_FIDELITY), entry.value(HEADLINE_LOCALIZATION))
        if label.disc:
            self.discs.append(point)
            self.axes.plot(
                *([v] for v in xy),
                marker="o",
                markersize=2 * DISC_HALF_PT - 1.0,
                linestyle="none",
                color=self.colors[entry.model],
                markeredgecolor="white",
                markeredgewidth=1.0,
                zorder=8,
                label="_letter-disc",
            )
            self.axes.annotate(
                label.text,
                xy,
                ha="center",
                va="center",
                fontsize=DISC_FONT_PT,
                color="white",
                fontweight="bold",
                parse_math=False,
                zorder=9,
                label="_disc-letter",
            )
            return
        self.labels.append(label.box)
        pad = self._pad(label.coded)
        self.axes.annotate(
            label.text,
            xy,
            xytext=(
                label.box.x0 + pad * self.font_pt - point[0],
                label.box.y0 + pad * self.font_pt - point[1],
            ),
            textcoords="offset points",
            ha="left",
            va="bottom",
            fontsize=self.font_pt,
            fontweight=self._weight(label.coded),
            parse_math=False,
            zorder=7,
            label="_point-label",
            bbox={"boxstyle": f"round,pad={pad}", "facecolor": "white", "edgecolor": "none", "alpha": 0.9},
        )
        if label.leader is not None:
            self.leaders.append(label.leader)
            inverse = self.axes.transData.inverted()
            ends = [inverse.transform((x / self._scale, y / self._scale)) for x, y in label.leader]
            self.axes.plot(
                [ends[0][0], ends[1][0]],
                [ends[0][1], ends[1][1]],
                color=LEADER_COLOR,
                linewidth=0.7,
                zorder=6,
                label="_leader",
            )
