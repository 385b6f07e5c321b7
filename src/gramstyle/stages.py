"""The plan of a run: its coarse-to-fine sizes (CVPR 2017, sec. 5), the steps at each, and the images as the
network sees them at each size (resized, colour handled, masks read)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image
from torch import Tensor

from . import color, masks
from . import images as imageio
from .config import Settings
from .errors import SettingsError
from .layers import MIN_SIDE
from .objective import Guidance

ImageLike = imageio.ImageLike


@dataclass
class Stage:
    """The images of one scale, as the network will see them, and the output's shape there."""

    size: int  # longest side of the output at this scale
    steps: int
    content: Tensor | None  # after colour handling
    styles: list[Tensor]
    original_content: Tensor | None  # before colour handling (its chroma returns in luminance mode)
    shape: tuple[int, int]  # (height, width)
    guidance: Guidance | None = None


def scale_schedule(settings: Settings) -> list[int]:
    """The output sizes to optimize at, smallest first: the scales, or just the size."""
    if settings.scales is None:
        return [settings.size]
    if settings.scales == "auto":  # halve from the size while at least 256 px remain (CVPR 2017 use two or more)
        sizes = [settings.size]
        while sizes[0] // 2 >= 256:
            sizes.insert(0, sizes[0] // 2)
        return sizes
    return [int(x) for x in settings.scales.split(",")]


def steps_per_scale(settings: Settings, scales: int) -> list[int]:
    if settings.scale_steps is None:
        return [settings.steps] * scales
    counts = [int(x) for x in settings.scale_steps.split(",")]
    if len(counts) != scales:
        raise SettingsError(f"{{scale_steps}} gives {len(counts)} counts for {scales} scales", field="scale_steps")
    return counts


def as_list(styles: ImageLike | Sequence[ImageLike] | None) -> list[ImageLike]:
    if styles is None:
        return []
    if isinstance(styles, (str, Image.Image, os.PathLike)):
        return [styles]
    if not isinstance(styles, Sequence):
        raise SettingsError(f"style images must be a file, a PIL image or a list of them, got {type(styles).__name__}")
    return list(styles)


def style_size(settings: Settings, size: int) -> tuple[int, str]:
    """Longest side of the style images at an output size, and the setting that chose it: the style size
    (scaled with the stage in coarse-to-fine), the style scale times the output's, or the output's own."""
    if settings.style_scale is not None:
        return max(1, round(size * settings.style_scale)), "style_scale"
    if settings.style_size is not None:
        return max(1, round(settings.style_size * size / settings.size)), "style_size"
    return size, "size"


def plan(settings: Settings, content: ImageLike | None, styles: Sequence[ImageLike]) -> list[Stage]:
    """Every stage of the run, smallest first; every input error surfaces here, before any work."""
    sizes = scale_schedule(settings)
    counts = steps_per_scale(settings, len(sizes))
    stages = [_stage(settings, size, steps, content, styles) for size, steps in zip(sizes, counts, strict=True)]
    last = stages[-1]
    if settings.style_blend is not None and len(settings.style_blend) != len(last.styles):
        raise SettingsError(f"{{style_blend}} has {len(settings.style_blend)} weights for {len(last.styles)} "
                            "style image(s)", field="style_blend")
    return stages


def _stage(settings: Settings, size: int, steps: int, content: ImageLike | None,
           styles: Sequence[ImageLike]) -> Stage:
    """Load and prepare the images at one output size (longest side `size`)."""
    # A coarse-to-fine stage's size is chosen by the scales, and an error there should advise changing them.
    by = "scales" if size != settings.size else "size"
    content_image = imageio.load_image(content, size, settings.max_pixels, by) if content is not None else None
    longest, chosen_by = style_size(settings, size)
    chosen_by = by if chosen_by == "size" else chosen_by
    style_images = [imageio.load_image(s, longest, settings.max_pixels, chosen_by) for s in styles]
    original = content_image
    if settings.preserve_color != "none":
        if content_image is None:
            raise SettingsError("{preserve_color} needs a content image", field="preserve_color")
        content_image, style_images = _preserve_color(settings, content_image, style_images)
    if content_image is not None:
        shape = (content_image.shape[2], content_image.shape[3])
    elif settings.output_size is not None:  # a texture's own size, scaled with the stage
        width, height = settings.output_size
        factor = size / settings.size
        shape = (max(1, round(height * factor)), max(1, round(width * factor)))
    else:
        shape = (style_images[0].shape[2], style_images[0].shape[3])
    if min(shape) < MIN_SIDE:
        raise SettingsError(f"{{output_size}} {shape[1]}x{shape[0]} at {{size}} {size}: each side must be at least "
                            f"{MIN_SIDE} px", field="output_size")
    if shape[0] * shape[1] > settings.max_pixels:
        raise SettingsError(f"{{output_size}} {shape[1]}x{shape[0]}: more pixels than {{max_pixels}} "
                            f"{settings.max_pixels}", field="output_size")
    guidance = masks.guidance(settings, shape, style_images) if settings.content_mask is not None else None
    return Stage(size, steps, content_image, style_images, original, shape, guidance)


def _preserve_color(settings: Settings, content: Tensor, styles: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
    """Gatys et al. 2016: luminance-only images, or styles recoloured to the content's colour statistics."""
    if settings.preserve_color == "luminance":
        content_y = color.luminance(content)
        return content_y, [color.match_luminance(color.luminance(s), content_y) for s in styles]
    return content, [color.color_transfer(s, content, settings.color_match) for s in styles]


def describe_inputs(**named: Any) -> dict[str, Any]:
    """The run record's description of its inputs (file names; PIL images by size)."""
    def one(item: Any) -> Any:
        if isinstance(item, Image.Image):
            return f"<PIL image {item.size[0]}x{item.size[1]}>"
        return str(item)

    out: dict[str, Any] = {}
    for key, value in named.items():
        if value is None:
            continue
        out[key] = [one(v) for v in value] if isinstance(value, (list, tuple)) else one(value)
    return out
