"""The real-images baseline: every "generated" image is a real training image, drawn at random.

``generate`` ignores the prompt and returns, for each image seed, the training image
``np.random.default_rng(seed).integers(n_train)`` (so one (prompt, seed) gives one image in any batch or
process). Its images are real and disjoint from the held-out test images, so its scores are the floor of
the fidelity axis at the track's sample sizes: its FID is the distance between two real sets of the sizes
every entry is scored with, which finite sampling alone produces. An FID difference between entries that is
not clearly larger than this row's FID means nothing. The draws are with replacement (with n training
images and m draws, about m^2 / 2n repeats), as a generator's samples may repeat too.

Its conditional AUROC is chance (about 0.5), since the image does not depend on the prompt; the
``nearest-report`` baseline is the same idea with the prompt read.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cxrbench.box_prior import resize_map
from cxrbench.data.schema import Sample
from cxrbench.model import GENERATE, FitContext, Model, SamplerConfig, TrainingBudget

__all__ = ["RealImagesModel"]


class RealImagesModel(Model):
    """Fidelity floor: a random real training image for every requested image, whatever the prompt."""

    model_id = "real-images"
    capabilities = frozenset({GENERATE})
    baseline = "random training image"
    description = "Baseline: a real training image drawn by the image's seed, ignoring the prompt (FID floor)."

    def fit(self, train: Sequence[Sample], budget: TrainingBudget, context: FitContext) -> None:
        size = (context.image_size, context.image_size)
        images = [np.clip(resize_map(np.asarray(s.image, dtype=np.float32), size), 0.0, 1.0) for s in train]
        self.images = np.stack(images).astype(np.float32) if images else np.zeros((0, *size), np.float32)

    def generate(self, prompts: Sequence[str], seeds: Sequence[int], image_size: int,
                 sampler: SamplerConfig) -> np.ndarray:
        if len(self.images) == 0:
            raise RuntimeError("real-images was fitted on no training images")
        out = np.empty((len(prompts), image_size, image_size), dtype=np.float32)
        for i, seed in enumerate(seeds):
            chosen = int(np.random.default_rng(int(seed)).integers(len(self.images)))
            out[i] = np.clip(resize_map(self.images[chosen], (image_size, image_size)), 0.0, 1.0)
        return out

    def save(self, directory: Path) -> bool:
        directory.mkdir(parents=True, exist_ok=True)
        np.savez(directory / "real_images.npz", images=self.images)
        return True

    def load(self, directory: Path) -> bool:
        path = directory / "real_images.npz"
        if not path.exists():
            return False
        with np.load(path) as data:
            self.images = data["images"]
        return True
