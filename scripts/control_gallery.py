"""Makes the control pictures of docs/gallery.md: the same photo and painting with and without each option.

    python scripts/control_gallery.py --size 256 --steps 200 -o docs/gallery
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import gramstyle
from gramstyle import images as imageio
from gramstyle.apps.grid import compose
from gramstyle.assets import STARRY_NIGHT, THE_SCREAM, TUBINGEN


def _region_masks(folder: Path) -> dict[str, Any]:
    """Top half of the picture (the sky) from The Starry Night, bottom half from The Scream."""
    from PIL import Image

    content = Image.new("RGB", (64, 48), (255, 0, 0))
    content.paste((0, 0, 255), (0, 24, 64, 48))
    paths = [folder / "regions.png", folder / "red.png", folder / "blue.png"]
    content.save(paths[0])
    Image.new("RGB", (8, 8), (255, 0, 0)).save(paths[1])
    Image.new("RGB", (8, 8), (0, 0, 255)).save(paths[2])
    return {"content_mask": str(paths[0]), "style_mask": (str(paths[1]), str(paths[2]))}


TWO = [STARRY_NIGHT, THE_SCREAM]
ROWS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "color": [("default", {}), ("--preserve-color luminance", {"preserve_color": "luminance"}),
              ("--preserve-color histogram", {"preserve_color": "histogram"}),
              ("histogram --color-match chol", {"preserve_color": "histogram", "color_match": "chol"})],
    "scale": [("--style-scale 0.5", {"style_scale": 0.5}), ("default (1)", {}),
              ("--style-scale 2", {"style_scale": 2.0})],
    "regions": [("two styles blended", {"styles": TWO}),
                ("masks: sky Van Gogh, rest Munch", {"styles": TWO, "masks": True})],
    "blend": [("Van Gogh", {}), ("--style-blend 0.5,0.5", {"styles": TWO, "style_blend": (0.5, 0.5)}),
              ("Munch", {"styles": [THE_SCREAM]})],
    "tv": [("default (--tv-weight 0)", {}), ("--tv-weight 1e6", {"tv_weight": 1e6})],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("-o", "--output", default="docs/gallery")
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    args = parser.parse_args()
    out = Path(args.output)
    results_path = out / "control_results.json"
    records: dict[str, Any] = json.loads(results_path.read_text()) if results_path.is_file() else {}
    masks = _region_masks(Path(tempfile.mkdtemp()))
    for name in args.rows:
        cells = {}
        for column, (label, options) in enumerate(ROWS[name]):
            overrides = dict(options)
            styles = overrides.pop("styles", [STARRY_NIGHT])
            if overrides.pop("masks", False):
                overrides.update(masks)
            start = time.perf_counter()
            result = gramstyle.transfer(TUBINGEN, styles, size=args.size, steps=args.steps, **overrides)
            seconds = time.perf_counter() - start
            cells[(0, column)] = (result.image, label)
            records[f"{name}: {label}"] = {"settings": result.settings.to_dict(), "final_losses": result.losses,
                                           "seconds": round(seconds, 1)}
            print(f"{name}: {label}: {seconds:.0f} s, loss {result.losses['total']:.4g}", flush=True)
        grid = compose(cells, f"gramstyle transfer tubingen starry_night --size {args.size} --steps {args.steps} ...",
                       cell_width=args.size)
        imageio.save_image(grid, out / f"control_{name}.jpg")
    imageio.write_text(json.dumps(records, indent=2) + "\n", results_path)


if __name__ == "__main__":
    main()
