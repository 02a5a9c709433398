"""The real-images baseline: real training images drawn by the image's seed, whatever the prompt."""

from __future__ import annotations

import numpy as np
import pytest

from cxrbench.data.synthcxr import SynthCXR
from cxrbench.metrics.fidelity import fid_from_features
from cxrbench.model import FitContext, SamplerConfig, TrainingBudget
from cxrbench.real_images import RealImagesModel
from cxrbench.testing import assert_model_compliant

BUDGET = TrainingBudget(steps=1, batch_size=1, unet_learning_rate=1e-3, text_encoder_learning_rate=1e-3)
SIZE = 32


@pytest.fixture(scope="module")
def data():
    return SynthCXR(n_train=96, n_test=16, image_size=SIZE, seed=0)


def fitted(train, tmp_path) -> RealImagesModel:
    model = RealImagesModel()
    model.fit(train, BUDGET, FitContext(seed=0, workdir=tmp_path, image_size=SIZE))
    return model


def test_every_image_is_a_training_image_chosen_by_its_seed_alone(data, tmp_path):
    train = data.split("train")
    model = fitted(train, tmp_path)
    seeds = list(range(40))
    images = model.generate(["Left pleural effusion."] * 40, seeds, SIZE, SamplerConfig())
    again = model.generate(["No acute process."] * 5, seeds[::-1][:5], SIZE, SamplerConfig())
    for image in images:
        assert any(np.array_equal(image, s.image.astype(np.float32)) for s in train)
    # The prompt and the batch do not matter: the same seed gives the same image.
    np.testing.assert_array_equal(again, images[::-1][:5])
    assert len({image.tobytes() for image in images}) > 20  # seeds spread over the training set


def test_its_fid_is_the_floor_that_sampling_alone_gives(data, tmp_path):
    # Against real held-out images, real training images are much closer than a blurred copy of them.
    train, test = data.split("train"), data.split("test")
    images = fitted(train, tmp_path).generate([""] * 64, list(range(64)), SIZE, SamplerConfig())
    flat = lambda x: np.asarray(x, np.float64).reshape(len(x), -1)[:, ::16]  # noqa: E731
    real = flat([s.image for s in test] * 4)
    floor = fid_from_features(real, flat(images))["value"]
    blurred = fid_from_features(real, flat(images * 0.5 + 0.25))["value"]
    assert floor < blurred


def test_real_images_is_compliant():
    assert_model_compliant(RealImagesModel)
