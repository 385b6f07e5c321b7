"""The file and PIL boundary: image files in, RGB tensors in [0, 1] out, and back, atomically.

Every problem with a file becomes an `ImageError` whose one-line message starts with the file's name.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from . import files
from .errors import ImageError, literal
from .layers import MIN_SIDE

ImageLike = str | os.PathLike[str] | Image.Image

#: Output formats by file extension.
FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF"}


def _describe(source: ImageLike) -> str:
    """The file's name as it goes into a message (braces escaped: see `errors.literal`)."""
    return literal(source) if not isinstance(source, Image.Image) else "<PIL image>"


def open_image(source: ImageLike, max_pixels: int = 100_000_000) -> Image.Image:
    """Open a file (or take a PIL image) and return an RGB PIL image, EXIF orientation applied.

    The pixel count is checked from the header, before the pixels are decoded (decompression bombs). An animated
    image gives its first frame, with a warning. The file is closed before this returns, on success or failure.
    """
    name = _describe(source)
    if isinstance(source, Image.Image):
        return _decode(source, name, max_pixels)
    if not isinstance(source, (str, os.PathLike)):
        raise ImageError(f"expected an image file's path or a PIL image, got {type(source).__name__}")
    path = Path(source)
    try:
        if not path.exists():
            if path.is_symlink():
                try:
                    os.stat(path)
                except OSError as exc:
                    if exc.errno == errno.ELOOP:
                        raise ImageError(f"{name}: a loop of symbolic links ({exc.strerror})") from None
                raise ImageError(f"{name}: a symbolic link to a missing file")
            raise ImageError(f"{name}: no such file")
        if path.is_dir():
            raise ImageError(f"{name}: is a folder, not an image file")
        if path.stat().st_size == 0:
            raise ImageError(f"{name}: empty file (0 bytes)")
    except OSError as exc:
        raise ImageError(f"{name}: cannot be read ({exc.strerror or _first_line(exc)})") from None
    except ValueError as exc:  # a NUL byte in the name
        raise ImageError(f"{name}: not a usable file name ({_first_line(exc)})") from None
    try:
        with _pil_limit_lifted():
            # Our own limit (max_pixels) is applied below; PIL's global one would refuse or warn with other words.
            image = Image.open(path)
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image file (unrecognised format)") from None
    except OSError as exc:
        if exc.errno is not None:  # a real I/O error: permissions, a device error
            raise ImageError(f"{name}: cannot be read ({exc.strerror or _first_line(exc)})") from None
        raise ImageError(f"{name}: truncated or corrupt image ({_first_line(exc)})") from None
    except Exception as exc:  # PIL's format plugins raise many kinds of exception on malformed headers
        raise ImageError(f"{name}: truncated or corrupt image ({_first_line(exc)})") from None
    with image:
        rgb = _decode(image, name, max_pixels)
        # A file-backed image must not outlive the `with`: `_decode` may hand back the very same object.
        return rgb.copy() if rgb is image else rgb


