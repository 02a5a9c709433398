"""Reusable building block for diffusers-based model plugins: a text-conditioned UNet that trains,
samples and localizes with its cross-attention on the benchmark contract (``DiffusionModel``), in pixel
space (the built-in models) or in a frozen VAE's latent space (``LatentSpace``, Stable Diffusion)."""

from cxrbench.diffusion.model import DiffusionModel, DiffusionOptions, fixed_text_encoder, seeded_torch_draws
from cxrbench.diffusion.spaces import LatentSpace, PixelSpace, SampleSpace
from cxrbench.diffusion.text import TextConditioner, load_text_encoder, minilm_path

__all__ = ["DiffusionModel", "DiffusionOptions", "LatentSpace", "PixelSpace", "SampleSpace",
           "TextConditioner", "fixed_text_encoder", "load_text_encoder", "minilm_path", "seeded_torch_draws"]
