"""Spatial control's masks (Gatys et al., CVPR 2017, sec. 4): images of flat colours, one colour per region,
read into guidance channels."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from . import images as imageio
from .config import Settings
from .errors import SettingsError, literal
from .objective import Guidance

#: More colours than this in a content mask means it is not a mask of flat colours (e.g. a JPEG's artefacts).
MAX_REGIONS = 16


def mask_colours(path: str, shape: tuple[int, int], max_pixels: int) -> np.ndarray:
    """A mask image as an (h, w) array of packed RGB colours, resized (nearest neighbour) to `shape`."""
    mask = imageio.open_image(path, max_pixels).resize((shape[1], shape[0]), Image.Resampling.NEAREST)
    rgb = np.asarray(mask, dtype=np.int64)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def guidance(settings: Settings, shape: tuple[int, int], styles: list[Tensor]) -> Guidance:
    """Guidance channels from the masks: one region per colour of the content mask."""
    assert settings.content_mask is not None and settings.style_mask is not None
    if len(settings.style_mask) != len(styles):
        raise SettingsError(f"{{style_mask}} has {len(settings.style_mask)} masks for {len(styles)} style image(s)",
                            field="style_mask")
    content = mask_colours(settings.content_mask, shape, settings.max_pixels)
    colours = np.unique(content)
    name = literal(settings.content_mask)
    if len(colours) > MAX_REGIONS:
        raise SettingsError(f"{name}: {len(colours)} colours; a mask has one flat colour per region "
                            f"(at most {MAX_REGIONS}; save masks as PNG, not JPEG)", field="content_mask")
    style_masks = [mask_colours(path, (s.shape[2], s.shape[3]), settings.max_pixels)
                   for path, s in zip(settings.style_mask, styles, strict=True)]
    for colour in colours:
        if not any((m == colour).any() for m in style_masks):
            raise SettingsError(f"{name}: colour #{int(colour):06x} appears in no {{style_mask}}",
                                field="content_mask")

    def channels(mask: np.ndarray) -> Tensor:
        return torch.from_numpy(np.stack([(mask == c) for c in colours]).astype(np.float32))

    return Guidance(channels(content), [channels(m) for m in style_masks])
