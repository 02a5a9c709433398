"""Reusable building block for diffusers-based model plugins: a small text-conditioned UNet that trains,
samples and localizes with its cross-attention on the benchmark contract (``DiffusionModel``)."""

from cxrbench.diffusion.model import DiffusionModel, DiffusionOptions
from cxrbench.diffusion.text import TextConditioner, load_text_encoder, minilm_path

__all__ = ["DiffusionModel", "DiffusionOptions", "TextConditioner", "load_text_encoder", "minilm_path"]
