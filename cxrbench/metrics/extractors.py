"""Published feature extractors with weights from local files: Inception-V3 (pytorch-fid) and
torchxrayvision's DenseNet-121 (docs/metrics.md: FID with named feature extractors).

Nothing here downloads. pytorch-fid's ``InceptionV3`` and torchxrayvision's ``DenseNet(weights=...)``
both fetch their weights from a URL when built; this module builds the same architectures with random
initialization and loads the state dict of a local file instead:

- ``inception``: pytorch-fid's FID Inception-V3 (the TensorFlow FID network ported to PyTorch,
  ``pt_inception-2015-12-05-6726825d.pth``), 2048-d pool3 features. Weights: the ``path`` argument or
  ``$CXRBENCH_INCEPTION_WEIGHTS``.
- ``xrv``: torchxrayvision's ``densenet121-res224-all`` DenseNet-121, 1024-d ``features2`` (ReLU and global
  average pooling of the last dense block). Weights: the ``path`` argument or ``$CXRBENCH_XRV_WEIGHTS``;
  a state dict file, or the pickled model file torchxrayvision itself caches
  (``nih-pc-chex-mimic_ch-google-openi-kaggle-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt``),
  which is unpickled with ``weights_only=False``: point the variable only at a file you trust.

Missing weights, or a missing torchxrayvision package, raise :class:`~cxrbench.errors.AssetUnavailable`,
which a run records as "not available: <reason>" and goes on. Every extractor reports its name, weights
path and SHA-256, feature dimension, input size and resize method (``describe()``), which results record.
"""

from __future__ import annotations

import os
import pickle
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cxrbench.errors import AssetUnavailable
from cxrbench.metrics.evaluator import _sha256

__all__ = [
    "INCEPTION_WEIGHTS_ENV",
    "WEIGHTS_ENV",
    "XRV_WEIGHTS_ENV",
    "InceptionExtractor",
    "XRVExtractor",
    "fid_inception_architecture",
    "resolve_weights",
    "xrv_densenet_architecture",
]

INCEPTION_WEIGHTS_ENV = "CXRBENCH_INCEPTION_WEIGHTS"
XRV_WEIGHTS_ENV = "CXRBENCH_XRV_WEIGHTS"
#: The environment variable that configures each optional extractor's weights.
WEIGHTS_ENV: dict[str, str] = {"inception": INCEPTION_WEIGHTS_ENV, "xrv": XRV_WEIGHTS_ENV}
#: torchxrayvision's name of the weights whose architecture, targets and thresholds the ``xrv`` extractor uses.
XRV_WEIGHTS_NAME = "densenet121-res224-all"
XRV_INSTALL_HINT = "pip install 'cxrbench[xrv]'"
XRV_LABEL = "xrv DenseNet-121"


def resolve_weights(label: str, variable: str, path: str | Path | None) -> Path:
    """The weights file to load: ``path`` if given, else the environment ``variable``'s value.

    Raises:
        AssetUnavailable: neither is set ("no <label> weights: set <variable>"), or the file does not exist
            ("no <label> weights at <path>"), or the file is empty.
    """
    if path is None or str(path) == "":
        configured = os.environ.get(variable, "")
        if not configured:
            raise AssetUnavailable(f"no {label} weights: set {variable} to a local weights file")
        path = configured
    resolved = Path(path).expanduser()
    if not resolved.is_file():
        raise AssetUnavailable(f"no {label} weights at {resolved}")
    if resolved.stat().st_size == 0:
        raise AssetUnavailable(f"{label} weights file {resolved} is empty (0 bytes)")
    return resolved


#: Longest excerpt of a loading error kept in the "not available" note.
_MAX_DETAIL_CHARS = 240


