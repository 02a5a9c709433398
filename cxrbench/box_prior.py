"""The box-prior baseline: where findings of a class usually are, learned from the training boxes alone.

For each finding class, the map is the mean over the training findings of that class of their ground-truth
masks (the union of a finding's boxes, as the metrics score it), rasterized at the track's image size. It
looks at neither the image nor the words, so it is the localization any model gets for free from the
data's spatial statistics: a model's attention map is only informative where it beats this row.

It enters the protocol as a model (``box-prior``) with the ``localize`` capability only, so the core
scores its maps exactly as a diffusion model's; its ``baseline`` label makes the leaderboard show it as a
reference row instead of ranking it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cxrbench.data.schema import NO_FINDING, Box, Sample, box_mask
from cxrbench.model import LOCALIZE, ExtractionConfig, FitContext, LocalizationQuery, Model, TrainingBudget

__all__ = ["BoxPriorModel", "class_box_priors", "resize_map"]


def _scaled(box: Box, scale_y: float, scale_x: float) -> Box:
    return Box(box.x * scale_x, box.y * scale_y, box.w * scale_x, box.h * scale_y)


def class_box_priors(train: Sequence[Sample], image_size: int) -> dict[str, np.ndarray]:
    """Mean ground-truth mask per finding class over ``train``, as float32 (image_size, image_size) maps.

    Each finding with boxes contributes the union of its boxes, rasterized with
    :func:`cxrbench.data.schema.box_mask` after scaling the boxes from its image's size to ``image_size``
    (a pixel is inside when its centre is). Classes without a boxed finding are absent.
    """
    totals: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    for sample in train:
        height, width = sample.image.shape[:2]
        scale_y, scale_x = image_size / height, image_size / width
        for finding in sample.findings:
            if finding.label == NO_FINDING or not finding.boxes:
                continue
            boxes = [_scaled(b, scale_y, scale_x) for b in finding.boxes]
            mask = box_mask(boxes, image_size, image_size)
            if finding.label not in totals:
                totals[finding.label] = np.zeros((image_size, image_size), dtype=np.float64)
                counts[finding.label] = 0
            totals[finding.label] += mask
            counts[finding.label] += 1
    return {label: (totals[label] / counts[label]).astype(np.float32) for label in sorted(totals)}


def resize_map(heatmap: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``heatmap`` at ``shape``: bilinear, antialiased, ``align_corners=False``; unchanged at that shape."""
    heatmap = np.asarray(heatmap, dtype=np.float32)
    if heatmap.shape == tuple(shape):
        return heatmap
    import torch

    resized = torch.nn.functional.interpolate(
        torch.from_numpy(np.ascontiguousarray(heatmap))[None, None], size=tuple(shape), mode="bilinear",
        antialias=True, align_corners=False,
    )
    return resized[0, 0].numpy()


class BoxPriorModel(Model):
    """Localization baseline: the training set's mean box mask of the queried class, whatever the image.

    ``fit`` computes :func:`class_box_priors` at the track's image size; ``localize`` returns it as the
    ``word`` map (resized to the image when sizes differ). A class with no training boxes gets a constant
    map, which scores chance (AUC-ROC 0.5). No ``generate``: the leaderboard shows "-" for fidelity.
    """

    model_id = "box-prior"
    capabilities = frozenset({LOCALIZE})
    baseline = "box prior (train)"
    description = "Baseline: the training set's mean box mask of the finding's class, ignoring image and text."

    def fit(self, train: Sequence[Sample], budget: TrainingBudget, context: FitContext) -> None:
        self.priors = class_box_priors(train, context.image_size)
        self.image_size = context.image_size

    def localize(self, images: np.ndarray, queries: Sequence[LocalizationQuery],
                 extraction: ExtractionConfig) -> list[dict[str, np.ndarray]]:
        maps = []
        for image, query in zip(images, queries):
            shape = tuple(np.asarray(image).shape[:2])
            prior = self.priors.get(query.label)
            if prior is None:
                maps.append({"word": np.zeros(shape, dtype=np.float32)})
            else:
                maps.append({"word": resize_map(prior, shape)})
        return maps

    def save(self, directory: Path) -> bool:
        directory.mkdir(parents=True, exist_ok=True)
        arrays = {f"prior/{label}": prior for label, prior in self.priors.items()}
        np.savez(directory / "box_prior.npz", image_size=np.int64(self.image_size), **arrays)
        return True

    def load(self, directory: Path) -> bool:
        path = directory / "box_prior.npz"
        if not path.exists():
            return False
        with np.load(path) as data:
            self.image_size = int(data["image_size"])
            self.priors = {key.split("/", 1)[1]: data[key] for key in data.files if key.startswith("prior/")}
        return True
