"""Makes the control pictures of docs/gallery.md: the same photo and painting with and without each option.

    python scripts/control_gallery.py --size 256 --steps 200 -o docs/gallery
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import gramstyle
from gramstyle import image as imageio
from gramstyle.assets import STARRY_NIGHT, TUBINGEN
from gramstyle.figures import compose

ROWS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "color": [("default", {}), ("--preserve-color luminance", {"preserve_color": "luminance"}),
              ("--preserve-color histogram", {"preserve_color": "histogram"}),
              ("histogram --color-match chol", {"preserve_color": "histogram", "color_match": "chol"})],
    "scale": [("--style-scale 0.5", {"style_scale": 0.5}), ("default (1)", {}),
              ("--style-scale 2", {"style_scale": 2.0})],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("-o", "--output", default="docs/gallery")
    args = parser.parse_args()
    out = Path(args.output)
    records: dict[str, Any] = {}
    for name, variants in ROWS.items():
        cells = {}
        for column, (label, overrides) in enumerate(variants):
            start = time.perf_counter()
            result = gramstyle.transfer(TUBINGEN, STARRY_NIGHT, size=args.size, steps=args.steps, **overrides)
            seconds = time.perf_counter() - start
            cells[(0, column)] = (result.image, label)
            records[f"{name}: {label}"] = {"settings": result.settings.to_dict(), "final_losses": result.losses,
                                           "seconds": round(seconds, 1)}
            print(f"{name}: {label}: {seconds:.0f} s, loss {result.losses['total']:.4g}", flush=True)
        grid = compose(cells, f"gramstyle transfer tubingen starry_night --size {args.size} --steps {args.steps} ...",
                       cell_width=args.size)
        imageio.save_image(grid, out / f"control_{name}.jpg")
    imageio.write_text(json.dumps(records, indent=2) + "\n", out / "control_results.json")


if __name__ == "__main__":
    main()
