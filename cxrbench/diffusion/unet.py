"""The denoiser: a small diffusers ``UNet2DConditionModel`` on the pixel-unshuffled image.

Model input space: a grayscale image in [0, 1] of size (H, W) is mapped to [-1, 1] and pixel-unshuffled
by a factor ``f`` (``torch.nn.functional.pixel_unshuffle``) into (f * f, H / f, W / f): a 64 px image with
f = 4 becomes 16 x 16 x 16. The UNet works on that grid, so its cross-attention layers see 16 x 16 and
8 x 8 maps; ``pixel_shuffle`` inverts the mapping exactly.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from cxrbench.errors import ProtocolError

#: Side of the grid the UNet works on when the unshuffle factor is chosen automatically.
DEFAULT_UNET_GRID = 16


def unshuffle_factor_for(image_size: int, requested: int | None, num_blocks: int) -> int:
    """The pixel-unshuffle factor for ``image_size``: ``requested``, or image_size // 16 (at least 1).

    The automatic choice keeps the UNet grid at 16 x 16 on every track (32 px -> 2, 64 px -> 4), so
    attention maps have the same resolution relative to the image. The grid side must be divisible by
    2 ** (num_blocks - 1), the UNet's total downsampling.
    """
    factor = requested if requested is not None else max(1, image_size // DEFAULT_UNET_GRID)
    downsampling = 2 ** (num_blocks - 1)
    if factor < 1 or image_size % factor or (image_size // factor) % downsampling:
        raise ProtocolError(
            f"image_size {image_size} must be divisible by unshuffle_factor x {downsampling} "
            f"(the UNet's downsampling), but got unshuffle_factor={factor}"
        )
    return factor


def build_unet(
    in_channels: int,
    cross_attention_dim: int,
    block_out_channels: tuple[int, ...],
    layers_per_block: int,
    attention_heads: int,
    norm_num_groups: int,
) -> Any:
    """A ``UNet2DConditionModel`` with cross-attention in every down and up block and the mid block.

    ``attention_heads`` is passed as diffusers' ``attention_head_dim``, which that class uses as the
    number of heads (a documented naming quirk of diffusers); few heads are faster on CPU.
    """
    from diffusers import UNet2DConditionModel

    blocks = len(block_out_channels)
    return UNet2DConditionModel(
        sample_size=DEFAULT_UNET_GRID,
        in_channels=in_channels,
        out_channels=in_channels,
        down_block_types=("CrossAttnDownBlock2D",) * blocks,
        up_block_types=("CrossAttnUpBlock2D",) * blocks,
        block_out_channels=tuple(block_out_channels),
        layers_per_block=layers_per_block,
        attention_head_dim=attention_heads,
        cross_attention_dim=cross_attention_dim,
        norm_num_groups=norm_num_groups,
    )


def to_model_space(images: torch.Tensor, factor: int) -> torch.Tensor:
    """Images (N, H, W) in [0, 1] -> UNet input (N, factor**2, H / factor, W / factor) in [-1, 1]."""
    return F.pixel_unshuffle(images[:, None] * 2.0 - 1.0, factor)


def from_model_space(samples: torch.Tensor, factor: int) -> torch.Tensor:
    """UNet samples (N, factor**2, h, w) -> images (N, h * factor, w * factor) clipped to [0, 1]."""
    return ((F.pixel_shuffle(samples, factor)[:, 0] + 1.0) / 2.0).clamp(0.0, 1.0)


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """Images (N, H, W) resized to (N, size, size), bilinear with antialiasing; unchanged when equal."""
    if tuple(images.shape[-2:]) == (size, size):
        return images
    return F.interpolate(images[:, None], size=(size, size), mode="bilinear", antialias=True,
                         align_corners=False)[:, 0]
