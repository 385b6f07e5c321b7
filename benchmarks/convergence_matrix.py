"""Loss after N evaluations over sizes x image pairs x alpha/beta ratios x optimizers, as a markdown table.

    python benchmarks/convergence_matrix.py --sizes 96,128,256 --pairs tubingen:starry_night --steps 300
    python benchmarks/convergence_matrix.py --ratios 1e-5,1e-3,1e-1 --optimizers lbfgs,adam --json out.json

Counting: a step is one evaluation of the objective (one VGG forward and backward), rejected line-search trials
included. "Loss after N" is the lowest total loss (eq. 7, float32, on the unclipped image being optimized) among
evaluations 1..N as the callback reports them: the image `optimize` keeps and returns after N steps.

Optimizers: ``lbfgs`` and ``adam`` are gramstyle's own, run through the public `gramstyle.transfer` (Adam at its
default lr). ``torch`` is torch.optim.LBFGS (line_search_fn="strong_wolfe", history 50) on the same objective;
it knows no bounds, so the pixels are clamped to [0, 1] after each of its iterations (its line-search trials may
leave the box, and its curvature pair is taken before the clamp).

Pairs are content:style names, looked up as files in --images (any extension) and then among the bundled images.
With --json the results are written after every run, and runs already in that file are not repeated.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path

import torch

import gramstyle
from gramstyle import stages
from gramstyle.config import Settings
from gramstyle.objective import Objective
from gramstyle.start import initial_image
from machine import cpu_description  # this folder is on sys.path when a script in it runs

BUNDLED = Path(gramstyle.__file__).parent / "data"
DEFAULT_IMAGES = Path(__file__).resolve().parents[1] / ".." / "shared" / "images"
DEFAULT_PAIRS = ("tubingen:starry_night,tubingen:the_scream,tubingen:shipwreck,chelsea:seated-nude,"
                 "coffee:shipwreck")


class _Done(Exception):
    """Raised inside torch's closure once the evaluation budget is spent."""


def find_image(name: str, images: Path) -> str:
    for folder in (images, BUNDLED):
        matches = sorted(folder.glob(f"{name}.*")) if folder.is_dir() else []
        if matches:
            return str(matches[0])
    raise SystemExit(f"no image {name!r} in {images} or {BUNDLED}")


def run_gramstyle(content: str, style: str, size: int, ratio: float, steps: int, optimizer: str) -> list[float]:
    losses: list[float] = []

    def record(progress: gramstyle.Progress) -> None:
        if progress.kind == "step":
            losses.append(progress.losses["total"])

    gramstyle.transfer(content, style, size=size, steps=steps, beta=1.0 / ratio, optimizer=optimizer,
                       precision="fp32", device="cpu", callback=record)
    return losses


def run_torch_lbfgs(content: str, style: str, size: int, ratio: float, steps: int) -> list[float]:
    """torch.optim.LBFGS on the objective that a run builds, from the same initial image."""
    settings = Settings.for_task("transfer").replace(size=size, beta=1.0 / ratio, precision="fp32",
                                                     device="cpu").validated()
    (stage,) = stages.plan(settings, content, [style])
    net = gramstyle.Session().network(settings, torch.device("cpu"))
    objective = Objective.for_settings(net, settings, content_image=stage.content, style_images=stage.styles)
    x = initial_image(settings.init, stage.shape, settings.seed, stage.content, stage.styles,
                      settings.max_pixels, settings.color_match).clamp(0, 1).requires_grad_(True)
    optimizer = torch.optim.LBFGS([x], lr=1.0, max_iter=1, history_size=settings.history_size,
                                  line_search_fn="strong_wolfe")
    losses: list[float] = []

    def closure() -> torch.Tensor:
        if len(losses) >= steps:
            raise _Done
        optimizer.zero_grad()
        total = objective(x).total
        total.backward()  # type: ignore[no-untyped-call]
        losses.append(float(total.detach()))
        return total.detach()

    try:
        while len(losses) < steps:
            optimizer.step(closure)  # type: ignore[no-untyped-call]
            with torch.no_grad():
                x.clamp_(0, 1)
    except _Done:
        pass
    return losses


def best_after(losses: list[float], marks: list[int]) -> dict[str, float]:
    out, best = {}, math.inf
    for step, loss in enumerate(losses, 1):
        best = min(best, loss if math.isfinite(loss) else math.inf)
        if step in marks:
            out[str(step)] = best
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="64,96,128,192,256,384,512")
    parser.add_argument("--pairs", default=DEFAULT_PAIRS, help="comma-separated content:style names")
    parser.add_argument("--ratios", default="1e-3", help="alpha/beta values (alpha = 1)")
    parser.add_argument("--steps", default="50,100,300", help="evaluation counts to report; the largest is run")
    parser.add_argument("--optimizers", default="lbfgs,adam,torch")
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--json", type=Path, default=None, help="results file (read to skip runs already done)")
    args = parser.parse_args()
    print(f"CPU: {cpu_description()}", file=sys.stderr)

    marks = sorted(int(s) for s in args.steps.split(","))
    results: dict[str, dict[str, float]] = {}
    if args.json is not None and args.json.exists():
        results = json.loads(args.json.read_text())
    runners: dict[str, Callable[[str, str, int, float, int], list[float]]] = {
        "lbfgs": lambda c, s, n, r, k: run_gramstyle(c, s, n, r, k, "lbfgs"),
        "adam": lambda c, s, n, r, k: run_gramstyle(c, s, n, r, k, "adam"),
        "torch": run_torch_lbfgs,
    }
    optimizers = args.optimizers.split(",")
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        for pair in args.pairs.split(","):
            content_name, style_name = pair.split(":")
            content, style = find_image(content_name, args.images), find_image(style_name, args.images)
            for ratio in (float(r) for r in args.ratios.split(",")):
                row = (size, pair, ratio)
                rows.append(row)
                for name in optimizers:
                    key = f"{size}|{pair}|{ratio:g}|{name}"
                    if key in results and all(str(m) in results[key] for m in marks):
                        continue
                    results[key] = best_after(runners[name](content, style, size, ratio, marks[-1]), marks)
                    if args.json is not None:
                        args.json.write_text(json.dumps(results, indent=1))

    header = ["size", "pair", "ratio"] + [f"{name} @{m}" for name in optimizers for m in marks]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for size, pair, ratio in rows:
        cells = [results[f"{size}|{pair}|{ratio:g}|{name}"].get(str(m), math.nan) for name in optimizers
                 for m in marks]
        print(f"| {size} | {pair} | {ratio:g} | " + " | ".join(f"{v:.3e}" for v in cells) + " |")


if __name__ == "__main__":
    main()
