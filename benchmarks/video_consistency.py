"""Temporal consistency of `gramstyle video` on synthetic clips with exact flow (docs/video.md).

Clips made from the bundled photos, with their exact flow (and so their exact occlusions):
- pan: a window sliding over Tübingen, 3 px per frame;
- zoom: a zoom into Tübingen, 4% per frame;
- fg: The Scream (a 40% patch) moving 5 px right and 2 px down per frame over a still Tübingen, covering and
  uncovering the background.

For each method it prints the warping error (Lai et al. 2018: the mean squared RGB difference in [0, 1] between a
stylized frame and the previous stylized frame warped onto it, over the reliable pixels) with the exact flow and
with the flow estimated by OpenCV's DIS, the mean content and style loss per frame and the seconds per frame.
Methods: independent frames from noise (fixed seed), independent frames from the default start, the warped start
alone, + the short-term temporal loss (at several weights: the calibration), + the long-term loss (frames 1, 2, 4),
and two passes. The chained methods use the DIS flow, as a user's run does, or with ``--chain-flow exact`` the
clip's exact flow.

The warping error is always measured over `measurement_mask`'s pixels (the first version's reliability test), so
that figures stay comparable when the product's own test changes. ``--cache DIR`` keeps each row's frames: rows can
be run in several processes and the table assembled by a last run that finds them all.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/video_consistency.py --size 128 --frames 8 --first-steps 60 \
        --steps 30 --weights 1e12 --clips pan,zoom,fg --cache /tmp/video_rows
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

from gramstyle import Session, assets
from gramstyle import images as imageio
from gramstyle.apps.video import EstimatedFlow, FramePlan, stylize_clip
from gramstyle.config import Settings
from gramstyle.temporal import BOUNDARY_ABSOLUTE, BOUNDARY_RELATIVE, disocclusions, warp, warping_error
from machine import cpu_description  # this folder is on sys.path when a script in it runs


@dataclass
class SyntheticClip:
    name: str
    frames: list[Image.Image]
    flows: dict[tuple[int, int], Tensor]  # exact flow a -> b for |a - b| <= 4

    def flow(self, a: int, b: int) -> Tensor:
        return self.flows[(a, b)]


def _sample(source: Tensor, coords: Tensor) -> Tensor:
    """source (1, 3, H, W) sampled at pixel coordinates coords (h, w, 2) (x, y), bilinear."""
    h, w = source.shape[2:]
    grid = torch.stack([coords[..., 0] * 2 / (w - 1) - 1, coords[..., 1] * 2 / (h - 1) - 1], -1)[None]
    return torch.nn.functional.grid_sample(source, grid, mode="bilinear", padding_mode="border", align_corners=True)


def _pixels(h: int, w: int) -> Tensor:
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                            indexing="ij")
    return torch.stack([xs, ys], -1)


def _pairs(n: int) -> list[tuple[int, int]]:
    return [(a, b) for a in range(n) for b in range(n) if a != b and abs(a - b) <= 4]


def pan(size: int, n: int) -> SyntheticClip:
    shift = 3.0
    h, w = round(size * 0.75), size
    source = imageio.load_image(assets.TUBINGEN, longest=w + int(shift * n) + 8)
    p = _pixels(h, w)
    offsets = [4 + shift * t for t in range(n)]
    frames = [imageio.to_pil(_sample(source, p + torch.tensor([o, 4.0]))) for o in offsets]
    flows = {(a, b): torch.zeros(h, w, 2) + torch.tensor([offsets[a] - offsets[b], 0.0]) for a, b in _pairs(n)}
    return SyntheticClip("pan", frames, flows)


def zoom(size: int, n: int) -> SyntheticClip:
    h, w = round(size * 0.75), size
    source = imageio.load_image(assets.TUBINGEN, longest=round(w * 1.5))
    sh, sw = source.shape[2:]
    centre_src = torch.tensor([(sw - 1) / 2, (sh - 1) / 2])
    centre = torch.tensor([(w - 1) / 2, (h - 1) / 2])
    scale = [1.4 * 0.96 ** t for t in range(n)]  # source pixels per frame pixel: shrinking = zooming in
    p = _pixels(h, w)
    frames = [imageio.to_pil(_sample(source, centre_src + (p - centre) * k)) for k in scale]
    flows = {(a, b): (p - centre) * (scale[a] / scale[b] - 1) for a, b in _pairs(n)}
    return SyntheticClip("zoom", frames, flows)


def foreground(size: int, n: int) -> SyntheticClip:
    h, w = round(size * 0.75), size
    background = imageio.load_image(assets.TUBINGEN, longest=w)[:, :, :h, :w]
    side = round(0.4 * h)
    patch = imageio.load_image(assets.THE_SCREAM, longest=256)
    patch = torch.nn.functional.interpolate(patch[:, :, 48:48 + 200, :200], size=(side, side), mode="area")
    positions = [(4 + 5 * t, 6 + 2 * t) for t in range(n)]
    frames, inside_masks = [], []
    for x, y in positions:
        frame = background.clone()
        frame[:, :, y:y + side, x:x + side] = patch
        frames.append(imageio.to_pil(frame))
        mask = torch.zeros(h, w)
        mask[y:y + side, x:x + side] = 1
        inside_masks.append(mask)
    flows = {}
    for a, b in _pairs(n):
        (xa, ya), (xb, yb) = positions[a], positions[b]
        flow = torch.zeros(h, w, 2)
        flow[inside_masks[a] > 0] = torch.tensor([float(xb - xa), float(yb - ya)])
        flows[(a, b)] = flow
    return SyntheticClip("fg", frames, flows)


#: Names the product's chain (its DIS configuration, its warping) in --cache keys, so that chained rows cached
#: with an older chain are not read back for a newer one.
FLOW_TAG = "dis2-bicubic-fillwarped"


def measurement_mask(backward: Tensor, forward: Tensor) -> Tensor:
    """The reliable pixels over which the warping error is measured, fixed whatever the product's reliability
    becomes: the forward-backward check and the motion-boundary test on forward differences, as the first version
    of `temporal.reliability` had them, so that figures taken before and after a change of the product compare."""
    dx = torch.zeros_like(backward)
    dy = torch.zeros_like(backward)
    dx[:, :-1] = backward[:, 1:] - backward[:, :-1]
    dy[:-1] = backward[1:] - backward[:-1]
    gradient = dx.square().sum(-1) + dy.square().sum(-1)
    boundaries = (gradient <= BOUNDARY_RELATIVE * backward.square().sum(-1) + BOUNDARY_ABSOLUTE).to(backward.dtype)
    return disocclusions(backward, forward) * boundaries


def errors(outputs: list[Tensor], flow) -> float:  # type: ignore[no-untyped-def]
    values = []
    for i in range(1, len(outputs)):
        back, fwd = flow(i, i - 1), flow(i - 1, i)
        values.append(warping_error(outputs[i], warp(outputs[i - 1], back), measurement_mask(back, fwd)))
    return sum(values) / len(values)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--first-steps", type=int, default=100)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--clips", default="fg,pan,zoom")
    parser.add_argument("--weights", default="1e13,3e13,1e14", help="temporal weights of the short-term rows")
    parser.add_argument("--weight", type=float, default=None, help="the weight of the long-term and 2-pass rows "
                        "(default: the largest of --weights)")
    parser.add_argument("--methods", default="noise,default,warped,short,long,passes")
    parser.add_argument("--chain-flow", default="dis", choices=("dis", "exact"),
                        help="the flow the chained methods use: DIS (a user's run) or the clip's exact flow (as "
                             "--flow DIR with exact .flo files)")
    parser.add_argument("--out", default="docs/video", help="folder for the side-by-side strip and results.json")
    parser.add_argument("--cache", default=None, help="folder keeping each row's stylized frames, losses and seconds: "
                        "a rerun with other flows or rows reads them back instead of redoing them (the independent "
                        "rows do not depend on the flow)")
    args = parser.parse_args()
    print(f"CPU: {cpu_description()}", file=sys.stderr)
    weights = [float(v) for v in args.weights.split(",")]
    weight = args.weight if args.weight is not None else max(weights)
    methods = args.methods.split(",")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    session = Session()
    base = Settings.for_task("transfer").replace(size=args.size, seed=0, device="cpu")
    F, f = args.first_steps, args.steps
    results = {}
    makers = {"pan": pan, "zoom": zoom, "fg": foreground}
    print(f"{args.size} px, {args.frames} frames, {F} steps first frame / {f} per later frame, "
          f"torch threads {torch.get_num_threads()}", flush=True)
    for clip_name in args.clips.split(","):
        clip = makers[clip_name](args.size, args.frames)
        estimated = EstimatedFlow(clip.frames, "dis")
        flow_tag = FLOW_TAG
        rows: list[tuple[str, Settings, FramePlan]] = []
        if "noise" in methods:
            rows.append(("independent, noise start", base.replace(init="noise"),
                         FramePlan(0.0, (), F, F, warm_start=False)))
        if "default" in methods:
            rows.append(("independent, default start", base, FramePlan(0.0, (), F, F, warm_start=False)))
        if "warped" in methods:
            rows.append(("warped start only", base, FramePlan(0.0, (1,), F, f)))
        if "short" in methods:
            rows += [(f"+ short-term, G={g:g}", base, FramePlan(g, (1,), F, f)) for g in weights]
        if "long" in methods:
            rows.append((f"+ long-term 1,2,4, G={weight:g}", base, FramePlan(weight, (1, 2, 4), F, f)))
        if "passes" in methods:
            rows.append((f"2 passes, G={weight:g}", base, FramePlan(weight, (1,), F, max(1, f // 2), passes=2)))
        print(f"\nclip {clip_name}\n{'method':32} {'err exact':>10} {'err DIS':>10} {'content':>10} {'style':>10} "
              f"{'s/frame':>8}", flush=True)
        clip_results = {}
        for label, settings, plan in rows:
            chained = plan.warm_start or plan.temporal_weight > 0
            slug = "".join(ch if ch.isalnum() or ch in "=.+-" else "_" for ch in label)
            key = (f"{clip_name}_{args.size}px_{args.frames}f_{F}-{f}_{slug}"
                   + (f"_{args.chain_flow}-{flow_tag}" if chained else "") + ".pt")
            cached = Path(args.cache) / key if args.cache else None
            if cached is not None and cached.exists():
                saved = torch.load(cached)
                outputs, losses, seconds, shots = saved["outputs"], saved["losses"], saved["seconds"], saved["shots"]
            else:
                started = time.perf_counter()
                chain = clip.flow if args.chain_flow == "exact" else estimated
                res = stylize_clip(session, clip.frames, [assets.STARRY_NIGHT], settings, chain, plan)
                seconds = (time.perf_counter() - started) / len(clip.frames)
                outputs, losses, shots = res.outputs, [r.losses for r in res.records], len(res.shots)
                if cached is not None:
                    cached.parent.mkdir(parents=True, exist_ok=True)
                    torch.save({"outputs": outputs, "losses": losses, "seconds": seconds, "shots": shots}, cached)
            row = {"err_exact": errors(outputs, clip.flow), "err_dis": errors(outputs, estimated),
                   "content": sum(v["content"] for v in losses) / len(losses),
                   "style": sum(v["style"] for v in losses) / len(losses),
                   "seconds_per_frame": seconds, "shots": shots}
            clip_results[label] = row
            print(f"{label:32} {row['err_exact']:10.5f} {row['err_dis']:10.5f} {row['content']:10.4g} "
                  f"{row['style']:10.4g} {seconds:8.1f}", flush=True)
            key = label.split(",")[0].replace(" ", "_").replace("+", "").strip("_")
            strip = torch.cat([torch.cat([imageio.to_tensor(clip.frames[i]), outputs[i]], 2)
                               for i in range(min(4, len(outputs)))], 3)
            if not math.isnan(row["err_exact"]):
                imageio.save_image(strip, out / f"{clip_name}_{key}_{label.split('G=')[-1] if 'G=' in label else 'x'}"
                                   f".png")
        results[clip_name] = clip_results
        (out / "results.json").write_text(json.dumps({"args": vars(args), "results": results}, indent=2) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
