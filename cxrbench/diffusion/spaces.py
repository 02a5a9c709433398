"""Where the denoiser works: the pixel-unshuffled image, or the latent of a frozen autoencoder.

A sample space turns grayscale images (N, H, W) in [0, 1] into UNet inputs (N, C, h, w) and back.
``DiffusionModel`` trains, samples and localizes in whichever space it is given:

- ``PixelSpace``: the built-in models' pixel-unshuffled image (``cxrbench.diffusion.unet``).
- ``LatentSpace``: a diffusers ``AutoencoderKL`` (Stable Diffusion's VAE), frozen. Grayscale images are
  repeated to the VAE's input channels; latents are scaled by ``scaling_factor`` (after subtracting
  ``shift_factor`` where the VAE has one), as diffusers' pipelines do. The training set is encoded once
  and cached (in memory and in the fit's work folder), so every epoch reuses the same latents.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cxrbench.data.schema import Sample
from cxrbench.diffusion.unet import from_model_space, resize_images, to_model_space
from cxrbench.errors import ProtocolError
from cxrbench.protocol import derive_seed

#: Images per resize-and-encode chunk when a training set is brought into a space.
_ENCODE_CHUNK = 256


def images_tensor(images: Sequence[np.ndarray] | np.ndarray, size: int) -> torch.Tensor:
    """Grayscale images as a float32 (N, size, size) tensor (bilinear, antialiased resize)."""
    array = np.stack([np.asarray(image, dtype=np.float32) for image in images])
    return resize_images(torch.from_numpy(array), size)


class SampleSpace:
    """Images (N, H, W) in [0, 1] <-> UNet inputs (N, C, h, w)."""

    def sample_shape(self, image_size: int) -> tuple[int, int, int]:
        """(C, h, w) of an ``image_size`` image in this space."""
        raise NotImplementedError

    def encode(self, images: torch.Tensor, seeds: Sequence[int] | None = None) -> torch.Tensor:
        """UNet inputs of ``images``; ``seeds`` (one per image) draw from a stochastic encoder."""
        raise NotImplementedError

    def decode(self, samples: torch.Tensor) -> torch.Tensor:
        """Images (N, H, W) in [0, 1] of UNet inputs."""
        raise NotImplementedError

    def encode_training_set(
        self, train: Sequence[Sample], image_size: int, device: torch.device, seed: int, workdir: Path
    ) -> torch.Tensor:
        """The training images in this space, encoded once for the whole fit."""
        chunks = [images_tensor([s.image for s in train[start:start + _ENCODE_CHUNK]], image_size)
                  for start in range(0, len(train), _ENCODE_CHUNK)]
        return torch.cat([self.encode(chunk.to(device)) for chunk in chunks])


class PixelSpace(SampleSpace):
    """The image mapped to [-1, 1] and pixel-unshuffled by ``factor`` (see ``cxrbench.diffusion.unet``)."""

    def __init__(self, factor: int) -> None:
        self.factor = int(factor)

    def sample_shape(self, image_size: int) -> tuple[int, int, int]:
        return (self.factor**2, image_size // self.factor, image_size // self.factor)

    def encode(self, images: torch.Tensor, seeds: Sequence[int] | None = None) -> torch.Tensor:
        return to_model_space(images, self.factor)

    def decode(self, samples: torch.Tensor) -> torch.Tensor:
        return from_model_space(samples, self.factor)


class LatentSpace(SampleSpace):
    """The scaled latent of a frozen diffusers ``AutoencoderKL``.

    ``encode`` returns the posterior mean, or with ``seeds`` one draw per image from that image's own
    generator (so an image's latent does not depend on the batch). ``batch_size`` images go through the
    VAE at once. The VAE may be stored in half precision; latents and images are float32.
    """

    def __init__(self, vae: Any, batch_size: int = 8) -> None:
        self.vae = vae.requires_grad_(False).eval()
        self.batch_size = int(batch_size)
        config = vae.config
        self.scaling_factor = float(config.scaling_factor)
        self.shift_factor = float(getattr(config, "shift_factor", None) or 0.0)
        self.channels = int(config.latent_channels)
        self.in_channels = int(config.in_channels)
        self.downsampling = 2 ** (len(config.block_out_channels) - 1)

    @property
    def _parameter(self) -> torch.Tensor:
        return next(self.vae.parameters())

    def _no_autocast(self) -> torch.autocast:
        # The VAE runs in its own storage dtype, also inside a caller's autocast region.
        return torch.autocast(self._parameter.device.type, enabled=False)

    def sample_shape(self, image_size: int) -> tuple[int, int, int]:
        if image_size % self.downsampling:
            raise ProtocolError(
                f"image_size must be divisible by the VAE's downsampling factor {self.downsampling}, "
                f"but got {image_size}"
            )
        side = image_size // self.downsampling
        return (self.channels, side, side)

    def encode(self, images: torch.Tensor, seeds: Sequence[int] | None = None) -> torch.Tensor:
        if seeds is not None and len(seeds) != len(images):
            raise ProtocolError(f"seeds must have one entry per image ({len(images)}), but got {len(seeds)}")
        self.sample_shape(int(images.shape[-1]))
        weight = self._parameter
        out = []
        with torch.no_grad(), self._no_autocast():
            for start in range(0, len(images), self.batch_size):
                chunk = images[start:start + self.batch_size].to(weight.device)
                pixels = (chunk[:, None] * 2.0 - 1.0).expand(-1, self.in_channels, -1, -1).to(weight.dtype)
                posterior = self.vae.encode(pixels).latent_dist
                latents = posterior.mean.float()
                if seeds is not None:
                    noise = torch.stack([
                        torch.randn(latents.shape[1:], generator=torch.Generator().manual_seed(int(s)))
                        for s in seeds[start:start + self.batch_size]
                    ]).to(latents.device)
                    latents = latents + posterior.std.float() * noise
                out.append((latents - self.shift_factor) * self.scaling_factor)
        # Contiguous: the VAE may return channels-last memory, and the UNet's kernels (and so its float
        # rounding) depend on the layout; latents read back from the cache file are contiguous.
        return torch.cat(out).contiguous()

    def decode(self, samples: torch.Tensor) -> torch.Tensor:
        weight = self._parameter
        out = []
        with torch.no_grad(), self._no_autocast():
            for start in range(0, len(samples), self.batch_size):
                latents = samples[start:start + self.batch_size] / self.scaling_factor + self.shift_factor
                pixels = self.vae.decode(latents.to(weight.device, weight.dtype)).sample.float()
                out.append(((pixels.mean(dim=1) + 1.0) / 2.0).clamp(0.0, 1.0))
        return torch.cat(out)

    def _fingerprint(self, train: Sequence[Sample], image_size: int, seed: int) -> str:
        digest = hashlib.sha256()
        digest.update(json.dumps({"vae": dict(self.vae.config), "image_size": image_size, "seed": seed},
                                 sort_keys=True, default=str).encode())
        with torch.no_grad():  # a cheap stand-in for the weights' hash
            digest.update(repr([float(p.double().sum()) for p in self.vae.parameters()]).encode())
        for sample in train:
            digest.update(sample.id.encode())
            digest.update(b"\0")
        return digest.hexdigest()[:16]

    def encode_training_set(
        self, train: Sequence[Sample], image_size: int, device: torch.device, seed: int, workdir: Path
    ) -> torch.Tensor:
        """Latents of ``train`` (one posterior draw per image, seeded by ``derive_seed(seed, id)``), kept
        on the CPU; written to ``workdir/latents-<fingerprint>.safetensors`` and read back from there
        when a fit starts again with the same VAE, image size, seed and samples (a resumed fit, or the
        other processes of a multi-process run that reach it later)."""
        from safetensors.torch import load_file, save_file

        path = Path(workdir) / f"latents-{self._fingerprint(train, image_size, seed)}.safetensors"
        if path.is_file():
            return load_file(str(path))["latents"]
        chunks = []
        for start in range(0, len(train), _ENCODE_CHUNK):
            part = train[start:start + _ENCODE_CHUNK]
            images = images_tensor([s.image for s in part], image_size)
            chunks.append(self.encode(images, [derive_seed(seed, s.id) for s in part]).cpu())
        latents = torch.cat(chunks)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written aside and renamed: processes of one run that share the folder each write the same file.
        partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
        save_file({"latents": latents.contiguous()}, str(partial))
        os.replace(partial, path)
        return latents
