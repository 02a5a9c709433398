"""The Sample schema every dataset yields, and the finding vocabulary of the benchmark.

Images are grayscale float32 arrays in [0, 1] with shape (H, W). Boxes are in pixel coordinates of
that array: ``x, y`` the top-left corner, ``w, h`` width and height (MS-CXR convention).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: The eight MS-CXR finding categories, in the order used everywhere (tables, classifier outputs).
FINDING_CLASSES: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Lung Opacity",
    "Pleural Effusion",
    "Pneumonia",
    "Pneumothorax",
)
NO_FINDING = "No Finding"
#: Classifier label order: the eight findings, then No Finding.
ALL_LABELS: tuple[str, ...] = FINDING_CLASSES + (NO_FINDING,)

#: Query words per class for attention localization (after the seed paper): a prompt word
#: matches when one of these is a case-insensitive substring of it.
QUERY_WORDS: dict[str, tuple[str, ...]] = {
    "Atelectasis": ("atelectasis", "atelectatic"),
    "Cardiomegaly": ("cardiomegaly", "cardiac"),
    "Consolidation": ("consolidation", "consolidative"),
    "Edema": ("edema",),
    "Lung Opacity": ("opacity", "opacities", "opacification"),
    "Pleural Effusion": ("pleural", "effusion"),
    "Pneumonia": ("pneumonia",),
    "Pneumothorax": ("pneumothorax", "pneumothoraces"),
}


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in pixel coordinates of the sample's image."""

    x: float
    y: float
    w: float
    h: float

    def __post_init__(self) -> None:
        if not (self.w > 0 and self.h > 0):
            raise ValueError(f"box width and height must be positive, but got w={self.w}, h={self.h}")

    @property
    def center(self) -> tuple[float, float]:
        return (self.x + self.w / 2.0, self.y + self.h / 2.0)

    def scaled(self, sx: float, sy: float) -> "Box":
        return Box(self.x * sx, self.y * sy, self.w * sx, self.h * sy)

    def to_list(self) -> list[float]:
        return [float(self.x), float(self.y), float(self.w), float(self.h)]


@dataclass(frozen=True)
class Finding:
    """One finding of a study: its class, the report phrase that states it, and its boxes (may be empty)."""

    label: str
    phrase: str
    boxes: tuple[Box, ...] = ()

    def __post_init__(self) -> None:
        if self.label not in ALL_LABELS:
            raise ValueError(f"finding label must be one of {ALL_LABELS}, but got {self.label!r}")


@dataclass
class Sample:
    """One study: id, grayscale image in [0, 1], report text (the prompt), split and findings."""

    id: str
    image: np.ndarray
    report: str
    split: str
    findings: tuple[Finding, ...] = field(default_factory=tuple)

    @property
    def labels(self) -> tuple[str, ...]:
        found = tuple(f.label for f in self.findings if f.label != NO_FINDING)
        return found if found else (NO_FINDING,)

    def label_vector(self) -> np.ndarray:
        """Multi-hot vector over ALL_LABELS."""
        vec = np.zeros(len(ALL_LABELS), dtype=np.float32)
        for label in self.labels:
            vec[ALL_LABELS.index(label)] = 1.0
        return vec


def box_mask(boxes: tuple[Box, ...] | list[Box], height: int, width: int) -> np.ndarray:
    """Union of boxes as a boolean (H, W) mask; pixel (r, c) is inside when its centre lies in a box."""
    mask = np.zeros((height, width), dtype=bool)
    rows = np.arange(height) + 0.5
    cols = np.arange(width) + 0.5
    for b in boxes:
        r_in = (rows >= b.y) & (rows < b.y + b.h)
        c_in = (cols >= b.x) & (cols < b.x + b.w)
        mask |= r_in[:, None] & c_in[None, :]
    return mask
