"""Tests of gramstyle.images, the file/PIL boundary. Every test image is made here, in tmp_path."""

from __future__ import annotations

import errno
import gc
import io
import os
import stat
import struct
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile, ImageFilter

from gramstyle import outputs
from gramstyle.errors import ImageError
from gramstyle.files import write_text
from gramstyle.images import (
    load_image,
    open_image,
    output_format,
    resize_longest,
    save_image,
    to_pil,
    to_rgb,
    to_tensor,
)
from gramstyle.layers import MIN_SIDE

RED, GREEN, BLUE, WHITE, BLACK = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0)


# ---------------------------------------------------------------------------------------------------------- helpers


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")


def pixels(image: Image.Image) -> np.ndarray:
    assert image.mode == "RGB"
    return np.asarray(image).astype(int)


def assert_message(exc: pytest.ExceptionInfo[Any], path: Path | str) -> str:
    """An ImageError's message is one line that starts with the file's name."""
    message = str(exc.value)
    assert "\n" not in message and "\r" not in message, message
    assert message.startswith(f"{path}:"), message
    return message


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A valid PNG header claiming width x height 1-bit pixels, with an empty (undecodable) IDAT: ~60 bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    signature = b"\x89PNG\r\n\x1a\n"
    path.write_bytes(signature + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    return path


def folder_listing(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


# ---------------------------------------------------------------------------------------------------------- EXIF


def quadrants(width: int = 64, height: int = 48) -> Image.Image:
    """Red top-left, green top-right, blue bottom-left, white bottom-right: any rotation or flip shows."""
    array = np.zeros((height, width, 3), dtype=np.uint8)
    array[: height // 2, : width // 2] = RED
    array[: height // 2, width // 2 :] = GREEN
    array[height // 2 :, : width // 2] = BLUE
    array[height // 2 :, width // 2 :] = WHITE
    return Image.fromarray(array, "RGB")


def with_orientation(path: Path, orientation: int, fmt: str) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation
    quadrants().save(path, format=fmt, exif=exif, **({"quality": 95} if fmt == "JPEG" else {}))
    return path


def test_exif_orientation_6_rotates_90_clockwise(tmp_path: Path) -> None:
    path = with_orientation(tmp_path / "rot.jpg", 6, "JPEG")
    with Image.open(path) as raw:
        assert raw.size == (64, 48)  # stored landscape
    image = open_image(path)
    assert image.size == (48, 64)  # shown portrait
    shown = pixels(image)
    # Turned 90° clockwise: the stored top-left (red) is now top-right, stored bottom-left (blue) is top-left.
    expected = {(8, 8): BLUE, (40, 8): RED, (8, 56): WHITE, (40, 56): GREEN}
    for (x, y), colour in expected.items():
        assert np.abs(shown[y, x] - colour).max() <= 8, ((x, y), shown[y, x], colour)
    assert load_image(path).shape == (1, 3, 64, 48)


@pytest.mark.parametrize(
    ("orientation", "transpose"),
    [
        (2, Image.Transpose.FLIP_LEFT_RIGHT),
        (3, Image.Transpose.ROTATE_180),
        (6, Image.Transpose.ROTATE_270),
        (8, Image.Transpose.ROTATE_90),
    ],
)
def test_exif_orientation_png_exact(tmp_path: Path, orientation: int, transpose: Image.Transpose) -> None:
    path = with_orientation(tmp_path / "o.png", orientation, "PNG")
    expected = quadrants().transpose(transpose)
    assert np.array_equal(pixels(open_image(path)), pixels(expected))


def test_exif_orientation_1_and_none_leave_pixels(tmp_path: Path) -> None:
    path = with_orientation(tmp_path / "o.png", 1, "PNG")
    assert np.array_equal(pixels(open_image(path)), pixels(quadrants()))
    quadrants().save(tmp_path / "plain.png")
    assert np.array_equal(pixels(open_image(tmp_path / "plain.png")), pixels(quadrants()))


def test_exif_orientation_of_a_pil_image_is_applied_without_changing_it(tmp_path: Path) -> None:
    path = with_orientation(tmp_path / "o.png", 8, "PNG")
    with Image.open(path) as source:
        result = open_image(source)
        assert source.size == (64, 48)
    assert result.size == (48, 64)


# ---------------------------------------------------------------------------------------------------------- modes


def load_saved(image: Image.Image, path: Path, **options: Any) -> Image.Image:
    image.save(path, **options)
    return open_image(path)


def test_mode_L(tmp_path: Path) -> None:
    grey = Image.fromarray(np.array([[0, 77, 255]], dtype=np.uint8), "L")
    out = load_saved(grey, tmp_path / "l.png")
    assert out.mode == "RGB"
    assert pixels(out).tolist() == [[[0, 0, 0], [77, 77, 77], [255, 255, 255]]]


def test_mode_1(tmp_path: Path) -> None:
    bits = Image.new("1", (2, 1), 0)
    bits.putpixel((1, 0), 1)
    assert pixels(load_saved(bits, tmp_path / "b.png")).tolist() == [[[0, 0, 0], [255, 255, 255]]]


def test_mode_LA_composited_on_white(tmp_path: Path) -> None:
    la = Image.new("LA", (3, 1))
    la.putpixel((0, 0), (100, 0))  # transparent -> white
    la.putpixel((1, 0), (100, 255))  # opaque -> its grey
    la.putpixel((2, 0), (0, 128))  # half -> half-way to white
    out = pixels(load_saved(la, tmp_path / "la.png"))
    assert out[0, 0].tolist() == [255, 255, 255]
    assert out[0, 1].tolist() == [100, 100, 100]
    assert np.abs(out[0, 2] - 127).max() <= 1


def test_mode_RGBA_composited_on_white(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (3, 1))
    rgba.putpixel((0, 0), (10, 20, 30, 0))
    rgba.putpixel((1, 0), (10, 20, 30, 255))
    rgba.putpixel((2, 0), (0, 0, 0, 128))
    out = pixels(load_saved(rgba, tmp_path / "rgba.png"))
    assert out[0, 0].tolist() == [255, 255, 255]
    assert out[0, 1].tolist() == [10, 20, 30]
    assert np.abs(out[0, 2] - 127).max() <= 1


def palette_image() -> Image.Image:
    p = Image.new("P", (3, 1))
    p.putpalette([*RED, *GREEN, *BLUE] + [0] * (256 - 3) * 3)
    for x in range(3):
        p.putpixel((x, 0), x)
    return p


@pytest.mark.parametrize("ext", ["png", "gif"])
def test_mode_P_without_transparency(tmp_path: Path, ext: str) -> None:
    out = load_saved(palette_image(), tmp_path / f"p.{ext}")
    assert pixels(out).tolist() == [[list(RED), list(GREEN), list(BLUE)]]


@pytest.mark.parametrize("ext", ["png", "gif"])
def test_mode_P_with_transparency(tmp_path: Path, ext: str) -> None:
    path = tmp_path / f"pt.{ext}"
    palette_image().save(path, transparency=1)  # green is the transparent index
    with Image.open(path) as raw:
        assert raw.mode == "P" and "transparency" in raw.info
    assert pixels(open_image(path)).tolist() == [[list(RED), list(WHITE), list(BLUE)]]


def test_mode_P_with_rgba_palette_in_memory() -> None:
    p = Image.new("P", (2, 1))
    p.putpalette([10, 20, 30, 0, 40, 50, 60, 255], rawmode="RGBA")
    p.putpixel((1, 0), 1)
    assert p.palette is not None and p.palette.mode == "RGBA"
    assert pixels(to_rgb(p)).tolist() == [[[255, 255, 255], [40, 50, 60]]]


def test_mode_RGB_with_transparent_colour(tmp_path: Path) -> None:
    """A PNG tRNS colour key on an RGB image: that colour is transparent, so it becomes white."""
    rgb = Image.new("RGB", (2, 1), (10, 20, 30))
    rgb.putpixel((1, 0), (1, 2, 3))
    path = tmp_path / "key.png"
    rgb.save(path, transparency=(1, 2, 3))
    assert pixels(open_image(path)).tolist() == [[[10, 20, 30], [255, 255, 255]]]


def test_mode_L_with_transparent_grey(tmp_path: Path) -> None:
    grey = Image.fromarray(np.array([[7, 200]], dtype=np.uint8), "L")
    path = tmp_path / "lkey.png"
    grey.save(path, transparency=7)
    assert pixels(open_image(path)).tolist() == [[[255, 255, 255], [200, 200, 200]]]


def cmyk_image() -> Image.Image:
    cmyk = Image.new("CMYK", (4, 1))
    for x, value in enumerate([(0, 0, 0, 0), (0, 0, 0, 255), (255, 0, 0, 0), (0, 255, 255, 0)]):
        cmyk.putpixel((x, 0), value)
    return cmyk


CMYK_AS_RGB = [list(WHITE), list(BLACK), [0, 255, 255], [255, 0, 0]]


def test_mode_CMYK_tiff(tmp_path: Path) -> None:
    assert pixels(load_saved(cmyk_image(), tmp_path / "c.tif")).tolist() == [CMYK_AS_RGB]


def test_mode_CMYK_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "c.jpg"
    cmyk_image().resize((64, 16), Image.Resampling.NEAREST).save(path, quality=100)
    with Image.open(path) as raw:
        assert raw.mode == "CMYK"
    out = pixels(open_image(path))
    for x, colour in zip((8, 24, 40, 56), CMYK_AS_RGB, strict=True):
        assert np.abs(out[8, x] - colour).max() <= 12, (x, out[8, x], colour)


GREY16 = np.array([[0, 32768, 65535, 257 * 100]], dtype=np.uint16)
GREY16_AS_8 = [0, 128, 255, 100]


def as_grey(values: list[int]) -> list[list[list[int]]]:
    return [[[v, v, v] for v in values]]


def test_mode_I16_png(tmp_path: Path) -> None:
    path = tmp_path / "g16.png"
    Image.fromarray(GREY16).save(path)
    with Image.open(path) as raw:
        assert raw.mode in ("I;16", "I")  # "I" on older Pillow
    assert pixels(open_image(path)).tolist() == as_grey(GREY16_AS_8)


def test_mode_I_tiff(tmp_path: Path) -> None:
    path = tmp_path / "gi.tif"
    Image.fromarray(GREY16.astype(np.int32), "I").save(path)
    with Image.open(path) as raw:
        assert raw.mode == "I"
    assert pixels(open_image(path)).tolist() == as_grey(GREY16_AS_8)


def test_mode_I_from_16_bit_pgm(tmp_path: Path) -> None:
    path = tmp_path / "g.pgm"
    path.write_bytes(b"P5 4 1 65535\n" + GREY16.astype(">u2").tobytes())
    assert pixels(open_image(path)).tolist() == as_grey(GREY16_AS_8)


def test_mode_I_is_16_bit_even_when_dark() -> None:
    """The scale is a property of the mode, not of the brightest pixel: a dark 16-bit image stays dark."""
    dark = Image.fromarray(np.array([[0, 200, 255]], dtype=np.int32), "I")
    assert pixels(to_rgb(dark)).tolist() == as_grey([0, 1, 1])


@pytest.mark.parametrize(("mode", "dtype"), [("I;16", "<u2"), ("I;16L", "<u2"), ("I;16B", ">u2")])
def test_mode_I16_variants_in_memory(mode: str, dtype: str) -> None:
    image = Image.frombytes(mode, (4, 1), GREY16.astype(dtype).tobytes())
    assert pixels(to_rgb(image)).tolist() == as_grey(GREY16_AS_8)


def test_mode_F_tiff_in_unit_range(tmp_path: Path) -> None:
    path = tmp_path / "f.tif"
    Image.fromarray(np.array([[0.0, 0.5, 1.0, 0.25, -0.5]], dtype=np.float32), "F").save(path)
    with Image.open(path) as raw:
        assert raw.mode == "F"
    assert pixels(open_image(path)).tolist() == as_grey([0, 128, 255, 64, 0])


def test_mode_F_tiff_in_byte_range(tmp_path: Path) -> None:
    path = tmp_path / "f255.tif"
    Image.fromarray(np.array([[0.0, 100.0, 255.0, 300.0]], dtype=np.float32), "F").save(path)
    assert pixels(open_image(path)).tolist() == as_grey([0, 100, 255, 255])


def test_mode_F_nan_does_not_change_the_scale() -> None:
    image = Image.fromarray(np.array([[np.nan, 0.5, 1.0, np.inf]], dtype=np.float32), "F")
    assert pixels(to_rgb(image)).tolist() == as_grey([0, 128, 255, 255])


@pytest.mark.parametrize("mode", ["PA", "RGBa", "La"])
def test_other_alpha_modes_in_memory(mode: str) -> None:
    rgba = Image.new("RGBA", (2, 1), (100, 100, 100, 255))
    rgba.putpixel((0, 0), (100, 100, 100, 0))
    image = rgba.convert("LA").convert("La") if mode == "La" else rgba.convert(mode)
    assert image.mode == mode
    assert pixels(to_rgb(image)).tolist() == [[[255, 255, 255], [100, 100, 100]]]


def test_to_rgb_keeps_an_rgb_image() -> None:
    image = noise(5, 4)
    assert to_rgb(image) is image


# ---------------------------------------------------------------------------------------------------------- frames


def two_frames() -> list[Image.Image]:
    return [Image.new("RGB", (40, 40), RED), Image.new("RGB", (40, 40), GREEN)]


@pytest.mark.parametrize("ext", ["gif", "png", "webp", "tif"])
def test_animated_uses_first_frame_and_warns(tmp_path: Path, ext: str) -> None:
    path = tmp_path / f"anim.{ext}"
    first, second = two_frames()
    options: dict[str, Any] = {"lossless": True} if ext == "webp" else {}
    first.save(path, save_all=True, append_images=[second], **options)
    with Image.open(path) as raw:
        assert raw.n_frames == 2
    with pytest.warns(UserWarning, match="2 frames; using the first") as record:
        image = open_image(path)
    assert str(path) in str(record[0].message)
    assert record[0].filename == __file__  # points at the caller, not into gramstyle
    assert np.abs(pixels(image) - RED).max() <= 2


def test_animated_via_load_image(tmp_path: Path) -> None:
    path = tmp_path / "anim.gif"
    first, second = two_frames()
    first.save(path, save_all=True, append_images=[second])
    with pytest.warns(UserWarning, match="frames"):
        tensor = load_image(path)
    assert tensor.shape == (1, 3, 40, 40)
    assert torch.allclose(tensor[0, :, 0, 0], torch.tensor([1.0, 0.0, 0.0]))


def test_animated_pil_image_seeks_back_to_first_frame(tmp_path: Path) -> None:
    path = tmp_path / "anim.gif"
    first, second = two_frames()
    first.save(path, save_all=True, append_images=[second])
    with Image.open(path) as source:
        source.seek(1)
        with pytest.warns(UserWarning, match="<PIL image>: has 2 frames"):
            image = open_image(source)
    assert pixels(image)[0, 0].tolist() == list(RED)


def test_mpo_photo_does_not_warn(tmp_path: Path) -> None:
    """Phone JPEGs are often MPO: the photo, then previews. That is not an animation."""
    path = tmp_path / "phone.jpg"
    first, second = two_frames()
    first.save(path, format="MPO", save_all=True, append_images=[second])
    with Image.open(path) as raw:
        assert raw.format == "MPO" and raw.n_frames == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image = open_image(path)
    assert np.abs(pixels(image) - RED).max() <= 4


# ---------------------------------------------------------------------------------------------------------- pixel limit


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any pixel decoding fail the test."""

    def refuse(self: Image.Image) -> Any:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


def test_huge_header_refused_without_decoding(tmp_path: Path, no_decoding: None) -> None:
    path = png_header_only(tmp_path / "bomb.png", 20000, 20000)
    assert path.stat().st_size < 100
    with pytest.raises(ImageError) as exc:
        open_image(path, max_pixels=100_000_000)
    message = assert_message(exc, path)
    assert "20000x20000" in message and "100000000" in message
    with pytest.raises(ImageError) as exc:
        open_image(path)  # the default limit too
    assert_message(exc, path)
    with pytest.raises(ImageError) as exc:
        load_image(path, longest=256)
    assert_message(exc, path)


def test_limit_is_checked_before_decoding_a_real_image(tmp_path: Path, no_decoding: None) -> None:
    path = tmp_path / "n.png"
    noise(64, 64).save(path)
    with pytest.raises(ImageError, match="64x64 = 4096 pixels") as exc:
        open_image(path, max_pixels=4095)
    assert_message(exc, path)


def test_limit_boundary(tmp_path: Path) -> None:
    path = tmp_path / "n.png"
    noise(64, 64).save(path)
    assert open_image(path, max_pixels=4096).size == (64, 64)
    with pytest.raises(ImageError):
        open_image(path, max_pixels=4095)
    with pytest.raises(ImageError, match="<PIL image>"):
        open_image(noise(64, 64), max_pixels=4095)


def test_max_pixels_above_pils_own_limit_is_honoured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PIL's global MAX_IMAGE_PIXELS must neither refuse what max_pixels allows nor be left changed."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # PIL alone would refuse > 2000 pixels
    path = tmp_path / "n.png"
    noise(64, 64).save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert open_image(path, max_pixels=10_000).size == (64, 64)
    assert Image.MAX_IMAGE_PIXELS == 1000


def test_truncated_huge_header_within_limit_is_an_image_error(tmp_path: Path) -> None:
    path = png_header_only(tmp_path / "empty.png", 100, 100)
    with pytest.raises(ImageError) as exc:
        open_image(path)
    assert_message(exc, path)


# ---------------------------------------------------------------------------------------------------------- sizes


def test_resize_longest_keeps_aspect() -> None:
    out = resize_longest(noise(200, 100), 64)
    assert out.size == (64, 32)
    out = resize_longest(noise(100, 300), 150)
    assert out.size == (50, 150)
    image = noise(64, 48)
    assert resize_longest(image, 64) is image


def test_resize_longest_refuses_short_side(tmp_path: Path) -> None:
    with pytest.raises(ImageError) as exc:
        resize_longest(noise(400, 100), 100, name="wide.png")
    message = assert_message(exc, "wide.png")
    assert "100x25" in message and str(MIN_SIDE) in message
    assert resize_longest(noise(400, 100), 128).size == (128, MIN_SIDE)


def test_load_image_refuses_short_side_naming_file(tmp_path: Path) -> None:
    path = tmp_path / "wide.png"
    noise(400, 100).save(path)
    with pytest.raises(ImageError) as exc:
        load_image(path, longest=100)
    assert_message(exc, path)
    small = tmp_path / "small.png"
    noise(200, 20).save(small)
    with pytest.raises(ImageError, match="too small") as exc:
        load_image(small)
    assert_message(exc, small)
    assert load_image(path).shape == (1, 3, 100, 400)


@pytest.mark.parametrize(("size", "longest", "expected"), [
    ((200, 100), 64, (32, 64)),
    ((100, 150), 96, (96, 64)),
    ((200, 100), 300, (150, 300)),
    ((123, 77), 123, (77, 123)),
    ((77, 123), 61, (61, 38)),
])
def test_load_image_longest(tmp_path: Path, size: tuple[int, int], longest: int, expected: tuple[int, int]) -> None:
    path = tmp_path / "in.png"
    noise(*size).save(path)
    tensor = load_image(path, longest=longest)
    assert tensor.shape == (1, 3, *expected)
    assert tensor.dtype == torch.float32
    assert max(tensor.shape[2:]) == longest
    h, w = tensor.shape[2:]
    assert abs(w / h - size[0] / size[1]) <= 1.0 / min(h, w)
    assert tensor.min() >= 0.0 and tensor.max() <= 1.0


def test_load_image_accepts_pil_image() -> None:
    tensor = load_image(noise(80, 40), longest=64)
    assert tensor.shape == (1, 3, 32, 64)


# ---------------------------------------------------------------------------------------------------------- errors


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.png"
    with pytest.raises(ImageError, match="no such file") as exc:
        open_image(path)
    assert_message(exc, path)
    with pytest.raises(ImageError) as exc:
        load_image(str(path))
    assert_message(exc, path)


def test_folder(tmp_path: Path) -> None:
    folder = tmp_path / "pics.png"
    folder.mkdir()
    with pytest.raises(ImageError, match="folder") as exc:
        open_image(folder)
    assert_message(exc, folder)


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.touch()
    with pytest.raises(ImageError, match="empty") as exc:
        open_image(path)
    assert_message(exc, path)


def test_text_file_named_png(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("these are not pixels\nsecond line\n")
    with pytest.raises(ImageError, match="not an image") as exc:
        open_image(path)
    assert_message(exc, path)


def test_nul_in_name_is_an_image_error() -> None:
    with pytest.raises(ImageError) as exc:
        open_image("bad\0name.png")
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("ext", ["jpg", "png", "gif", "tif", "webp"])
@pytest.mark.parametrize("keep", [0.5, 0.1, 0.95])
def test_truncated_image(tmp_path: Path, ext: str, keep: float) -> None:
    whole = io.BytesIO()
    noise(96, 96).save(whole, format={"jpg": "JPEG", "tif": "TIFF"}.get(ext, ext.upper()))
    data = whole.getvalue()
    path = tmp_path / f"cut.{ext}"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ImageError) as exc:
        open_image(path)
    assert_message(exc, path)


def test_truncated_message_says_truncated(tmp_path: Path) -> None:
    whole = io.BytesIO()
    noise(96, 96).save(whole, format="JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    with pytest.raises(ImageError, match="truncated") as exc:
        open_image(path)
    assert_message(exc, path)


def test_files_are_closed_on_success_and_failure(tmp_path: Path) -> None:
    good, anim, cut, bomb = tmp_path / "g.png", tmp_path / "a.gif", tmp_path / "c.png", tmp_path / "b.png"
    noise(40, 40).save(good)
    first, second = two_frames()
    first.save(anim, save_all=True, append_images=[second])
    buffer = io.BytesIO()
    noise(64, 64).save(buffer, format="PNG")
    cut.write_bytes(buffer.getvalue()[:200])
    png_header_only(bomb, 20000, 20000)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        open_image(good)
        open_image(anim)
        for path in (cut, bomb):
            with pytest.raises(ImageError):
                open_image(path)
        gc.collect()
    leaks = [w for w in record if issubclass(w.category, ResourceWarning)]
    assert not leaks, [str(w.message) for w in leaks]


# ---------------------------------------------------------------------------------------------------------- tensors


def test_to_tensor_to_pil_round_trip_exact() -> None:
    image = noise(53, 37, seed=3)
    tensor = to_tensor(image)
    assert tensor.shape == (1, 3, 37, 53) and tensor.dtype == torch.float32 and tensor.is_contiguous()
    assert tensor.min() >= 0.0 and tensor.max() <= 1.0
    assert torch.equal(tensor[0, :, 5, 7], torch.tensor(np.asarray(image)[5, 7] / 255.0, dtype=torch.float32))
    back = to_pil(tensor)
    assert back.mode == "RGB" and back.size == (53, 37)
    assert back.tobytes() == image.tobytes()
    assert to_pil(tensor[0]).tobytes() == image.tobytes()


def test_all_byte_values_round_trip() -> None:
    values = np.arange(256, dtype=np.uint8).reshape(16, 16)
    image = Image.fromarray(np.stack([values, values[::-1], values.T], axis=2), "RGB")
    assert to_pil(to_tensor(image)).tobytes() == image.tobytes()


def test_to_tensor_converts_other_modes() -> None:
    tensor = to_tensor(Image.new("L", (4, 2), 51))
    assert tensor.shape == (1, 3, 2, 4)
    assert torch.allclose(tensor, torch.full((1, 3, 2, 4), 0.2))


def test_to_pil_clips_and_rounds() -> None:
    tensor = torch.tensor([-0.5, 1.5, 0.5, 0.2, float("nan"), float("inf")]).reshape(1, 1, 6).expand(3, 1, 6)
    assert np.asarray(to_pil(tensor))[0, :, 0].tolist() == [0, 255, 128, 51, 0, 255]


def test_to_pil_keeps_gradients_and_input_alone() -> None:
    """A preview taken mid-run (to_pil of the image being optimized) leaves the tensor, its graph and its
    gradient as they were."""
    tensor = torch.rand(1, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    copy = tensor.detach().clone()
    loss = (tensor * 3).sum()
    to_pil(tensor)
    assert torch.equal(tensor.detach(), copy) and tensor.grad is None
    loss.backward()
    assert tensor.grad is not None and torch.equal(tensor.grad, torch.full_like(tensor, 3.0))


@pytest.mark.parametrize("shape", [(2, 3, 4, 4), (1, 1, 4, 4), (4, 4), (4, 4, 3)])
def test_to_pil_refuses_wrong_shapes(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="tensor"):
        to_pil(torch.zeros(shape))


# ---------------------------------------------------------------------------------------------------------- output


@pytest.mark.parametrize(("name", "fmt"), [
    ("a.png", "PNG"), ("a.jpg", "JPEG"), ("a.jpeg", "JPEG"), ("a.webp", "WEBP"), ("a.tif", "TIFF"),
    ("a.tiff", "TIFF"), ("A.PNG", "PNG"), ("b.JpEg", "JPEG"), ("dir.x/c.TIF", "TIFF"), ("c.d.webp", "WEBP"),
])
def test_output_format(name: str, fmt: str) -> None:
    assert output_format(name) == fmt
    assert output_format(Path(name)) == fmt


@pytest.mark.parametrize("name", ["a.gif", "a.bmp", "a", "a.png.txt", "a.", ".png"])
def test_output_format_refuses(name: str) -> None:
    with pytest.raises(ImageError, match="extension") as exc:
        output_format(name)
    assert_message(exc, name)


@pytest.mark.parametrize("ext", [".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".PNG"])
def test_save_image_each_format(tmp_path: Path, ext: str) -> None:
    image = noise(48, 40, seed=1).filter(ImageFilter.GaussianBlur(2))  # smooth, so lossy formats stay close
    path = tmp_path / f"out{ext}"
    assert save_image(image, path) == path
    with Image.open(path) as back:
        assert back.format == output_format(path)
        assert back.size == (48, 40)
        back_rgb = back.convert("RGB")
    diff = np.abs(pixels(back_rgb) - pixels(image))
    if ext.lower() in (".png", ".tif", ".tiff"):
        assert diff.max() == 0
    else:
        assert diff.mean() < 4
    assert folder_listing(tmp_path) == [path.name]


def test_save_image_from_tensor(tmp_path: Path) -> None:
    image = noise(33, 35, seed=2)
    for tensor in (to_tensor(image), to_tensor(image)[0]):
        path = save_image(tensor, tmp_path / "t.png")
        with Image.open(path) as back:
            assert back.mode == "RGB" and back.tobytes() == image.tobytes()


def test_save_image_composites_alpha_on_white(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (2, 1), (10, 20, 30, 0))
    rgba.putpixel((1, 0), (10, 20, 30, 255))
    path = save_image(rgba, tmp_path / "a.jpg")
    with Image.open(path) as back:
        assert back.mode == "RGB"
    save_image(rgba, tmp_path / "a.png")
    with Image.open(tmp_path / "a.png") as back:
        assert back.mode == "RGB" and np.asarray(back).tolist() == [[[255, 255, 255], [10, 20, 30]]]


def test_save_image_refuses_unknown_extension_and_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="extension"):
        save_image(noise(4, 4), tmp_path / "out.gif")
    assert folder_listing(tmp_path) == []


def test_save_image_into_missing_folder(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "out.png"
    with pytest.raises(ImageError) as exc:
        save_image(noise(4, 4), path)
    assert_message(exc, path)


def test_save_image_over_a_folder_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "out.png"
    path.mkdir()
    with pytest.raises(ImageError) as exc:
        save_image(noise(4, 4), path)
    assert_message(exc, path)
    assert folder_listing(tmp_path) == ["out.png"] and path.is_dir()


def test_saved_file_permissions(tmp_path: Path) -> None:
    old_umask = os.umask(0o027)
    try:
        fresh = save_image(noise(4, 4), tmp_path / "fresh.png")
    finally:
        os.umask(old_umask)
    if Path("/proc/self/status").exists():  # where the umask can be read without changing it
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o640  # 0o666 less the umask, like any new file
    else:
        assert stat.S_IMODE(fresh.stat().st_mode) & 0o644 == 0o644
    existing = tmp_path / "private.png"
    existing.write_bytes(b"old")
    existing.chmod(0o600)
    save_image(noise(4, 4), existing)
    assert stat.S_IMODE(existing.stat().st_mode) == 0o600  # replacing a file keeps its permissions


# ------------------------------------------------------------------------------------------------ check_writable


def check_writable(path: str | Path) -> Path:
    """The output image's check of `outputs.plan` (a run's outputs checked before any work)."""
    return outputs.plan(path).image


def test_check_writable_ok(tmp_path: Path) -> None:
    assert check_writable(tmp_path / "out.png") == tmp_path / "out.png"
    existing = tmp_path / "there.jpg"
    existing.write_bytes(b"x")
    assert check_writable(str(existing)) == existing
    assert folder_listing(tmp_path) == ["there.jpg"]  # checking writes nothing


def test_check_writable_relative_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert check_writable("out.webp") == Path("out.webp")


def test_check_writable_missing_folder(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "out.png"
    with pytest.raises(ImageError, match="does not exist") as exc:
        check_writable(path)
    assert_message(exc, path)


def test_check_writable_parent_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    path = tmp_path / "file" / "out.png"
    with pytest.raises(ImageError, match="not a folder") as exc:
        check_writable(path)
    assert_message(exc, path)


@pytest.mark.parametrize("name", ["out.png", "results"])
def test_check_writable_path_is_a_folder(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.mkdir()
    with pytest.raises(ImageError, match="is a folder") as exc:
        check_writable(path)
    assert_message(exc, path)


def test_check_writable_unknown_extension(tmp_path: Path) -> None:
    path = tmp_path / "out.bmp"
    with pytest.raises(ImageError, match="extension") as exc:
        check_writable(path)
    assert_message(exc, path)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root may write into a read-only folder, so os.access rightly says writable")
def test_check_writable_read_only_folder(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        path = folder / "out.png"
        with pytest.raises(ImageError, match="not writable") as exc:
            check_writable(path)
        assert_message(exc, path)
        with pytest.raises(ImageError) as exc:
            save_image(noise(4, 4), path)
        assert_message(exc, path)
    finally:
        folder.chmod(0o755)


def test_check_writable_when_access_is_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The read-only branch, simulated (os.access patched) so that it also runs as root."""
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    path = tmp_path / "out.png"
    with pytest.raises(ImageError, match="not writable") as exc:
        check_writable(path)
    assert_message(exc, path)


# ---------------------------------------------------------------------------------------------------------- atomicity


def test_save_image_replaces_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "out.png"
    noise(20, 20, seed=1).save(path)
    new = noise(30, 10, seed=2)
    save_image(new, path)
    with Image.open(path) as back:
        assert back.size == (30, 10) and back.tobytes() == new.tobytes()
    assert folder_listing(tmp_path) == ["out.png"]


@pytest.fixture
def failing_save(monkeypatch: pytest.MonkeyPatch) -> dict[str, BaseException]:
    """PIL's save writes half a file, then raises the exception put in the returned dict."""
    failure: dict[str, BaseException] = {"error": OSError(errno.ENOSPC, "No space left on device")}
    real_save = Image.Image.save

    def save(self: Image.Image, fp: Any, format: str | None = None, **params: Any) -> None:
        buffer = io.BytesIO()
        real_save(self, buffer, format=format, **params)
        with open(fp, "wb") as handle:
            handle.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        raise failure["error"]

    monkeypatch.setattr(Image.Image, "save", save)
    return failure


@pytest.mark.parametrize("ext", [".png", ".jpg", ".tif"])
def test_failed_save_leaves_existing_file_and_no_temporary(
        tmp_path: Path, failing_save: dict[str, BaseException], ext: str) -> None:
    path = tmp_path / f"out{ext}"
    path.write_bytes(b"the previous result")
    before = folder_listing(tmp_path)
    with pytest.raises(ImageError, match="No space left") as exc:
        save_image(noise(64, 64), path)
    assert_message(exc, path)
    assert path.read_bytes() == b"the previous result"
    assert folder_listing(tmp_path) == before


def test_failed_save_with_other_exception(tmp_path: Path, failing_save: dict[str, BaseException]) -> None:
    failing_save["error"] = KeyboardInterrupt()
    path = tmp_path / "out.png"
    path.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        save_image(to_tensor(noise(64, 64)), path)
    assert path.read_bytes() == b"old"
    assert folder_listing(tmp_path) == ["out.png"]


def test_failed_save_of_a_new_file_leaves_nothing(tmp_path: Path, failing_save: dict[str, BaseException]) -> None:
    with pytest.raises(ImageError):
        save_image(noise(64, 64), tmp_path / "new.webp")
    assert folder_listing(tmp_path) == []


def test_failed_rename_leaves_existing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "out.png"
    path.write_bytes(b"old")

    def replace(src: Any, dst: Any) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(ImageError, match="cross-device") as exc:
        save_image(noise(8, 8), path)
    assert_message(exc, path)
    assert path.read_bytes() == b"old"
    assert folder_listing(tmp_path) == ["out.png"]


def test_write_text_writes_and_replaces(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    assert write_text("first\n", path) == path
    assert path.read_text(encoding="utf-8") == "first\n"
    write_text("zweite — ünïcode\n", str(path))
    assert path.read_bytes() == "zweite — ünïcode\n".encode()
    assert folder_listing(tmp_path) == ["run.json"]


@pytest.mark.parametrize("error", [OSError(errno.EIO, "Input/output error"), RuntimeError("boom")])
def test_failed_write_text_leaves_existing_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    path = tmp_path / "losses.csv"
    path.write_text("old,log\n")

    def write_half(self: Path, data: str, encoding: str | None = None, **kwargs: Any) -> int:
        with open(self, "w", encoding=encoding) as handle:
            handle.write(data[: len(data) // 2])
        raise error

    monkeypatch.setattr(Path, "write_text", write_half)
    with pytest.raises(ImageError if isinstance(error, OSError) else RuntimeError) as exc:
        write_text("step,loss\n1,2.0\n" * 100, path)
    if isinstance(error, OSError):
        assert_message(exc, path)
    monkeypatch.undo()
    assert path.read_text() == "old,log\n"
    assert folder_listing(tmp_path) == ["losses.csv"]


def test_write_text_into_missing_folder(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "run.json"
    with pytest.raises(ImageError) as exc:
        write_text("{}", path)
    assert_message(exc, path)
