"""The image the optimization starts from: the paper's white noise, the photo, the photo recoloured to the
paintings' colours (the default), a painting, or a file."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image
from torch import Tensor

from . import color
from . import images as imageio
from .errors import SettingsError


def initial_image(init: str, shape: tuple[int, int], seed: int, content: Tensor | None,
                  styles: Sequence[Tensor], max_pixels: int, color_match: str) -> Tensor:
    """The starting image at `shape` (height, width)."""
    height, width = shape
    if init == "noise":
        # Uniform white noise in [0, 1], drawn on the CPU so a seed gives the same image on every device.
        generator = torch.Generator().manual_seed(seed)
        return torch.rand(1, 3, height, width, generator=generator)
    if init in ("content", "recolored"):
        if content is None:
            raise SettingsError(f"{{init}} {init} needs a content image", field="init")
        if init == "content" or not styles:
            return content.clone()
        # The photo with the paintings' colour mean and covariance (the colour paper's histogram matching,
        # the other way round): conv1_1's Gram matrix, mostly colour, starts near its target, and the
        # optimization spends its steps on texture (docs/benchmarks.md).
        palette = torch.cat([s.reshape(1, 3, 1, -1) for s in styles], dim=3)
        return color.color_transfer(content, palette, color_match)
    if init == "style":
        if not styles:
            raise SettingsError("{init} style needs a style image", field="init")
        return torch.nn.functional.interpolate(styles[0], size=shape, mode="bilinear", align_corners=False,
                                               antialias=True).clamp(0, 1)
    picture = imageio.open_image(init, max_pixels).resize((width, height), Image.Resampling.LANCZOS)
    return imageio.to_tensor(picture)