def _excerpt(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or f"{type(exc).__name__} (no message)"
    return text if len(text) <= _MAX_DETAIL_CHARS else text[: _MAX_DETAIL_CHARS - 3] + "..."


def _read_weights(path: Path, label: str, allow_pickle: bool = False) -> Any:
    """``torch.load`` of a local weights file on the CPU; ``weights_only`` unless ``allow_pickle`` and needed."""
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            if not allow_pickle:
                raise
            return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a corrupt or foreign file: report it, do not end the run
        raise AssetUnavailable(f"cannot read {label} weights at {path}: {_excerpt(exc)}") from None


def _load_into(network: nn.Module, state_dict: dict[str, torch.Tensor], label: str, path: Path) -> None:
    try:
        network.load_state_dict(state_dict)
    except RuntimeError as exc:
        raise AssetUnavailable(f"{label} weights at {path} do not fit the architecture: {_excerpt(exc)}") from None


def _network_with_weights(build: Callable[[], nn.Module], label: str, variable: str, path: str | Path | None,
                          read_state: Callable[[Path], dict[str, torch.Tensor]]) -> tuple[nn.Module, Path]:
    """``build()`` with the weights of ``path`` (else of the environment ``variable``) loaded, and that
    file. The file is found and read before the network is built.

    Raises:
        AssetUnavailable: no path configured, the file is missing, or its tensors do not fit.
    """
    weights = resolve_weights(label, variable, path)
    state_dict = read_state(weights)
    network = build()
    _load_into(network, state_dict, label, weights)
    return network, weights


class _LocalWeightsExtractor:
    """Shared batching and bookkeeping; subclasses set the class attributes and ``_embed``."""

    name = ""
    input_size = 0
    resize_method = ""
    input_range = ""
    feature_dim = 0

    def __init__(self, network: nn.Module, path: Path, sha256: str, batch_size: int = 32) -> None:
        self.network = network.eval()
        self.path = path
        self.sha256 = sha256
        self.batch_size = batch_size

    def _embed(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def features(self, images: np.ndarray) -> np.ndarray:
        """(N, feature_dim) float64 features of (N, H, W) grayscale images in [0, 1] (outside: clipped)."""
        array = np.asarray(images)
        if array.ndim != 3:
            raise ValueError(f"images must have shape (N, H, W), but got shape {array.shape}")
        array = np.clip(np.nan_to_num(array.astype(np.float32, copy=False)), 0.0, 1.0)
        parts = []
        for start in range(0, len(array), self.batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(array[start:start + self.batch_size]))[:, None]
            parts.append(self._embed(batch).double().numpy())
        return np.concatenate(parts) if parts else np.zeros((0, self.feature_dim))

    def describe(self) -> dict[str, Any]:
        """What a result records about this extractor."""
        return {
            "name": self.name,
            "path": str(self.path),
            "sha256": self.sha256,
            "feature_dim": self.feature_dim,
            "input_size": self.input_size,
            "resize_method": self.resize_method,
            "input_range": self.input_range,
        }


# ------------------------------------------------------------------------------------------ Inception
def fid_inception_architecture() -> nn.Module:
    """pytorch-fid's FID Inception-V3, randomly initialized (``pytorch_fid.inception.fid_inception_v3``
    without its URL download): torchvision's Inception3 with 1008 classes, no auxiliary head, and the
    FID variants of the Mixed_5b ... Mixed_7c blocks. Its state dict has the key layout of
    ``pt_inception-2015-12-05-6726825d.pth``."""
    from pytorch_fid import inception as fid_inception

    network = fid_inception._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    network.Mixed_5b = fid_inception.FIDInceptionA(192, pool_features=32)
    network.Mixed_5c = fid_inception.FIDInceptionA(256, pool_features=64)
    network.Mixed_5d = fid_inception.FIDInceptionA(288, pool_features=64)
    network.Mixed_6b = fid_inception.FIDInceptionC(768, channels_7x7=128)
    network.Mixed_6c = fid_inception.FIDInceptionC(768, channels_7x7=160)
    network.Mixed_6d = fid_inception.FIDInceptionC(768, channels_7x7=160)
    network.Mixed_6e = fid_inception.FIDInceptionC(768, channels_7x7=192)
    network.Mixed_7b = fid_inception.FIDInceptionE_1(1280)
    network.Mixed_7c = fid_inception.FIDInceptionE_2(2048)
    return network


class _Pool3(nn.Module):
    """Input to pool3 of a FID Inception-V3, laid out as ``pytorch_fid.inception.InceptionV3([3])``."""

    def __init__(self, inception: nn.Module) -> None:
        super().__init__()
        self.blocks = nn.Sequential(
            inception.Conv2d_1a_3x3, inception.Conv2d_2a_3x3, inception.Conv2d_2b_3x3,
            nn.MaxPool2d(kernel_size=3, stride=2),
            inception.Conv2d_3b_1x1, inception.Conv2d_4a_3x3, nn.MaxPool2d(kernel_size=3, stride=2),
            inception.Mixed_5b, inception.Mixed_5c, inception.Mixed_5d, inception.Mixed_6a,
            inception.Mixed_6b, inception.Mixed_6c, inception.Mixed_6d, inception.Mixed_6e,
            inception.Mixed_7a, inception.Mixed_7b, inception.Mixed_7c,
            nn.AdaptiveAvgPool2d(output_size=(1, 1)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x).flatten(1)


def _inception_state_dict(path: Path) -> dict[str, torch.Tensor]:
    state_dict = _read_weights(path, "Inception")
    if not isinstance(state_dict, dict):
        raise AssetUnavailable(f"Inception weights at {path} hold a {type(state_dict).__name__}, "
                               "not a state dict")
    return state_dict


class InceptionExtractor(_LocalWeightsExtractor):
    """pytorch-fid's Inception-V3 pool3 features (2048-d) from a local weights file.

    Preprocessing is pytorch-fid's, applied once: grayscale [0, 1] images are replicated to 3 channels,
    resized to 299 x 299 with ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)``
    (no antialiasing, as pytorch-fid), then mapped to [-1, 1] by ``2x - 1`` (pytorch-fid's
    ``normalize_input``; nothing else normalizes them again).

    Example:
        >>> extractor = InceptionExtractor.load("pt_inception-2015-12-05-6726825d.pth")  # doctest: +SKIP
        >>> extractor.features(np.zeros((2, 64, 64))).shape  # doctest: +SKIP
        (2, 2048)
    """

    name = "inception"
    input_size = 299
    resize_method = "bilinear (align_corners=False, no antialias; pytorch-fid)"
    input_range = "[0, 1] replicated to RGB, then 2x - 1"
    feature_dim = 2048

    @classmethod
    def load(cls, path: str | Path | None = None, batch_size: int = 32) -> "InceptionExtractor":
        """Build the network and load ``path`` (default: ``$CXRBENCH_INCEPTION_WEIGHTS``).

        Raises:
            AssetUnavailable: no path configured, the file is missing, or its tensors do not fit.
        """
        network, weights = _network_with_weights(fid_inception_architecture, "Inception", INCEPTION_WEIGHTS_ENV,
                                                 path, _inception_state_dict)
        return cls(_Pool3(network), weights, _sha256(weights), batch_size)

    def _embed(self, images: torch.Tensor) -> torch.Tensor:
        x = images.expand(-1, 3, -1, -1)
        x = nn.functional.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear",
                                      align_corners=False)
        return self.network(2 * x - 1)


# ----------------------------------------------------------------------------------- torchxrayvision
def _import_xrv() -> Any:
    try:
        import torchxrayvision
    except ImportError:
        raise AssetUnavailable(f"torchxrayvision is not installed: {XRV_INSTALL_HINT}") from None
    return torchxrayvision


def xrv_densenet_architecture() -> nn.Module:
    """torchxrayvision's DenseNet-121 for ``densenet121-res224-all``, randomly initialized.

    Built with ``weights=None`` (so nothing is downloaded), then given what ``weights=...`` would set:
    its 18 targets and per-target operating-point thresholds (``op_threshs``), which only its
    classifier output uses. ``input_resolution`` is not set: the extractor resizes itself.
    """
    xrv = _import_xrv()
    spec = xrv.models.model_urls[XRV_WEIGHTS_NAME]
    network = xrv.models.DenseNet(weights=None, num_classes=len(spec["labels"]))
    network.targets = list(spec["labels"])
    network.pathologies = network.targets
    return network


def _xrv_state_dict(path: Path) -> dict[str, torch.Tensor]:
    # torchxrayvision caches a pickled nn.Module, which only an unrestricted unpickling reads (trusted
    # files only); a plain state dict loads with weights_only=True.
    loaded = _read_weights(path, XRV_LABEL, allow_pickle=True)
    if isinstance(loaded, nn.Module):
        for module in loaded.modules():  # modules pickled by older torch lack this attribute
            if not hasattr(module, "_non_persistent_buffers_set"):
                module._non_persistent_buffers_set = set()
        loaded = loaded.state_dict()
    if not isinstance(loaded, dict):
        raise AssetUnavailable(
            f"{XRV_LABEL} weights at {path} hold a {type(loaded).__name__}, not a state dict or a model"
        )
    # The thresholds are set from torchxrayvision's table; a file may or may not carry them.
    return OrderedDict((key, value) for key, value in loaded.items() if key != "op_threshs")


class XRVExtractor(_LocalWeightsExtractor):
    """torchxrayvision DenseNet-121 (``densenet121-res224-all``) ``features2``: 1024-d, from a local file.

    Preprocessing follows torchxrayvision: [0, 1] images are scaled to [-1024, 1024]
    (``xrv.utils.normalize`` with ``maxval=1``: ``(2x - 1) * 1024``), one channel, then resized to
    224 x 224 with ``interpolate(mode="bilinear", antialias=True)``, as ``xrv.utils.fix_resolution`` does.

    Example:
        >>> extractor = XRVExtractor.load("densenet121-res224-all.pt")  # doctest: +SKIP
        >>> extractor.features(np.zeros((2, 64, 64))).shape  # doctest: +SKIP
        (2, 1024)
    """

    name = "xrv"
    input_size = 224
    resize_method = "bilinear-antialias (torchxrayvision fix_resolution)"
    input_range = "[0, 1] scaled to [-1024, 1024], 1 channel"
    feature_dim = 1024

    @classmethod
    def load(cls, path: str | Path | None = None, batch_size: int = 32) -> "XRVExtractor":
        """Build the network and load ``path`` (default: ``$CXRBENCH_XRV_WEIGHTS``).

        Raises:
            AssetUnavailable: torchxrayvision is not installed, no path is configured, the file is
                missing, or its tensors do not fit.
        """
        xrv = _import_xrv()  # a missing package is reported before missing weights
        network, weights = _network_with_weights(xrv_densenet_architecture, XRV_LABEL, XRV_WEIGHTS_ENV, path,
                                                 _xrv_state_dict)
        spec = xrv.models.model_urls[XRV_WEIGHTS_NAME]
        network.op_threshs = torch.tensor(spec["op_threshs"], dtype=torch.float32)
        return cls(network, weights, _sha256(weights), batch_size)

    def _embed(self, images: torch.Tensor) -> torch.Tensor:
        x = (2 * images - 1) * 1024
        x = nn.functional.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear",
                                      antialias=True)
        return self.network.features2(x)
