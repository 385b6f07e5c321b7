"""Labelled grids of images: the paper's figures and batch contact sheets share this layout."""

from __future__ import annotations

import textwrap

from PIL import Image, ImageDraw, ImageFont


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        return ImageFont.load_default()


def compose(cells: dict[tuple[int, int], tuple[Image.Image, str]], title: str, cell_width: int) -> Image.Image:
    """A labelled grid: each cell's image scaled to `cell_width`, its caption below it, the title on top."""
    rows = 1 + max(r for r, _ in cells)
    columns = 1 + max(c for _, c in cells)
    cell_height = max(round(im.height * cell_width / im.width) for im, _ in cells.values())
    font_size = max(11, cell_width // 15)
    caption, margin = font_size + 8, 6
    width = columns * (cell_width + margin) + margin
    lines = textwrap.wrap(title, width=max(20, int(width / (font_size * 0.55))))
    head = len(lines) * (font_size + 4) + 8
    grid = Image.new("RGB", (width, head + rows * (cell_height + caption + margin) + margin), "white")
    draw = ImageDraw.Draw(grid)
    for i, line in enumerate(lines):
        draw.text((margin, 4 + i * (font_size + 4)), line, fill="black", font=_font(font_size))
    for (r, c), (im, label) in cells.items():
        x = margin + c * (cell_width + margin)
        y = head + r * (cell_height + caption + margin)
        scaled = im.resize((cell_width, round(im.height * cell_width / im.width)), Image.Resampling.LANCZOS)
        grid.paste(scaled, (x, y))
        draw.text((x, y + cell_height + 2), label, fill="black", font=_font(font_size))
    return grid
