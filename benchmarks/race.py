"""pastiche against gramstyle on the same objective, pixels and machine, side by side.

Both get the same pre-resized content and style files. pastiche runs its L-BFGS for --steps steps with the flags
that make its objective the paper's (and gramstyle's defaults): average pooling, conv4_2 with content weight
N*M/2 (its loss is a mean, ours a half sum), the five style layers at beta/20 each. Both outputs are scored with
gramstyle's objective on the saved 8-bit images. gramstyle then runs until it reaches pastiche's score.

    python benchmarks/race.py --size 256            # about 3 minutes on 2 cores
    python benchmarks/race.py --size 512 --steps 300
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import torch

import gramstyle
from gramstyle import image as imageio
from gramstyle.assets import STARRY_NIGHT, TUBINGEN
from gramstyle.config import Settings
from gramstyle.objective import Objective
from gramstyle.vgg import VGGFeatures, layer_info, load_weights


def score(path: Path, content: Path, style: Path, settings: Settings) -> float:
    """gramstyle's objective (eq. 7 with the defaults) of an 8-bit image file."""
    image = imageio.load_image(path)
    net = VGGFeatures(load_weights(settings.weights), [n for n, _ in (*settings.content_layers,
                                                                       *settings.style_layers)])
    objective = Objective.build(net, content_image=imageio.load_image(content),
                                content_layers=settings.content_layers, style_images=[imageio.load_image(style)],
                                style_layers=settings.style_layers, alpha=settings.alpha, beta=settings.beta)
    with torch.no_grad():
        return float(objective(image).total)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=300, help="pastiche's L-BFGS steps")
    args = parser.parse_args()
    if shutil.which("pastiche") is None:
        raise SystemExit("race.py: the pastiche command is not installed (pip install pastiche==1.6.0)")
    folder = Path(tempfile.mkdtemp(prefix="race-"))
    content, style = folder / "content.png", folder / "style.png"
    for source, target in ((TUBINGEN, content), (STARRY_NIGHT, style)):
        imageio.save_image(imageio.to_pil(imageio.load_image(source, args.size)), target)
    settings = Settings(size=args.size)
    h, w = imageio.load_image(content).shape[2:]
    stride = layer_info("conv4_2").stride
    n, m = layer_info("conv4_2").channels, (h // stride) * (w // stride)

    command = ["pastiche", "--device", "cpu", "--seed", "0", "--no-verbose", "--optimizer", "lbfgs",
               "--num-steps", str(args.steps), "--pooling", "avg", "--content-layers", "block4_relu2",
               "--content-layer-weights", "1", "--content-weight", str(n * m / 2),
               "--style-layer-weights", *[str(settings.beta / 20)] * 5, "--style-weights", "1",
               "--size", str(max(h, w)), "--style-size", str(max(imageio.load_image(style).shape[2:])),
               "--content", str(content), "--styles", str(style), "--output", str(folder / "pastiche.png")]
    start = time.perf_counter()
    subprocess.run(command, check=True)
    pastiche_seconds = time.perf_counter() - start
    pastiche_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    pastiche_loss = score(folder / "pastiche.png", content, style, settings)

    marks: list[tuple[int, float, float]] = []

    def reached(progress: gramstyle.Progress) -> bool:
        marks.append((progress.step, progress.elapsed, progress.losses["total"]))
        return progress.losses["total"] <= pastiche_loss

    start = time.perf_counter()
    result = gramstyle.transfer(content, style, settings=settings.replace(steps=10 * args.steps), callback=reached)
    gram_seconds = time.perf_counter() - start
    result.save(str(folder / "gramstyle.png"))
    gram_loss = score(folder / "gramstyle.png", content, style, settings)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    at_tenth = min((loss for _, t, loss in marks if t <= pastiche_seconds / 10), default=float("nan"))

    print(f"race at {w}x{h} on {torch.get_num_threads()} threads, files in {folder}")
    print(f"{'':10} {'wall s':>8} {'steps':>6} {'s/step':>7} {'8-bit loss':>11} {'peak MiB':>9}")
    print(f"{'pastiche':10} {pastiche_seconds:8.1f} {args.steps:6d} {pastiche_seconds / args.steps:7.3f} "
          f"{pastiche_loss:11.4g} {pastiche_rss:9.0f}")
    print(f"{'gramstyle':10} {gram_seconds:8.1f} {result.steps:6d} {result.elapsed / result.steps:7.3f} "
          f"{gram_loss:11.4g} {rss:9.0f}")
    print(f"time to pastiche's loss: gramstyle {gram_seconds:.1f} s = {gram_seconds / pastiche_seconds:.3f} of "
          f"pastiche's {pastiche_seconds:.1f} s (target: <= 0.1)")
    print(f"gramstyle's loss at a tenth of pastiche's time ({pastiche_seconds / 10:.1f} s): {at_tenth:.4g} "
          f"({at_tenth / pastiche_loss:.3f} x pastiche's)")


if __name__ == "__main__":
    main()
