"""Seconds per optimizer step and peak memory of a style transfer, per output size.

Each size runs in a fresh subprocess so that its peak memory is its own. A step is one VGG-19 forward and
backward (conv1_1 ... conv5_1) plus the L-BFGS update, on the paper's objective and the bundled images.

    python benchmarks/step_time.py                       # 256 and 512 px on the CPU
    python benchmarks/step_time.py --sizes 512 1024 --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def measure(size: int, steps: int, device: str, warmup: int) -> dict[str, float]:
    import torch

    import gramstyle
    from gramstyle.cli import DEMO_CONTENT, DEMO_STYLE

    times: list[float] = []
    last = [time.perf_counter()]

    def tick(progress: gramstyle.Progress) -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        now = time.perf_counter()
        times.append(now - last[0])
        last[0] = now

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    result = gramstyle.transfer(DEMO_CONTENT, DEMO_STYLE, size=size, steps=warmup + steps, device=device,
                                callback=tick)
    total = time.perf_counter() - start
    timed = sorted(times[warmup:])
    width, height = result.image.size
    out = {
        "size": size, "width": width, "height": height, "device": device, "threads": torch.get_num_threads(),
        "steps": len(timed), "median_s_per_step": timed[len(timed) // 2], "mean_s_per_step": sum(timed) / len(timed),
        "wall_s": total, "final_loss": result.losses["total"],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if device.startswith("cuda"):
        out["peak_cuda_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per size")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: measure one size, print JSON
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(measure(args.one, args.steps, args.device, args.warmup)))
        return
    print(f"{'size':>10} {'device':>6} {'threads':>7} {'s/step (median)':>16} {'s/step (mean)':>14} "
          f"{'peak RSS MiB':>12} {'peak CUDA MiB':>13}")
    for size in args.sizes:
        command = [sys.executable, __file__, "--one", str(size), "--steps", str(args.steps), "--warmup",
                   str(args.warmup), "--device", args.device]
        line = subprocess.run(command, check=True, capture_output=True, text=True, env=os.environ).stdout
        r = json.loads(line.strip().splitlines()[-1])
        cuda = f"{r['peak_cuda_mib']:13.0f}" if "peak_cuda_mib" in r else f"{'-':>13}"
        print(f"{r['width']:>4}x{r['height']:<5} {r['device']:>6} {r['threads']:>7} {r['median_s_per_step']:16.4f} "
              f"{r['mean_s_per_step']:14.4f} {r['peak_rss_mib']:12.0f} {cuda}", flush=True)


if __name__ == "__main__":
    main()
