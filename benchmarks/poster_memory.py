"""Peak memory and time of a few steps, untiled against tiled, each run in a fresh process.

    python benchmarks/poster_memory.py --size 1024 --tile off --steps 2
    python benchmarks/poster_memory.py --size 1024 --tile 512 --steps 2
    python benchmarks/poster_memory.py --size 4096 --tile auto --scales 512,1024,2048,4096 \
        --scale-steps 150,60,20,6 --output poster.jpg          # the 4096 x 3072 poster (each stage's peak too)
    python benchmarks/poster_memory.py --size 8192 --tile auto --steps 2 --device cuda   # and the GPU's peak

Prints one JSON line: size, tile, steps, the preflight's estimate, the child's peak RSS (getrusage), the
seconds of the optimization and of each step. Runs the demo images (Tubingen, The Starry Night) at fp32.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

from machine import cpu_description

CHILD = r"""
import json, sys, time, torch
import gramstyle
from gramstyle import tiling
from gramstyle.assets import DEMO_CONTENT, DEMO_STYLE
size, tile, steps, scales, device = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[7]
settings = gramstyle.Settings(size=size, steps=steps, tile=tile, precision="fp32", history_size=int(sys.argv[5]),
                              device=device)
if scales != "none":
    settings = settings.replace(scales=scales, scale_steps=sys.argv[6])
stage_times, stage_peaks = [], []
def peak_gib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 2**20
def report(p):
    if p.kind == "stage_start":  # Linux: "5" resets the peak RSS, so each stage's peak is its own
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    if p.kind in ("stage_start", "stage_end"):
        stage_times.append((p.kind, p.stage.size, time.perf_counter()))
    if p.kind == "stage_end":
        stage_peaks.append((p.stage.size, round(peak_gib(), 2)))
        print(json.dumps({"stage_end": p.stage.size, "t": round(time.perf_counter() - start, 1),
                          "peak_gib": stage_peaks[-1][1]}), flush=True)
start = time.perf_counter()
result = gramstyle.transfer(DEMO_CONTENT, DEMO_STYLE, settings=settings, callback=report)
print(json.dumps({"tiles": result.tiles, "steps": result.steps, "optimize_s": round(result.elapsed, 1),
                  "wall_s": round(time.perf_counter() - start, 1),
                  "step_s": [round(b["elapsed"] - a["elapsed"], 1) for a, b in zip([{"elapsed": 0.0}] + result.history,
                                                                              result.history)],
                  "stages": [(k, s, round(t - start, 1)) for k, s, t in stage_times],
                  "stage_peak_rss_gib": stage_peaks, "history_sizes": result.history_sizes,
                  "final_losses": result.losses, "shape": list(result.image.size), "device": result.device,
                  **({"peak_cuda_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)}
                     if result.device.startswith("cuda") else {})}))
if len(sys.argv) > 8:
    result.save(sys.argv[8])
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--tile", default="off")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--history-size", type=int, default=50)
    parser.add_argument("--scales", default="none")
    parser.add_argument("--scale-steps", default="")
    parser.add_argument("--output", help="save the picture (and its record) here")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (on CUDA the GPU's peak is reported too)")
    args = parser.parse_args()
    print(f"CPU: {cpu_description()}", file=sys.stderr)
    begin = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(args.size), args.tile, str(args.steps), args.scales,
                              str(args.history_size), args.scale_steps, args.device,
                              *([args.output] if args.output else [])],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stderr is not None
    lines = []
    for line in child.stdout:  # each stage's end as it comes (a poster runs for long)
        lines.append(line)
        print(line.rstrip(), file=sys.stderr, flush=True)
    stderr = child.stderr.read()
    returncode = child.wait()
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    record = {"size": args.size, "tile": args.tile, "history_size": args.history_size,
              "peak_rss_gib": round(peak / 2**30, 2), "returncode": returncode,
              "process_s": round(time.perf_counter() - begin, 1)}
    if returncode == 0:
        record.update(json.loads(lines[-1]))
    else:
        record["stderr"] = stderr.strip().splitlines()[-3:]
    print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
