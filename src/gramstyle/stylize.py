"""The paper's three tasks, reading like the algorithm: images -> network -> targets -> descent -> image.

- `transfer` (Fig. 2): a photo painted in the style of one or more artworks (eq. 7).
- `reconstruct_content` (Fig. 1, top): an image from white noise whose response at one layer matches (eq. 1).
- `synthesize_texture` (Fig. 1, bottom): an image from white noise whose Gram matrices match (eq. 5).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from . import color
from . import image as imageio
from .config import Settings, equal_weights
from .errors import OptimizationError, SettingsError
from .objective import Guidance, Objective
from .optimize import Callback, Progress, optimize
from .record import save_result
from .vgg import VGGFeatures, canonical_layer, load_weights

ImageLike = imageio.ImageLike


@dataclass
class Result:
    """What a run gives back: the picture, its losses and everything needed to record the run."""

    image: Image.Image  # the 8-bit RGB output
    losses: dict[str, float]  # the objective on `image` as saved (8-bit): what the user gets
    history: list[dict[str, float]]  # the losses of every step
    settings: Settings
    task: str
    steps: int
    stop_reason: str
    elapsed: float  # seconds of optimization
    device: str
    weights: dict[str, Any]
    precision: str = "fp32"  # the network's arithmetic as resolved from settings.precision
    inputs: dict[str, Any] = field(default_factory=dict)

    def save(self, path: str, log: str | None = None, extra: dict[str, Any] | None = None) -> None:
        """Write the image, its run record ``path + '.json'`` and optionally the per-step CSV, atomically."""
        save_result(self, path, log, extra)


def resolve_device(name: str) -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; explicit names are checked against what exists."""
    name = name.strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SettingsError(f"--device must be auto, cpu, cuda, cuda:N or mps, got {name!r}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SettingsError(f"--device {name}: CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise SettingsError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif device.type == "mps":
        if not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
            raise SettingsError(f"--device {name}: MPS is not available on this machine")
    elif device.type != "cpu" or device.index not in (None, 0):
        raise SettingsError(f"--device must be auto, cpu, cuda, cuda:N or mps, got {name!r}")
    return device


def resolve_precision(name: str, device: torch.device) -> torch.dtype:
    """The network's arithmetic: ``auto`` is bfloat16 on CPUs that compute it natively (AVX-512 BF16 or AMX,
    measured 2x faster per step), float32 elsewhere; CUDA's bfloat16 has not been measured yet."""
    if name == "fp32":
        return torch.float32
    if name == "bf16":
        return torch.bfloat16
    if device.type == "cpu" and _cpu_has_native_bf16():
        return torch.bfloat16
    return torch.float32


def _cpu_has_native_bf16() -> bool:
    try:  # oneDNN's own check (a private torch API; without it, assume no)
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@contextmanager
def _out_of_memory_as_error(size: int) -> Iterator[None]:
    try:
        yield
    except torch.OutOfMemoryError:
        raise OptimizationError(f"out of memory at --size {size}; try a smaller --size") from None
    except RuntimeError as exc:
        text = str(exc)
        if "out of memory" in text or "can't allocate memory" in text or "not enough memory" in text:
            raise OptimizationError(f"out of memory at --size {size}; try a smaller --size") from None
        raise


def initial_image(init: str, shape: tuple[int, int], seed: int, content: Tensor | None,
                  styles: Sequence[Tensor], max_pixels: int, color_match: str = "chol") -> Tensor:
    """The starting image: white noise (the paper), the content photo, the photo recoloured to the style
    images' colours, the first style image, or an image file."""
    height, width = shape
    if init == "noise":
        # Uniform white noise in [0, 1], drawn on the CPU so a seed gives the same image on every device.
        generator = torch.Generator().manual_seed(seed)
        return torch.rand(1, 3, height, width, generator=generator)
    if init in ("content", "recolored"):
        if content is None:
            raise SettingsError(f"--init {init} needs a content image")
        if init == "content" or not styles:
            return content.clone()
        # The photo with the paintings' colour mean and covariance (the colour paper's histogram matching,
        # the other way round): conv1_1's Gram matrix, mostly colour, starts near its target, and the
        # optimization spends its steps on texture (docs/benchmarks.md: 8-48% fewer steps to the same loss).
        palette = torch.cat([s.reshape(1, 3, 1, -1) for s in styles], dim=3)
        return color.color_transfer(content, palette, color_match)
    style = styles[0] if styles else None
    source: ImageLike = init
    if init == "style":
        if style is None:
            raise SettingsError("--init style needs a style image")
        return torch.nn.functional.interpolate(style, size=shape, mode="bilinear", align_corners=False,
                                               antialias=True).clamp(0, 1)
    picture = imageio.open_image(source, max_pixels).resize((width, height), Image.Resampling.LANCZOS)
    return imageio.to_tensor(picture)


def _as_list(styles: ImageLike | Sequence[ImageLike]) -> list[ImageLike]:
    if isinstance(styles, (str, Image.Image, os.PathLike)):
        return [styles]
    return list(styles)


def _load_styles(styles: ImageLike | Sequence[ImageLike], longest: int, max_pixels: int) -> list[Tensor]:
    items = _as_list(styles)
    if not items:
        raise SettingsError("give at least one style image")
    return [imageio.load_image(s, longest, max_pixels) for s in items]


def _describe_inputs(**named: Any) -> dict[str, Any]:
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


@dataclass
class _Stage:
    """The images of one scale, as the network will see them, and the output's shape there."""

    content: Tensor | None  # after colour handling
    styles: list[Tensor]
    original_content: Tensor | None  # before colour handling (its chroma returns in luminance mode)
    shape: tuple[int, int]  # (height, width)
    guidance: Guidance | None = None


def _stage(settings: Settings, size: int, content: ImageLike | None,
           styles: ImageLike | Sequence[ImageLike] | None) -> _Stage:
    """Load and prepare the images at one output size (longest side `size`)."""
    content_image = imageio.load_image(content, size, settings.max_pixels) if content is not None else None
    style_images = _load_styles(styles, _style_size(settings, size), settings.max_pixels) if styles is not None else []
    original = content_image
    if settings.preserve_color != "none":
        if content_image is None:
            raise SettingsError("--preserve-color needs a content image")
        content_image, style_images = _preserve_color(settings, content_image, style_images)
    if content_image is not None:
        shape = (content_image.shape[2], content_image.shape[3])
    elif settings.output_size is not None:  # a texture's own size, scaled with the stage
        width, height = settings.output_size
        factor = size / settings.size
        shape = (max(1, round(height * factor)), max(1, round(width * factor)))
    else:
        shape = (style_images[0].shape[2], style_images[0].shape[3])
    if min(shape) < imageio.MIN_SIDE:
        raise SettingsError(f"--output-size {shape[1]}x{shape[0]}: each side must be at least {imageio.MIN_SIDE} px")
    if shape[0] * shape[1] > settings.max_pixels:
        raise SettingsError(f"--output-size {shape[1]}x{shape[0]}: more pixels than --max-pixels {settings.max_pixels}")
    guidance = _guidance(settings, shape, style_images) if settings.content_mask is not None else None
    return _Stage(content_image, style_images, original, shape, guidance)


#: More colours than this in a content mask means it is not a mask of flat colours (e.g. a JPEG's artefacts).
MAX_REGIONS = 16


def _mask_colours(path: str, shape: tuple[int, int], max_pixels: int) -> np.ndarray:
    """A mask image as an (h, w) array of packed RGB colours, resized (nearest neighbour) to `shape`."""
    mask = imageio.open_image(path, max_pixels).resize((shape[1], shape[0]), Image.Resampling.NEAREST)
    rgb = np.asarray(mask, dtype=np.int64)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def _guidance(settings: Settings, shape: tuple[int, int], styles: list[Tensor]) -> Guidance:
    """Guidance channels from the masks: one region per colour of the content mask (CVPR 2017, sec. 4)."""
    assert settings.content_mask is not None and settings.style_mask is not None
    if len(settings.style_mask) != len(styles):
        raise SettingsError(f"--style-mask has {len(settings.style_mask)} masks for {len(styles)} style image(s)")
    content = _mask_colours(settings.content_mask, shape, settings.max_pixels)
    colours = np.unique(content)
    if len(colours) > MAX_REGIONS:
        raise SettingsError(f"{settings.content_mask}: {len(colours)} colours; a mask has one flat colour per region "
                            f"(at most {MAX_REGIONS}; save masks as PNG, not JPEG)")
    style_masks = [_mask_colours(path, (s.shape[2], s.shape[3]), settings.max_pixels)
                   for path, s in zip(settings.style_mask, styles, strict=True)]
    for colour in colours:
        if not any((m == colour).any() for m in style_masks):
            raise SettingsError(f"{settings.content_mask}: colour #{int(colour):06x} appears in no --style-mask")

    def channels(mask: np.ndarray) -> Tensor:
        return torch.from_numpy(np.stack([(mask == c) for c in colours]).astype(np.float32))

    return Guidance(channels(content), [channels(m) for m in style_masks])


def _style_size(settings: Settings, size: int) -> int:
    """Longest side of the style images at an output size: --style-size (scaled with the stage in
    coarse-to-fine), --style-scale times the output's, or the output's own."""
    if settings.style_scale is not None:
        return max(1, round(size * settings.style_scale))
    if settings.style_size is not None:
        return max(1, round(settings.style_size * size / settings.size))
    return size


def scale_schedule(settings: Settings) -> list[int]:
    """The output sizes to optimize at, smallest first: --scales, or just --size."""
    if settings.scales is None:
        return [settings.size]
    if settings.scales == "auto":  # halve from --size while at least 256 px remain (CVPR 2017 use two or more)
        sizes = [settings.size]
        while sizes[0] // 2 >= 256:
            sizes.insert(0, sizes[0] // 2)
        return sizes
    return [int(x) for x in settings.scales.split(",")]


def _steps_per_scale(settings: Settings, scales: int) -> list[int]:
    if settings.scale_steps is None:
        return [settings.steps] * scales
    counts = [int(x) for x in settings.scale_steps.split(",")]
    if len(counts) != scales:
        raise SettingsError(f"--scale-steps gives {len(counts)} counts for {scales} scales")
    return counts


def _offset(callback: Callback | None, done: int, total: int, size: int) -> Callback | None:
    """Report a stage's steps as steps of the whole run."""
    if callback is None:
        return None

    def report(progress: Progress) -> bool | None:
        return callback(dataclasses.replace(progress, step=progress.step + done, steps=total,
                                            losses={**progress.losses, "scale": float(size)}))

    return report


def _objective(net: VGGFeatures, stage: _Stage, settings: Settings, content_layers: Sequence[tuple[str, float]],
               style_layers: Sequence[tuple[str, float]], device: torch.device,
               precision: torch.dtype = torch.float32) -> Objective:
    guidance = (Guidance(stage.guidance.output.to(device), [g.to(device) for g in stage.guidance.styles])
                if stage.guidance is not None else None)
    return Objective.build(
        net, content_image=None if stage.content is None else stage.content.to(device),
        content_layers=content_layers, style_images=[s.to(device) for s in stage.styles],
        style_layers=style_layers, style_blend=settings.style_blend, alpha=settings.alpha,
        beta=settings.beta, tv_weight=settings.tv_weight, guidance=guidance, precision=precision)


def run(task: str, settings: Settings, *, content: ImageLike | None = None,
        styles: ImageLike | Sequence[ImageLike] | None = None, callback: Callback | None = None) -> Result:
    """The algorithm: load images, build VGG-19 to the deepest layer needed, bind targets, descend, quantise;
    in coarse-to-fine, once per scale, each starting from the last one's result upsampled."""
    settings = settings.validated()
    device = resolve_device(settings.device)
    precision = resolve_precision(settings.precision, device)
    sizes = scale_schedule(settings)
    steps = _steps_per_scale(settings, len(sizes))
    stages = [_stage(settings, size, content, styles) for size in sizes]  # every input error before any work
    last = stages[-1]
    if settings.style_blend is not None and len(settings.style_blend) != len(last.styles):
        raise SettingsError(f"--style-blend has {len(settings.style_blend)} weights for {len(last.styles)} "
                            "style image(s)")

    # A part of eq. 7 takes part when it has an image, a positive weight and a layer of positive weight.
    content_layers = settings.content_layers if last.content is not None and settings.alpha > 0 else ()
    style_layers = settings.style_layers if last.styles and settings.beta > 0 else ()
    content_layers = tuple((name, w) for name, w in content_layers if w > 0)
    style_layers = tuple((name, w) for name, w in style_layers if w > 0)
    layers = [canonical_layer(name) for name, _ in (*content_layers, *style_layers)]
    if not layers:
        raise SettingsError("nothing to optimize: alpha, beta and the layer weights leave no term of the loss")

    first = stages[0]
    x = initial_image(settings.init, first.shape, settings.seed, first.content, first.styles, settings.max_pixels,
                      settings.color_match)
    history: list[dict[str, float]] = []
    total_steps, elapsed, reason = sum(steps), 0.0, "steps"
    with _out_of_memory_as_error(settings.size):
        weights = load_weights(settings.weights, settings.preprocessing)
        net = VGGFeatures(weights, layers, settings.pooling).to(device)
        for size, stage, stage_steps in zip(sizes, stages, steps, strict=True):
            if x.shape[2:] != stage.shape:  # coarse-to-fine: the last scale's result, upsampled, is the start
                x = torch.nn.functional.interpolate(x, size=stage.shape, mode="bicubic", align_corners=False)
            time_left = None if settings.time_limit is None else settings.time_limit - elapsed
            if time_left is not None and time_left <= 0 and history:
                reason = "time limit"
                break
            objective = _objective(net, stage, settings, content_layers, style_layers, device, precision)
            result = optimize(objective, x.to(device), method=settings.optimizer, steps=stage_steps,
                              lr=settings.step_size, history_size=settings.history_size, time_limit=time_left,
                              callback=_offset(callback, len(history), total_steps, size))
            history += [{**h, "step": h["step"] + len(history), "elapsed": h["elapsed"] + elapsed,
                         "scale": float(size)} for h in result.history]
            x, elapsed, reason = result.image.clamp(0, 1), elapsed + result.elapsed, result.stop_reason
            if reason in ("cancelled", "time limit"):
                break
        if x.shape[2:] != last.shape:  # stopped before the last scale: the picture still has the asked size
            x = torch.nn.functional.interpolate(x, size=last.shape, mode="bicubic", align_corners=False)
            objective = _objective(net, last, settings, content_layers, style_layers, device)
        output = imageio.to_pil(x)
        with torch.no_grad():  # score what the user gets: the clipped, 8-bit image
            final = objective(imageio.to_tensor(output).to(device), exact=True).floats()
        if settings.preserve_color == "luminance" and last.original_content is not None:
            # The losses above are those of the luminance image that was optimized; the picture gets the
            # content's chroma back (sec. 2.2 of the colour paper).
            output = imageio.to_pil(color.recombine(imageio.to_tensor(output), last.original_content))
    return Result(image=output, losses=final, history=history, settings=settings, task=task,
                  steps=len(history), stop_reason=reason, elapsed=elapsed, device=str(device),
                  precision="bf16" if precision == torch.bfloat16 else "fp32",
                  weights={"source": weights.source, "sha256": weights.sha256,
                           "preprocessing": weights.preprocessing.name},
                  inputs=_describe_inputs(content=content, style=None if styles is None else _as_list(styles)))


def _preserve_color(settings: Settings, content: Tensor, styles: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
    """Gatys et al. 2016: luminance-only images, or styles recoloured to the content's colour statistics."""
    if settings.preserve_color == "luminance":
        content_y = color.luminance(content)
        return content_y, [color.match_luminance(color.luminance(s), content_y) for s in styles]
    return content, [color.color_transfer(s, content, settings.color_match) for s in styles]


def _settings(task: str, settings: Settings | None, overrides: dict[str, Any]) -> Settings:
    base = settings if settings is not None else Settings.for_task(task)
    return base.replace(**overrides) if overrides else base


def transfer(content: ImageLike, style: ImageLike | Sequence[ImageLike], *, settings: Settings | None = None,
             callback: Callback | None = None, **overrides: Any) -> Result:
    """Paint ``content`` in the style of ``style`` (one image or several, blended): the paper's Fig. 2.

    Keyword overrides are `Settings` fields, e.g. ``transfer(photo, painting, size=256, steps=200)``.
    """
    return run("transfer", _settings("transfer", settings, overrides), content=content, styles=style,
               callback=callback)


def reconstruct_content(image: ImageLike, *, layer: str = "conv4_1", settings: Settings | None = None,
                        callback: Callback | None = None, **overrides: Any) -> Result:
    """Reconstruct ``image`` from white noise through its response at one layer alone: the paper's Fig. 1, top."""
    chosen = _settings("content", settings, {"content_layers": ((canonical_layer(layer), 1.0),), **overrides})
    return run("content", chosen, content=image, callback=callback)


def synthesize_texture(style: ImageLike | Sequence[ImageLike], *,
                       layers: Sequence[str] = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"),
                       settings: Settings | None = None, callback: Callback | None = None,
                       **overrides: Any) -> Result:
    """Synthesize a texture from white noise matching the Gram matrices of ``layers`` with w_l = 1/|layers|:
    the paper's style reconstructions (Fig. 1, bottom)."""
    names = [canonical_layer(name) for name in layers]
    if not names:
        raise SettingsError("give at least one style layer")
    chosen = _settings("texture", settings, {"style_layers": equal_weights(names), **overrides})
    return run("texture", chosen, styles=style, callback=callback)
