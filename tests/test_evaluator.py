"""The committed domain evaluator: loads, is deterministic, and sees SynthCXR findings."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
import torch

from cxrbench.data.schema import ALL_LABELS, FINDING_CLASSES
from cxrbench.data.synthcxr import SynthCXR
from cxrbench.errors import AssetUnavailable
from cxrbench.metrics.evaluator import DEFAULT_WEIGHTS, DomainEvaluator, resize_to_input


@pytest.fixture(scope="module")
def evaluator() -> DomainEvaluator:
    return DomainEvaluator.load()


def _auroc(truth: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC as the probability that a positive outscores a negative (ties count half)."""
    pos, neg = score[truth > 0], score[truth == 0]
    return float(((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])).mean())


def _auroc_per_label(evaluator: DomainEvaluator, samples: list) -> dict[str, float]:
    truth = np.stack([s.label_vector() for s in samples])
    proba = evaluator.predict_proba(np.stack([s.image for s in samples]))
    return {label: _auroc(truth[:, j], proba[:, j]) for j, label in enumerate(ALL_LABELS)}


def test_auroc_helper_matches_its_definition():
    assert _auroc(np.array([1, 0, 1, 0]), np.array([0.9, 0.1, 0.8, 0.2])) == 1.0
    assert _auroc(np.array([1, 0, 1, 0]), np.array([0.1, 0.9, 0.2, 0.8])) == 0.0
    assert _auroc(np.array([1, 0]), np.array([0.5, 0.5])) == 0.5


def test_committed_asset_is_small_and_described(evaluator):
    assert DEFAULT_WEIGHTS.stat().st_size < 2_000_000
    assert evaluator.sha256 == hashlib.sha256(DEFAULT_WEIGHTS.read_bytes()).hexdigest()
    description = json.loads(DEFAULT_WEIGHTS.with_suffix(".json").read_text())
    assert description["weights_sha256"] == evaluator.sha256
    assert description["architecture"]["feature_dim"] == evaluator.feature_dim
    assert description["architecture"]["outputs"] == list(ALL_LABELS)
    # The evaluator never saw the tracks' data: it was trained on other seeds.
    assert all(s["seed"] != 0 for s in description["training"]["train_sets"])


def test_features_and_probabilities_have_documented_shapes(evaluator):
    images = np.stack([s.image for s in SynthCXR(4, 0, 64, seed=11).split("train")])
    features = evaluator.features(images)
    proba = evaluator.predict_proba(images)
    assert evaluator.name == "domain" and evaluator.input_size == 64 and evaluator.feature_dim == 128
    assert features.shape == (4, 128) and features.dtype == np.float64 and np.isfinite(features).all()
    assert proba.shape == (4, len(ALL_LABELS)) and ((proba >= 0) & (proba <= 1)).all()
    assert evaluator.features(images[:0]).shape == (0, 128)


def test_deterministic_and_independent_of_batching(evaluator):
    images = np.stack([s.image for s in SynthCXR(6, 0, 64, seed=12).split("train")])
    first, second = evaluator.features(images), evaluator.features(images)
    assert np.array_equal(first, second)
    small_batches = DomainEvaluator(evaluator.model, evaluator.sha256, batch_size=4)
    np.testing.assert_allclose(small_batches.features(images), first, rtol=1e-4, atol=1e-5)


def test_any_size_is_resized_once_with_the_pinned_method(evaluator):
    small = np.stack([s.image for s in SynthCXR(3, 0, 32, seed=13).split("train")])
    upsampled = resize_to_input(torch.from_numpy(small)[:, None])[:, 0].numpy()
    assert upsampled.shape == (3, 64, 64)
    np.testing.assert_allclose(evaluator.features(small), evaluator.features(upsampled), atol=1e-6)
    assert evaluator.resize_method == "bilinear-antialias"


def test_sees_findings_on_a_fresh_sample(evaluator):
    """A sample no training run used: every finding separates from the rest."""
    auroc = _auroc_per_label(evaluator, SynthCXR(0, 120, 64, seed=4242).split("test"))
    assert min(auroc[label] for label in FINDING_CLASSES) > 0.8, auroc
    assert np.mean([auroc[label] for label in FINDING_CLASSES]) > 0.93, auroc


def test_reaches_the_target_on_the_default_track_test_split(evaluator):
    """Per-finding AUROC >= 0.9 on SynthCXR seed 0, 120 test studies at 64 px (the default track's split)."""
    auroc = _auroc_per_label(evaluator, SynthCXR(0, 120, 64, seed=0).split("test"))
    assert min(auroc[label] for label in FINDING_CLASSES) >= 0.9, auroc


def test_reads_the_smoke_track_resolution(evaluator):
    auroc = _auroc_per_label(evaluator, SynthCXR(0, 80, 32, seed=4243).split("test"))
    assert np.mean([auroc[label] for label in FINDING_CLASSES]) > 0.9, auroc


def test_missing_weights_raise_asset_unavailable(tmp_path):
    missing = tmp_path / "nowhere" / "weights.safetensors"
    with pytest.raises(AssetUnavailable, match="nowhere"):
        DomainEvaluator.load(missing)


def test_loads_from_an_explicit_path(tmp_path, evaluator):
    copy = tmp_path / "copy.safetensors"
    shutil.copy(DEFAULT_WEIGHTS, copy)
    loaded = DomainEvaluator.load(copy)
    assert loaded.sha256 == evaluator.sha256 and loaded.path == copy
    images = np.full((2, 64, 64), 0.5, dtype=np.float32)
    assert np.array_equal(loaded.features(images), evaluator.features(images))


def test_rejects_images_without_a_batch_axis(evaluator):
    with pytest.raises(ValueError, match=r"\(N, H, W\).*\(64, 64\)"):
        evaluator.features(np.zeros((64, 64)))
