"""Feature extractors from local weights (Inception-V3, torchxrayvision DenseNet-121) and how runs use them.

Weights are random state dicts saved to a temporary folder in each network's key layout: the tests check
the architecture, the preprocessing and the loading, never a download.
"""

from __future__ import annotations

import hashlib
import re
import sys

import numpy as np
import pytest
import torch

from cxrbench.errors import AssetUnavailable, ProtocolError
from cxrbench.metrics import extractors
from cxrbench.metrics.extractors import (
    INCEPTION_WEIGHTS_ENV,
    XRV_WEIGHTS_ENV,
    InceptionExtractor,
    XRVExtractor,
)
from cxrbench.registry import build_registry
from cxrbench.scoring import Scores, feature_extractors_to_run, feature_metric_outputs, score_fidelity


@pytest.fixture
def no_downloads(monkeypatch):
    """Any attempt to fetch weights from a URL fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"a download was attempted: {args} {kwargs}")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    from pytorch_fid import inception as fid_inception

    monkeypatch.setattr(fid_inception, "load_state_dict_from_url", refuse)


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------------------------ Inception
@pytest.fixture(scope="module")
def inception_weights(tmp_path_factory):
    torch.manual_seed(0)
    network = extractors.fid_inception_architecture()
    # Variance-preserving convolutions and non-trivial batch-norm statistics, so that the random network's
    # pool3 features are of order one and differ between images (the default init makes them ~1e-8).
    for module in network.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight)
        elif isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 2.0)
    path = tmp_path_factory.mktemp("inception") / "pt_inception-random.pth"
    torch.save(network.state_dict(), path)
    return path


@pytest.mark.slow
def test_inception_features_equal_pytorch_fids_own_network(inception_weights, monkeypatch, no_downloads):
    monkeypatch.setenv(INCEPTION_WEIGHTS_ENV, str(inception_weights))
    extractor = build_registry().feature_extractors["inception"].factory()  # the built-in, via the variable
    images = np.random.default_rng(0).random((2, 48, 40)).astype(np.float32)
    ours = extractor.features(images)
    assert ours.shape == (2, 2048) and ours.dtype == np.float64
    assert not np.allclose(ours[0], ours[1])

    # pytorch-fid's InceptionV3 (resize to 299, [0, 1] -> [-1, 1] once), its URL loader pointed at the file.
    from pytorch_fid import inception as fid_inception

    monkeypatch.setattr(fid_inception, "load_state_dict_from_url",
                        lambda *args, **kwargs: torch.load(inception_weights, weights_only=True))
    reference = fid_inception.InceptionV3([3], resize_input=True, normalize_input=True).eval()
    with torch.no_grad():
        rgb = torch.from_numpy(images)[:, None].repeat(1, 3, 1, 1)
        expected = reference(rgb)[0].flatten(1).double().numpy()
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=0)

    described = extractor.describe()
    assert described["name"] == "inception" and described["feature_dim"] == 2048
    assert described["path"] == str(inception_weights) and described["sha256"] == _sha256(inception_weights)
    assert described["input_size"] == 299 and "bilinear" in described["resize_method"]


def test_inception_without_weights_is_unavailable_with_the_reason(tmp_path, monkeypatch, no_downloads):
    monkeypatch.delenv(INCEPTION_WEIGHTS_ENV, raising=False)
    with pytest.raises(AssetUnavailable, match=f"no Inception weights: set {INCEPTION_WEIGHTS_ENV}"):
        InceptionExtractor.load()
    missing = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    with pytest.raises(AssetUnavailable, match=f"^no Inception weights at {re.escape(str(missing))}$"):
        InceptionExtractor.load(missing)
    monkeypatch.setenv(INCEPTION_WEIGHTS_ENV, str(missing))
    with pytest.raises(AssetUnavailable, match="no Inception weights at"):
        InceptionExtractor.load()
    not_weights = tmp_path / "notes.pth"
    not_weights.write_text("not a checkpoint")
    with pytest.raises(AssetUnavailable, match="cannot read Inception weights at"):
        InceptionExtractor.load(not_weights)


# ------------------------------------------------------------------------------------ torchxrayvision
@pytest.fixture(scope="module")
def xrv_network_and_weights(tmp_path_factory):
    xrv = pytest.importorskip("torchxrayvision")
    torch.manual_seed(1)
    network = xrv.models.DenseNet(weights=None, num_classes=18).eval()
    folder = tmp_path_factory.mktemp("xrv")
    torch.save(network.state_dict(), folder / "densenet121-random.pt")
    torch.save(network, folder / "densenet121-random-model.pt")  # the form torchxrayvision caches
    return network, folder


@pytest.mark.slow
def test_xrv_features_equal_densenet_features2(xrv_network_and_weights, monkeypatch, no_downloads):
    import torchxrayvision as xrv

    network, folder = xrv_network_and_weights
    path = folder / "densenet121-random.pt"
    monkeypatch.setenv(XRV_WEIGHTS_ENV, str(path))
    extractor = build_registry().feature_extractors["xrv"].factory()
    images = np.random.default_rng(1).random((2, 64, 64)).astype(np.float32)
    ours = extractor.features(images)
    assert ours.shape == (2, 1024)
    # torchxrayvision's convention: [-1024, 1024], one channel, 224 x 224 (its fix_resolution resize).
    x = (2 * torch.from_numpy(images)[:, None] - 1) * 1024
    x = torch.nn.functional.interpolate(x, size=(224, 224), mode="bilinear", antialias=True)
    with torch.no_grad():
        expected = network.features2(x).double().numpy()
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)

    spec = xrv.models.model_urls["densenet121-res224-all"]
    assert extractor.network.targets == spec["labels"]
    np.testing.assert_allclose(extractor.network.op_threshs.numpy(), spec["op_threshs"], rtol=1e-6)
    described = extractor.describe()
    assert (described["name"], described["feature_dim"], described["input_size"]) == ("xrv", 1024, 224)
    assert described["sha256"] == _sha256(path)


@pytest.mark.slow
def test_xrv_reads_the_pickled_model_file(xrv_network_and_weights, no_downloads):
    network, folder = xrv_network_and_weights
    loaded = XRVExtractor.load(folder / "densenet121-random-model.pt").network.state_dict()
    for key, value in network.state_dict().items():
        assert torch.equal(loaded[key], value), key


def test_xrv_unavailable_reasons(tmp_path, monkeypatch, no_downloads):
    pytest.importorskip("torchxrayvision")
    monkeypatch.delenv(XRV_WEIGHTS_ENV, raising=False)
    with pytest.raises(AssetUnavailable, match=f"set {XRV_WEIGHTS_ENV}"):
        XRVExtractor.load()
    missing = tmp_path / "densenet121.pt"
    with pytest.raises(AssetUnavailable, match=f"no xrv DenseNet-121 weights at {re.escape(str(missing))}"):
        XRVExtractor.load(missing)
    monkeypatch.setitem(sys.modules, "torchxrayvision", None)  # as if it were not installed
    with pytest.raises(AssetUnavailable, match=re.escape("pip install 'cxrbench[xrv]'")):
        XRVExtractor.load(missing)


# ------------------------------------------------------------------------------------ in a run
def test_which_extractors_a_run_uses():
    registered = ["domain", "inception", "xrv", "third-party"]
    assert feature_extractors_to_run(registered, ("domain",), environ={}) == ["domain", "third-party"]
    configured = {INCEPTION_WEIGHTS_ENV: "/weights/pt_inception.pth"}
    assert feature_extractors_to_run(registered, ("domain",), environ=configured) == [
        "domain", "inception", "third-party"
    ]
    paper = ("domain", "inception", "xrv")  # listed by the track: reported even when not configured
    assert feature_extractors_to_run(registered, paper, environ={}) == sorted(registered)
    assert feature_extractors_to_run(registered, ("domain",), requested=["xrv"], environ=configured) == ["xrv"]
    with pytest.raises(ProtocolError, match=r"must be among .* but got \['incepton'\]"):
        feature_extractors_to_run(registered, ("domain",), requested=["incepton"])
    from cxrbench.protocol import get_track

    assert get_track("default").feature_extractors == ("domain",)
    assert get_track("paper").feature_extractors == paper


@pytest.mark.slow
def test_unavailable_extractor_is_recorded_for_every_metric_and_the_others_are_scored(tmp_path):
    from cxrbench.metrics.evaluator import DomainEvaluator
    from cxrbench.testing import tiny_samples

    _, test = tiny_samples(n_train=0, n_test=12, image_size=32)
    real = np.stack([s.image for s in test])
    noise = np.random.default_rng(0).normal(0.0, 0.05, size=(2, *real.shape))
    generated = np.clip(np.concatenate([real + noise[0], real + noise[1]]), 0.0, 1.0).astype(np.float32)
    prompt_index = np.concatenate([np.arange(12), np.arange(12)])
    missing = tmp_path / "pt_inception.pth"
    factories = {"domain": DomainEvaluator.load, "inception": lambda: InceptionExtractor.load(missing)}
    scores = Scores()
    score_fidelity(scores, real, generated, prompt_index, [s.labels for s in test], factories, seed=0)

    note = f"not available: no Inception weights at {missing}"
    assert set(feature_metric_outputs()) >= {"fid", "kid", "precision", "recall"}
    for prefix in feature_metric_outputs():
        entry = scores.metrics[f"{prefix}_inception"]
        assert entry["value"] is None and entry["note"] == note, prefix
        assert scores.metrics[f"{prefix}_domain"]["value"] is not None, prefix
    assert scores.evaluators["inception"] == {"name": "inception", "available": False, "note": note}
    assert scores.evaluators["domain"]["available"] is True and scores.evaluators["domain"]["feature_dim"] == 128
    precision = scores.metrics["precision_domain"]
    assert 0.0 <= precision["ci_low"] <= precision["value"] <= precision["ci_high"] <= 1.0
    assert precision["n"] == 24 and "k=3" in precision["note"] and precision["higher_is_better"] is True
    assert scores.metrics["recall_domain"]["n"] == 12
    fid = scores.metrics["fid_domain"]
    assert "12 real vs 24 generated, 128-d features" in fid["note"] and "rank-deficient" in fid["note"]
    assert scores.metrics["kid_domain"]["note"].startswith("100 subsets of 6")  # half the smaller set
