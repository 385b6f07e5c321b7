"""pastiche against gramstyle on the same objective, pixels and machine, side by side.

Both get the same pre-resized content and style files and run as fresh processes, timed from launch to exit
(imports, weights, targets, steps and saving included). pastiche runs its L-BFGS for --steps steps with the
flags that make its objective the paper's (and gramstyle's): average pooling, conv4_2 with content weight
N*M/2 (its loss is a mean, ours a half sum), the five style layers at beta/20 each. Both outputs are scored with
gramstyle's objective (float32) on the saved 8-bit images. gramstyle (its defaults, or --gramstyle-args) then
runs until it reaches pastiche's score, saves and exits.

    python benchmarks/race.py --size 256 --svg docs/race_256.svg     # about 2 minutes on 2 cores
    python benchmarks/race.py --size 512 --steps 300
    python benchmarks/race.py --size 256 --pairs tubingen:starry_night chelsea:the_scream coffee:shipwreck

Pairs name files in --images (default ../shared/images) or the bundled images. The CPU's relevant flags are
printed first; ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 make an AVX-512 machine stand in for an AVX2 one
(both tools inherit them). Besides wall time, each process's CPU seconds are reported: on a shared machine the
ratio of CPU seconds is the steadier figure.
    python benchmarks/race.py --memory 512 1024                      # peak memory only (~12 minutes)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_description  # this folder is on sys.path when a script in it runs

# Runs the command in its argv and prints the peak resident memory of that command alone (KiB) on stderr.
_PEAK = ("import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
         "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
         "print('PEAK_RSS_KIB', u.ru_maxrss, 'CPU_S', u.ru_utime + u.ru_stime, file=sys.stderr); "
         "sys.exit(code)")

CPU_SECONDS: dict[int, float] = {}  # id of the lines list returned by run_timed -> CPU seconds of that run


def run_timed(command: list[str]) -> tuple[float, float, list[tuple[float, str]]]:
    """Run a command; return its wall seconds, its peak RSS in MiB and its stdout lines with arrival times
    (its CPU seconds go to CPU_SECONDS)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", _PEAK, *command], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env)
    assert process.stdout is not None
    lines = [(time.perf_counter() - start, line.rstrip("\n")) for line in process.stdout]
    stderr = process.stderr.read() if process.stderr is not None else ""
    if process.wait() != 0:
        raise SystemExit(f"race.py: {command[0]} failed:\n{stderr[-2000:]}")
    wall = time.perf_counter() - start
    fields = next(line.split() for line in stderr.splitlines() if line.startswith("PEAK_RSS_KIB"))
    CPU_SECONDS[id(lines)] = float(fields[3])
    return wall, float(fields[1]) / 1024, lines


