"""The file and PIL boundary: image files in, RGB tensors in [0, 1] out, and back, atomically.

Every problem with a file becomes an `ImageError` whose one-line message starts with the file's name.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from .errors import ImageError

ImageLike = str | os.PathLike[str] | Image.Image

#: Smallest side after resizing: conv5_1 sits behind four 2x poolings, so 32 px leave it a 2x2 map.
MIN_SIDE = 32

#: Output formats by file extension.
FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF"}


def _describe(source: ImageLike) -> str:
    return str(source) if not isinstance(source, Image.Image) else "<PIL image>"


def open_image(source: ImageLike, max_pixels: int = 100_000_000) -> Image.Image:
    """Open a file (or take a PIL image) and return an RGB PIL image, EXIF orientation applied.

    The pixel count is checked from the header, before the pixels are decoded (decompression bombs).
    """
    name = _describe(source)
    if isinstance(source, Image.Image):
        image = source
    else:
        path = Path(source)
        if not path.exists():
            raise ImageError(f"{name}: no such file")
        if path.is_dir():
            raise ImageError(f"{name}: is a folder, not an image file")
        try:
            if path.stat().st_size == 0:
                raise ImageError(f"{name}: empty file (0 bytes)")
            with warnings.catch_warnings():
                # We apply our own limit below; PIL's bomb warning would only duplicate it.
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image = Image.open(path)
        except ImageError:
            raise
        except UnidentifiedImageError:
            raise ImageError(f"{name}: not an image file (unrecognised format)") from None
        except Image.DecompressionBombError:
            raise ImageError(f"{name}: too many pixels (decompression bomb?)") from None
        except OSError as exc:
            raise ImageError(f"{name}: cannot be read ({exc.strerror or exc})") from None
    width, height = image.size
    if width * height > max_pixels:
        raise ImageError(f"{name}: {width}x{height} = {width * height} pixels is more than the limit of "
                         f"{max_pixels} (--max-pixels)")
    if width < 1 or height < 1:
        raise ImageError(f"{name}: has no pixels ({width}x{height})")
    frames = getattr(image, "n_frames", 1)
    if frames > 1:
        warnings.warn(f"{name}: has {frames} frames; using the first", stacklevel=2)
        image.seek(0)
    try:
        image.load()
        image = ImageOps.exif_transpose(image) or image
        return to_rgb(image)
    except (OSError, SyntaxError, ValueError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "truncated" in message or "broken data stream" in message:
            raise ImageError(f"{name}: truncated or corrupt image ({message})") from None
        raise ImageError(f"{name}: cannot be decoded ({message})") from None


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB: transparency composited on white, 16-bit and float modes rescaled."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in ("RGBA", "LA", "RGBa", "La", "PA") or (mode in ("L", "RGB") and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode.startswith("I;16") or mode == "I":
        # 16-bit integer grey: PIL's own conversion to L clips at 255 instead of rescaling.
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if array.max() > 255 or mode.startswith("I;16") else 255.0
        grey = np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode == "F":
        array = np.asarray(image, dtype=np.float64)
        peak = 1.0 if array.max() <= 1.0 else 255.0
        grey = np.clip(np.nan_to_num(array) / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    # L, 1, CMYK, YCbCr, LAB, HSV: PIL's conversions are colorimetrically what we want.
    return image.convert("RGB")


def resize_longest(image: Image.Image, longest: int, name: str = "image") -> Image.Image:
    """Resize so that the longest side is `longest` pixels (Lanczos), keeping the aspect ratio."""
    width, height = image.size
    scale = longest / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if min(size) < MIN_SIDE:
        raise ImageError(f"{name}: {size[0]}x{size[1]} after resizing to {longest} px; the shorter side must be at "
                         f"least {MIN_SIDE} px (use a larger --size or a less elongated image)")
    if size == image.size:
        return image
    return image.resize(size, Image.Resampling.LANCZOS)


def to_tensor(image: Image.Image) -> Tensor:
    """RGB PIL image -> (1, 3, h, w) float32 tensor in [0, 1]."""
    array = np.asarray(to_rgb(image), dtype=np.float32) / 255.0
    return torch.from_numpy(array.copy()).permute(2, 0, 1).unsqueeze(0).contiguous()


def to_pil(tensor: Tensor) -> Image.Image:
    """(1, 3, h, w) or (3, h, w) tensor -> 8-bit RGB PIL image; values are clipped to [0, 1] and rounded."""
    if tensor.dim() == 4:
        tensor = tensor[0]
    array = tensor.detach().float().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array, "RGB")


def load_image(source: ImageLike, longest: int | None = None, max_pixels: int = 100_000_000) -> Tensor:
    """File or PIL image -> (1, 3, h, w) RGB tensor in [0, 1], longest side resized to `longest`."""
    image = open_image(source, max_pixels)
    if longest is not None:
        image = resize_longest(image, longest, _describe(source))
    elif min(image.size) < MIN_SIDE:
        raise ImageError(f"{_describe(source)}: {image.size[0]}x{image.size[1]} is too small; the shorter side "
                         f"must be at least {MIN_SIDE} px")
    return to_tensor(image)


def output_format(path: str | os.PathLike[str]) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ImageError(f"{path}: unsupported output extension {suffix or '(none)'!r}; "
                         f"use one of {', '.join(sorted(FORMATS))}")
    return FORMATS[suffix]


def check_writable(path: str | os.PathLike[str]) -> Path:
    """Fail before any work if `path` cannot be written: bad extension, missing or read-only folder."""
    path = Path(path)
    output_format(path)
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise ImageError(f"{path}: is a folder; give a file name such as {path / 'out.png'}")
    if not folder.is_dir():
        raise ImageError(f"{path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ImageError(f"{path}: folder {folder} is not writable")
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success rename it over the target, else delete it.

    A reader never sees a half-written file, and an existing file survives any failure.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=folder)
    except OSError as exc:
        raise ImageError(f"{path}: cannot write in {folder} ({exc.strerror or exc})") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o644)  # mkstemp creates 0600; an output is an ordinary file
        os.replace(tmp_path, path)
    except OSError as exc:
        raise ImageError(f"{path}: cannot write ({exc.strerror or exc})") from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def save_image(image: Image.Image | Tensor, path: str | os.PathLike[str]) -> Path:
    """Write an 8-bit RGB image atomically; the format follows the extension (PNG, JPEG, WebP, TIFF)."""
    fmt = output_format(path)
    pil = to_pil(image) if isinstance(image, Tensor) else to_rgb(image)
    options = {"JPEG": {"quality": 95}, "WEBP": {"quality": 95}}.get(fmt, {})
    with atomic_path(path) as tmp:
        pil.save(tmp, format=fmt, **options)
    return Path(path)


def write_text(text: str, path: str | os.PathLike[str]) -> Path:
    """Write a text file atomically (run records, loss logs)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
