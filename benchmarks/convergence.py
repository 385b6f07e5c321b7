"""Total loss against wall time for a style transfer, for several optimizer settings side by side.

The loss printed is the paper's objective (eq. 7, gramstyle's defaults) of the image at that moment; the last
column of each run is the objective on the saved 8-bit image. This is how the defaults were chosen.

    python benchmarks/convergence.py --size 256 --steps 300
    python benchmarks/convergence.py --size 256 --variants init=noise init=content history_size=10
"""

from __future__ import annotations

import argparse
import time

import gramstyle
from gramstyle.assets import DEMO_CONTENT, DEMO_STYLE


def parse_variant(text: str) -> dict[str, object]:
    settings: dict[str, object] = {}
    for item in text.split(","):
        key, _, value = item.partition("=")
        settings[key] = int(value) if value.isdigit() else value
    return settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--variants", nargs="+", default=["init=content", "init=noise"],
                        help="comma-separated Settings overrides per run, e.g. init=noise,history_size=10")
    parser.add_argument("--every", type=float, default=5.0, help="print the loss every this many seconds")
    args = parser.parse_args()

    for variant in args.variants:
        overrides = parse_variant(variant)
        marks: list[tuple[int, float, float]] = []
        next_mark = [0.0]

        def record(progress: gramstyle.Progress) -> None:
            if progress.elapsed >= next_mark[0] or progress.step == progress.steps:  # noqa: B023
                marks.append((progress.step, progress.elapsed, progress.losses["total"]))  # noqa: B023
                next_mark[0] += args.every  # noqa: B023

        start = time.perf_counter()
        result = gramstyle.transfer(DEMO_CONTENT, DEMO_STYLE, size=args.size, steps=args.steps,
                                    device=args.device, callback=record, **overrides)  # type: ignore[arg-type]
        wall = time.perf_counter() - start
        print(f"\n{variant} at {result.image.size[0]}x{result.image.size[1]}: {result.steps} steps in {wall:.1f} s; "
              f"saved 8-bit image loss {result.losses['total']:.4g}")
        print(f"{'step':>6} {'seconds':>8} {'total loss':>12}")
        for step, elapsed, loss in marks:
            print(f"{step:>6} {elapsed:8.1f} {loss:12.4g}")


if __name__ == "__main__":
    main()