def pastiche_command(content: Path, style: Path, output: Path, steps: int, beta: float) -> list[str]:
    from gramstyle import images as imageio
    from gramstyle.layers import layer_info

    h, w = imageio.load_image(content).shape[2:]
    stride = layer_info("conv4_2").stride
    n, m = layer_info("conv4_2").channels, (h // stride) * (w // stride)
    pastiche = shutil.which("pastiche")
    assert pastiche is not None
    return [pastiche, "--device", "cpu", "--seed", "0", "--optimizer", "lbfgs", "--info-step", "1",
            "--num-steps", str(steps), "--pooling", "avg", "--content-layers", "block4_relu2",
            "--content-layer-weights", "1", "--content-weight", str(n * m / 2),
            "--style-layer-weights", *[str(beta / 20)] * 5, "--style-weights", "1",
            "--size", str(max(h, w)), "--style-size", str(max(imageio.load_image(style).shape[2:])),
            "--content", str(content), "--styles", str(style), "--output", str(output)]


def worker(content: str, style: str, output: str, target: float, extra: str) -> None:
    """gramstyle in its own process: print each step's loss, stop at `target`, save (image and record)."""
    import gramstyle
    from gramstyle import images as imageio
    from gramstyle.apps.cli import build_parser, prepare_process, settings_from_args

    # The process as the command line sets it up, then the CLI's own parsing and settings, so that
    # --gramstyle-args takes exactly the flags a user would type.
    prepare_process()
    args = build_parser().parse_args(["transfer", content, style, "-o", output, *extra.split()])
    settings = settings_from_args(args, "transfer")
    settings = settings.replace(size=max(imageio.load_image(content).shape[2:]), steps=10_000)

    def report(progress: gramstyle.Progress) -> bool:
        if progress.kind != "step":  # stage events carry no step's losses
            return False
        print(f"STEP {progress.step} {progress.elapsed:.4f} {progress.losses['total']:.6e}")
        return progress.losses["total"] <= target

    result = gramstyle.transfer(content, style, settings=settings, callback=report)
    result.save(output)
    print(f"DONE {result.steps} {result.elapsed:.4f} {result.precision}")


def score(path: Path, content: Path, style: Path) -> float:
    """gramstyle's objective (eq. 7 with the defaults, float32) of an 8-bit image file."""
    import torch

    from gramstyle import images as imageio
    from gramstyle.config import Settings
    from gramstyle.objective import Objective
    from gramstyle.vgg import VGGFeatures, load_weights

    settings = Settings()
    net = VGGFeatures(load_weights(settings.weights))
    objective = Objective.for_settings(net, settings, content_image=imageio.load_image(content),
                                       style_images=[imageio.load_image(style)])
    with torch.no_grad():
        return float(objective(imageio.load_image(path)).total)


def find_image(name: str, folder: Path) -> Path:
    """A pair's image: a file, a name in `folder` (any extension), or a bundled image's name."""
    from gramstyle.assets import DATA

    if Path(name).is_file():
        return Path(name)
    for place in (folder, DATA):
        found = sorted(place.glob(f"{name}.*")) if place.is_dir() else []
        if found:
            return found[0]
    raise SystemExit(f"race.py: no image {name!r} in {folder} or the bundled images")


def prepare(size: int, folder: Path, content_source: Path | None = None,
            style_source: Path | None = None) -> tuple[Path, Path]:
    from gramstyle import images as imageio
    from gramstyle.assets import STARRY_NIGHT, TUBINGEN

    content, style = folder / "content.png", folder / "style.png"
    for source, target in ((content_source or TUBINGEN, content), (style_source or STARRY_NIGHT, style)):
        imageio.save_image(imageio.to_pil(imageio.load_image(source, size)), target)
    return content, style


def gramstyle_command(content: Path, style: Path, output: Path, target: float, extra: str) -> list[str]:
    return [sys.executable, __file__, "--worker", str(content), str(style), str(output), repr(target), extra]


def svg_plot(series: dict[str, list[tuple[float, float]]], marks: dict[str, tuple[float, float]], title: str,
             x_max: float | None = None) -> str:
    """Loss (log scale) against seconds, one polyline per series; marks are single points (the 8-bit scores).

    The loss axis spans the lowest value to the highest first value of a series: losses above it (pastiche's
    L-BFGS overshoots to 1e28 in its first steps) are drawn at the top edge."""
    import math

    width, height, left, right, top, bottom = 720, 420, 70, 20, 30, 45
    points = [p for s in series.values() for p in s] + list(marks.values())
    x_max = x_max if x_max is not None else max(x for x, _ in points) * 1.02
    low = math.floor(math.log10(min(y for _, y in points)) * 8) / 8
    high = math.ceil(math.log10(max(s[0][1] for s in series.values() if s)) * 4) / 4
    series = {name: [(x, y) for x, y in values if x <= x_max] for name, values in series.items()}
    marks = {name: mark for name, mark in marks.items() if mark[0] <= x_max}

    def xy(x: float, y: float) -> tuple[float, float]:
        return (left + x / x_max * (width - left - right),
                top + (high - min(math.log10(y), high)) / (high - low) * (height - top - bottom))

    colours = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd"]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
           'font-size="12">', f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2}" y="18" text-anchor="middle" font-size="14">{title}</text>']
    for k in range(math.ceil(low * 8), math.floor(high * 8) + 1):
        e = k / 8
        _, y = xy(0, 10**e)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="#ddd"/>')
        if k % 4 == 0 or (high - low <= 1.5 and k % 2 == 0):
            out.append(f'<text x="{left - 5}" y="{y + 4:.1f}" text-anchor="end">{10**e:.3g}</text>')
    step = 10 ** math.floor(math.log10(x_max / 5))
    step *= 2 if x_max / step > 12 else 1
    tick = 0.0
    while tick <= x_max:
        x, _ = xy(tick, 10**low)
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{height - bottom}" stroke="#eee"/>')
        out.append(f'<text x="{x:.1f}" y="{height - bottom + 15}" text-anchor="middle">{tick:g}</text>')
        tick += step
    out.append(f'<text x="{width / 2}" y="{height - 8}" text-anchor="middle">seconds from launch</text>')
    out.append(f'<text x="15" y="{height / 2}" transform="rotate(-90 15 {height / 2})" text-anchor="middle">'
               'total loss (eq. 7)</text>')
    for (name, values), colour in zip(series.items(), colours, strict=False):
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(a, b) for a, b in values))
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.8" points="{path}"/>')
        if name in marks:
            x, y = xy(*marks[name])
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{colour}"/>')
    for i, (name, colour) in enumerate(zip(series, colours, strict=False)):
        y = top + 15 + 18 * i
        out.append(f'<line x1="{width - 300}" y1="{y - 4}" x2="{width - 280}" y2="{y - 4}" stroke="{colour}" '
                   'stroke-width="2"/>')
        out.append(f'<text x="{width - 275}" y="{y}">{name}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def pair_path(path: str | None, pair: str, pairs: int) -> str | None:
    """--svg or --json for one pair: the path itself for a single pair, else one file per pair beside it
    (race.json -> race_chelsea-the_scream.json), so that no pair's trace overwrites another's."""
    if path is None or pairs == 1:
        return path
    target = Path(path)
    return str(target.with_name(f"{target.stem}_{pair.replace(':', '-')}{target.suffix}"))


def race(args: argparse.Namespace) -> None:
    print(f"CPU: {cpu_description()}")
    pairs = args.pairs or ["tubingen:starry_night"]
    rows = []
    for pair in pairs:
        content_name, _, style_name = pair.partition(":")
        row = race_pair(args, find_image(content_name, Path(args.images)), find_image(style_name, Path(args.images)),
                        pair_path(args.svg, pair, len(pairs)), pair_path(args.json, pair, len(pairs)))
        rows.append((pair, *row))
    if len(rows) > 1:
        print("\n| pair | size | pastiche s (CPU s) | gramstyle s (CPU s), steps | wall ratio | CPU ratio | reached |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for pair, size, p_wall, p_cpu, g_wall, g_cpu, steps, reached in rows:
            print(f"| {pair} | {size} | {p_wall:.1f} ({p_cpu:.1f}) | {g_wall:.1f} ({g_cpu:.1f}), {steps} | "
                  f"{g_wall / p_wall:.3f} | {g_cpu / p_cpu:.3f} | {'yes' if reached else 'no'} |")


def race_pair(args: argparse.Namespace, content_source: Path, style_source: Path, svg: str | None,
              json_path: str | None) -> tuple[str, float, float, float, float, int, bool]:
    import torch

    folder = Path(tempfile.mkdtemp(prefix="race-"))
    content, style = prepare(args.size, folder, content_source, style_source)
    from gramstyle.config import Settings

    p_wall, p_rss, p_lines = run_timed(pastiche_command(content, style, folder / "pastiche.png", args.steps,
                                                        Settings().beta))
    p_trace = []  # (seconds from launch, pastiche's own loss of its float image)
    for arrival, line in p_lines:
        parts = line.split()
        if len(parts) == 3 and parts[0].isdigit() and int(parts[0]) > 0:
            p_trace.append((arrival, float(parts[2])))
    p_loss = score(folder / "pastiche.png", content, style)

    g_wall, g_rss, g_lines = run_timed(gramstyle_command(content, style, folder / "gramstyle.png", p_loss,
                                                         args.gramstyle_args))
    g_trace = [(arrival, float(line.split()[3])) for arrival, line in g_lines if line.startswith("STEP")]
    steps, _, precision = next(line.split()[1:] for _, line in g_lines if line.startswith("DONE"))
    g_loss = score(folder / "gramstyle.png", content, style)
    reached = g_loss <= p_loss
    tenth = p_wall / 10
    at_tenth = min((loss for t, loss in g_trace if t <= tenth), default=float("nan"))
    launch_to_step1 = g_trace[0][0] if g_trace else float("nan")
    g_step = (g_trace[-1][0] - g_trace[0][0]) / max(len(g_trace) - 1, 1)

    from gramstyle import images as imageio

    h, w = imageio.load_image(content).shape[2:]
    p_cpu, g_cpu = CPU_SECONDS[id(p_lines)], CPU_SECONDS[id(g_lines)]
    print(f"\nrace of {content_source.name} x {style_source.name} at {w}x{h}, {torch.get_num_threads()} threads, "
          f"files in {folder}")
    print(f"gramstyle flags: {args.gramstyle_args or '(defaults)'}; precision used: {precision}")
    print(f"{'':10} {'wall s':>8} {'steps':>6} {'s/step':>7} {'8-bit loss':>11} {'peak RSS MiB':>12}")
    print(f"{'pastiche':10} {p_wall:8.1f} {args.steps:6d} {(p_trace[-1][0] - p_trace[0][0]) / (len(p_trace) - 1):7.3f} "
          f"{p_loss:11.4g} {p_rss:12.0f}")
    print(f"{'gramstyle':10} {g_wall:8.1f} {int(steps):6d} {g_step:7.3f} {g_loss:11.4g} {g_rss:12.0f}")
    print(f"gramstyle: {launch_to_step1:.1f} s from launch to its first step; stops at pastiche's score, saves, exits")
    verdict = "reached" if reached else "NOT reached (8-bit rounding)"
    print(f"time to pastiche's loss ({verdict}): gramstyle {g_wall:.1f} s = {g_wall / p_wall:.3f} of pastiche's "
          f"{p_wall:.1f} s (target: <= 0.1); CPU seconds {g_cpu:.1f} against {p_cpu:.1f} = {g_cpu / p_cpu:.3f}")
    if g_wall <= tenth:
        print(f"gramstyle was done before a tenth of pastiche's time ({tenth:.1f} s)")
    else:
        print(f"gramstyle's loss at a tenth of pastiche's time ({tenth:.1f} s): {at_tenth:.4g} "
              f"({at_tenth / p_loss:.3f} x pastiche's)")
    trace = {"size": [w, h], "pastiche": {"wall": p_wall, "rss_mib": p_rss, "loss_8bit": p_loss, "trace": p_trace},
             "gramstyle": {"wall": g_wall, "rss_mib": g_rss, "loss_8bit": g_loss, "trace": g_trace,
                           "steps": int(steps), "precision": precision, "flags": args.gramstyle_args}}
    if json_path:
        Path(json_path).write_text(json.dumps(trace) + "\n", encoding="utf-8")
    if svg:
        plots(trace, svg)
    return f"{w}x{h}", p_wall, p_cpu, g_wall, g_cpu, int(steps), reached


def plots(trace: dict, path: str) -> None:  # type: ignore[type-arg]
    """PATH: the whole race; PATH with _zoom: the first 2.5 times gramstyle's wall time."""
    (w, h), p, g = trace["size"], trace["pastiche"], trace["gramstyle"]
    series = {f"pastiche ({len(p['trace'])} L-BFGS steps)": p["trace"],
              f"gramstyle {g['flags'] or '(defaults)'}": g["trace"]}
    marks = dict(zip(series, [(p["wall"], p["loss_8bit"]), (g["wall"], g["loss_8bit"])], strict=True))
    title = f"{w}x{h}: loss against wall time from launch (dots: 8-bit scores at exit)"
    Path(path).write_text(svg_plot(series, marks, title), encoding="utf-8")
    zoom = Path(path).with_name(Path(path).stem + "_zoom.svg")
    zoom.write_text(svg_plot(series, marks, title + ", first seconds", x_max=2.5 * g["wall"]), encoding="utf-8")


def memory(sizes: list[int], extra: str) -> None:
    """Peak RSS of whole runs, long enough for each L-BFGS history to fill: pastiche keeps 100 correction
    pairs (torch.optim.LBFGS's default), gramstyle 50, and each pair holds two image-sized vectors."""
    from gramstyle.config import Settings

    p_steps, g_steps = 105, 55
    print(f"{'size':>6} {'pastiche MiB':>13} {'gramstyle MiB':>14}   (peak RSS; pastiche {p_steps} L-BFGS steps, "
          f"gramstyle {g_steps})")
    for size in sizes:
        folder = Path(tempfile.mkdtemp(prefix="race-memory-"))
        content, style = prepare(size, folder)
        _, p_rss, _ = run_timed(pastiche_command(content, style, folder / "p.png", p_steps, Settings().beta))
        command = ["gramstyle", "transfer", str(content), str(style), "-o", str(folder / "g.png"), "--size",
                   str(size), "--steps", str(g_steps), "-q", *extra.split()]
        _, g_rss, _ = run_timed([shutil.which("gramstyle") or "gramstyle", *command[1:]])
        print(f"{size:6d} {p_rss:13.0f} {g_rss:14.0f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=300, help="pastiche's L-BFGS steps")
    parser.add_argument("--gramstyle-args", default="", help="extra gramstyle flags, e.g. '--precision fp32'")
    parser.add_argument("--pairs", nargs="+", metavar="CONTENT:STYLE",
                        help="image pairs to race, e.g. tubingen:starry_night chelsea:the_scream")
    parser.add_argument("--images", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "images"),
                        help="folder of the pairs' images [default: ../shared/images]")
    parser.add_argument("--svg", help="write the loss-against-time plot here (with several --pairs, one file per "
                        "pair: NAME_CONTENT-STYLE.svg)")
    parser.add_argument("--json", help="write both traces here (with several --pairs, one file per pair, as --svg)")
    parser.add_argument("--memory", type=int, nargs="+", metavar="SIZE", help="only compare peak memory")
    parser.add_argument("--replot", metavar="JSON", help="redraw --svg from a --json file, running nothing")
    parser.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.replot:
        plots(json.loads(Path(args.replot).read_text(encoding="utf-8")), args.svg)
        return
    if args.worker:
        content, style, output, target, extra = args.worker
        worker(content, style, output, float(target), extra)
        return
    if shutil.which("pastiche") is None:
        raise SystemExit("race.py: the pastiche command is not installed (pip install pastiche==1.6.0)")
    if args.memory:
        memory(args.memory, args.gramstyle_args)
    else:
        race(args)


if __name__ == "__main__":
    main()