def _decode(image: Image.Image, name: str, max_pixels: int) -> Image.Image:
    """Check the size from the header, then decode the (first frame's) pixels, orient them and make them RGB."""
    width, height = image.size
    if width * height > max_pixels:
        raise ImageError(f"{name}: {width}x{height} = {width * height} pixels is more than the limit of "
                         f"{max_pixels} ({{max_pixels}})")
    if width < 1 or height < 1:
        raise ImageError(f"{name}: has no pixels ({width}x{height})")
    frames = getattr(image, "n_frames", 1)
    # MPO (most phone cameras' JPEGs) stores the photo first, then previews or depth maps: not an animation.
    if frames > 1 and image.format != "MPO":
        warnings.warn(f"{name}: has {frames} frames; using the first", stacklevel=3)
    try:
        if frames > 1:
            image.seek(0)
        image.load()
        image = ImageOps.exif_transpose(image) or image
    except Exception as exc:  # malformed data raises OSError, SyntaxError, ValueError, struct.error, EOFError...
        message = _first_line(exc)
        if isinstance(exc, OSError) and exc.errno is not None:
            raise ImageError(f"{name}: cannot be read ({exc.strerror or message})") from None
        if "truncated" in message or "broken data stream" in message:
            raise ImageError(f"{name}: truncated or corrupt image ({message})") from None
        raise ImageError(f"{name}: cannot be decoded ({message})") from None
    try:
        return to_rgb(image)
    except ValueError as exc:
        raise ImageError(f"{name}: cannot be converted from mode {image.mode} to RGB ({_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message, ready for a message (braces escaped)."""
    lines = str(exc).strip().splitlines()
    return literal(lines[0] if lines else type(exc).__name__)


_PIL_LIMIT_LOCK = threading.Lock()


@contextlib.contextmanager
def _pil_limit_lifted() -> Iterator[None]:
    """Switch off PIL's global decompression-bomb limit while a header is read, so that `max_pixels` decides alone.

    PIL refuses more than 2 * MAX_IMAGE_PIXELS (~179 MP) in `Image.open`, whatever --max-pixels says. The lock keeps
    two threads of ours from restoring each other's value.
    """
    with _PIL_LIMIT_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB: transparency composited on white, 16-bit and float modes rescaled.

    16-bit and 32-bit integer grey ("I;16*", "I") is read as 16-bit: 0..65535 -> 0..255, which is what PIL's PNG,
    PNM and TIFF readers produce for 16-bit files. Float grey ("F") is read as 0..1 when all its finite values are at
    most 1, else as 0..255 (values outside are clipped; NaN is black). Any transparency in those two is ignored.
    """
    mode = image.mode
    if mode.startswith("I;16") or mode == "I":
        # PIL's own conversion to L clips at 255 instead of rescaling.
        array = np.asarray(image, dtype=np.float64)
        grey = np.clip(array / 65535.0 * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode == "F":
        array = np.asarray(image, dtype=np.float64)
        finite = array[np.isfinite(array)]
        peak = 1.0 if finite.size == 0 or finite.max() <= 1.0 else 255.0
        array = np.nan_to_num(array, nan=0.0, posinf=peak, neginf=0.0)
        grey = np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode == "La":
        image = image.convert("LA")  # PIL converts premultiplied La to LA, not straight to RGBA
    if _has_alpha(image):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if image.mode == "RGB":
        return image
    # L, 1, P, CMYK, YCbCr, HSV: PIL's conversions are what we want. (LAB and CMYK ignore any ICC profile.)
    return image.convert("RGB")


def _has_alpha(image: Image.Image) -> bool:
    """An alpha channel, a transparent colour (L, RGB, P: PNG tRNS, GIF) or a palette with alpha."""
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        return True
    return image.mode == "P" and image.palette is not None and image.palette.mode == "RGBA"


def resize_longest(image: Image.Image, longest: int, name: str = "image",
                   max_pixels: int | None = None, setting: str = "size") -> Image.Image:
    """Resize so that the longest side is `longest` pixels (Lanczos), keeping the aspect ratio.

    The target size is checked before resizing: at least MIN_SIDE on the shorter side, at most `max_pixels`.
    `setting` is the setting that chose `longest`, named in the advice of an error.
    """
    width, height = image.size
    scale = longest / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if max_pixels is not None and size[0] * size[1] > max_pixels:
        raise ImageError(f"{name}: resizing to {longest} px gives {size[0]}x{size[1]} = {size[0] * size[1]} pixels, "
                         f"more than the limit of {max_pixels} ({{max_pixels}}); use a smaller {{{setting}}}")
    if min(size) < MIN_SIDE:
        advice = "larger sizes in {scales}" if setting == "scales" else f"a larger {{{setting}}}"
        raise ImageError(f"{name}: {size[0]}x{size[1]} after resizing to {longest} px; the shorter side must be at "
                         f"least {MIN_SIDE} px (use {advice} or a less elongated image)")
    if size == image.size:
        return image
    return image.resize(size, Image.Resampling.LANCZOS)


def to_tensor(image: Image.Image) -> Tensor:
    """RGB PIL image -> (1, 3, h, w) float32 tensor in [0, 1]."""
    array = np.asarray(to_rgb(image), dtype=np.float32) / 255.0
    return torch.from_numpy(array.copy()).permute(2, 0, 1).unsqueeze(0).contiguous()


def to_pil(tensor: Tensor) -> Image.Image:
    """(1, 3, h, w) or (3, h, w) tensor -> 8-bit RGB PIL image; values are clipped to [0, 1] and rounded, NaN -> 0."""
    if tensor.dim() == 4 and tensor.shape[0] == 1:
        tensor = tensor[0]
    if tensor.dim() != 3 or tensor.shape[0] != 3:
        raise ValueError(f"to_pil needs a (1, 3, h, w) or (3, h, w) tensor, not {tuple(tensor.shape)}")
    values = torch.nan_to_num(tensor.detach().float(), nan=0.0).clamp(0, 1)
    array = values.mul(255).round().to(torch.uint8).permute(1, 2, 0).contiguous().cpu().numpy()
    return Image.fromarray(array, "RGB")


def load_image(source: ImageLike, longest: int | None = None, max_pixels: int = 100_000_000,
               setting: str = "size") -> Tensor:
    """File or PIL image -> (1, 3, h, w) RGB tensor in [0, 1], longest side resized to `longest` (chosen by
    `setting`, which an error names)."""
    image = open_image(source, max_pixels)
    if longest is not None:
        image = resize_longest(image, longest, _describe(source), max_pixels, setting)
    elif min(image.size) < MIN_SIDE:
        raise ImageError(f"{_describe(source)}: {image.size[0]}x{image.size[1]} is too small; the shorter side "
                         f"must be at least {MIN_SIDE} px")
    return to_tensor(image)


def output_format(path: str | os.PathLike[str]) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ImageError(f"{literal(path)}: unsupported output extension {literal(repr(suffix or '(none)'))}; "
                         f"use one of {', '.join(sorted(FORMATS))}")
    return FORMATS[suffix]


def encode_image(image: Image.Image | Tensor, tmp: Path, target: str | os.PathLike[str]) -> None:
    """Write an 8-bit RGB image to `tmp` in the format of `target`'s extension (PNG, JPEG, WebP, TIFF)."""
    fmt = output_format(target)
    pil = to_pil(image) if isinstance(image, Tensor) else to_rgb(image)
    options = {"JPEG": {"quality": 95}, "WEBP": {"quality": 95}}.get(fmt, {})
    pil.save(tmp, format=fmt, **options)


def save_image(image: Image.Image | Tensor, path: str | os.PathLike[str]) -> Path:
    """Write an 8-bit RGB image atomically; the format follows the extension (PNG, JPEG, WebP, TIFF)."""
    output_format(path)
    with files.atomic_path(path) as tmp:
        encode_image(image, tmp, path)
    return Path(path)
