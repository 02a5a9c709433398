"""The domain evaluator: a small CNN trained on SynthCXR, used for "domain FID" and conditional accuracy.

As torchxrayvision's classifiers serve FID on real chest X-rays, this network serves SynthCXR: a
multi-label classifier over ``ALL_LABELS`` (8 findings + No Finding, sigmoid outputs) on 64 x 64
inputs, whose globally average-pooled penultimate activations are the FID features. Its weights are
committed (``cxrbench/assets/domain_evaluator.safetensors``, trained by
``scripts/train_domain_evaluator.py`` on a SynthCXR seed no track uses), and every result records
their SHA-256, so every machine measures fidelity with the same network.

Inputs of any size are resized once to 64 x 64 with ``torch.nn.functional.interpolate(mode="bilinear",
antialias=True, align_corners=False)`` (``resize_method = "bilinear-antialias"``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cxrbench.data.schema import ALL_LABELS
from cxrbench.errors import AssetUnavailable

#: Where the committed weights and their description live.
ASSET_DIR = Path(__file__).resolve().parent.parent / "assets"
DEFAULT_WEIGHTS = ASSET_DIR / "domain_evaluator.safetensors"
INPUT_SIZE = 64
#: Images in [0, 1] are mapped to (x - mean) / std before the first convolution.
INPUT_MEAN, INPUT_STD = 0.5, 0.25


def resize_to_input(images: torch.Tensor, size: int = INPUT_SIZE) -> torch.Tensor:
    """Resize (N, 1, H, W) images to ``size`` x ``size``: bilinear, antialiased, align_corners=False.

    The one resize the evaluator applies (training and inference alike); a no-op at the input size.
    """
    if images.shape[-2:] == (size, size):
        return images
    return nn.functional.interpolate(images, size=(size, size), mode="bilinear", antialias=True,
                                     align_corners=False)


def _conv(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True)]


class DomainCNN(nn.Module):
    """A strided stem (64 -> 32 px), conv-BN-ReLU blocks at 32, 16 and 8 px, global average pooling, one
    linear layer (about 0.28 M parameters).

    ``features`` returns the pooled ``channels[-1]``-dimensional activations (the FID features);
    ``forward`` returns one logit per label.
    """

    def __init__(self, channels: tuple[int, ...] = (16, 32, 64, 128), n_outputs: int = len(ALL_LABELS)
                 ) -> None:
        super().__init__()
        c1, c2, c3, c4 = channels
        self.channels = tuple(channels)
        self.body = nn.Sequential(
            *_conv(1, c1, stride=2), *_conv(c1, c2), nn.MaxPool2d(2),
            *_conv(c2, c3), *_conv(c3, c3), nn.MaxPool2d(2),
            *_conv(c3, c4), *_conv(c4, c4),
        )
        self.head = nn.Linear(c4, n_outputs)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled penultimate activations of normalized (N, 1, 64, 64) inputs."""
        return self.body(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class DomainEvaluator:
    """The committed domain evaluator: FID features and label probabilities for grayscale images.

    Attributes:
        name: "domain" (the feature-extractor name results use: ``fid_domain``).
        input_size: 64; every image is resized to it once (``resize_method``).
        feature_dim: length of a feature vector (128).
        labels: the order of ``predict_proba``'s columns (``ALL_LABELS``).
        sha256: SHA-256 of the weights file, recorded in every result.

    Example:
        >>> evaluator = DomainEvaluator.load()
        >>> evaluator.features(np.zeros((2, 64, 64))).shape
        (2, 128)
    """

    name = "domain"
    input_size = INPUT_SIZE
    resize_method = "bilinear-antialias"
    labels: tuple[str, ...] = ALL_LABELS

    def __init__(self, model: DomainCNN, sha256: str, path: Path | None = None, batch_size: int = 256
                 ) -> None:
        self.model = model.eval()
        self.sha256 = sha256
        self.path = path
        self.batch_size = batch_size
        self.feature_dim = int(model.channels[-1])

    @classmethod
    def load(cls, path: Path | str | None = None) -> "DomainEvaluator":
        """Load weights from ``path`` (default: the committed asset).

        Raises:
            AssetUnavailable: if the weights file does not exist.
        """
        from safetensors.torch import load_file, safe_open

        path = Path(path) if path is not None else DEFAULT_WEIGHTS
        if not path.is_file():
            raise AssetUnavailable(
                f"domain evaluator weights not found at {path}; train them with "
                "`python scripts/train_domain_evaluator.py` or pass the path of an existing file"
            )
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
        channels = tuple(json.loads(meta.get("channels", "[16, 32, 64, 128]")))
        model = DomainCNN(channels)
        model.load_state_dict(load_file(str(path)))
        return cls(model, _sha256(path), path)

    def _batches(self, images: np.ndarray) -> list[torch.Tensor]:
        array = np.asarray(images)
        if array.ndim != 3:
            raise ValueError(f"images must have shape (N, H, W), but got shape {array.shape}")
        array = np.clip(np.nan_to_num(array.astype(np.float32, copy=False)), 0.0, 1.0)
        out = []
        for start in range(0, len(array), self.batch_size):
            x = torch.from_numpy(np.ascontiguousarray(array[start:start + self.batch_size]))[:, None]
            out.append((resize_to_input(x) - INPUT_MEAN) / INPUT_STD)
        return out

    @torch.no_grad()
    def features(self, images: np.ndarray) -> np.ndarray:
        """(N, feature_dim) float64 FID features of (N, H, W) images in [0, 1] (values outside: clipped)."""
        parts = [self.model.features(x).double().numpy() for x in self._batches(images)]
        return np.concatenate(parts) if parts else np.zeros((0, self.feature_dim))

    @torch.no_grad()
    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """(N, 9) float64 sigmoid probabilities over ``labels`` for (N, H, W) images in [0, 1]."""
        parts = [torch.sigmoid(self.model(x)).double().numpy() for x in self._batches(images)]
        return np.concatenate(parts) if parts else np.zeros((0, len(self.labels)))

    def describe(self) -> dict[str, Any]:
        """What a result records about this evaluator."""
        return {"name": self.name, "sha256": self.sha256, "resize_method": self.resize_method,
                "input_size": self.input_size, "feature_dim": self.feature_dim}
