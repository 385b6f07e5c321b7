"""Seconds per optimizer step and peak memory of a style transfer, per output size and precision, against the
step time the machine's convolution throughput predicts.

Each (size, precision) runs in a fresh subprocess so that its peak memory is its own. A step is one VGG-19
forward and backward (conv1_1 ... conv5_1) plus the L-BFGS update, on the paper's objective and the bundled
images. The prediction: a step costs twice the forward convolutions' FLOPs (the backward computes only the
gradient of each layer's input, the same multiply-adds again; no weight gradients), plus the Gram matrices
(one product forward, one backward with eq. 6), divided by the throughput that the same 16 convolutions reach
here when run alone, forward, on random inputs of the same shapes.

    python benchmarks/step_time.py                                  # 256 and 512 px, fp32 and bf16, CPU
    python benchmarks/step_time.py --sizes 512 1024 --device cuda --precisions fp32 bf16
    python benchmarks/step_time.py --sizes 256 512 1024 --precisions fp32 --convolutions direct winograd

With --convolutions winograd the predicted time is still the direct method's FLOPs over the direct
convolutions' throughput: a ratio below 1 is what Winograd's fewer multiplications save.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

from machine import cpu_description  # this folder is on sys.path when a script in it runs


def conv_shapes(height: int, width: int, deepest: str = "conv5_1") -> list[tuple[str, int, int, int, int]]:
    """(name, input channels, output channels, h, w) of VGG-19's convolutions up to `deepest`."""
    from gramstyle.layers import VGG19

    shapes, h, w, channels = [], height, width, 3
    for layer in VGG19:
        if layer.kind == "pool":
            h, w = h // 2, w // 2
            continue
        shapes.append((layer.name, channels, layer.channels, h, w))
        channels = layer.channels
        if layer.name == deepest:
            break
    return shapes


def vgg_flops(height: int, width: int,
              style: tuple[str, ...] = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")) -> dict[str, float]:
    """Forward multiply-add FLOPs (2 per MAC) of VGG-19's convolutions up to conv5_1, and of the Gram
    matrices of `style` (forward N^2 M, backward N^2 M multiply-adds each)."""
    conv = sum(2 * c_in * c_out * 9 * h * w for _, c_in, c_out, h, w in conv_shapes(height, width))
    gram = sum(2 * 2 * c_out**2 * h * w for name, _, c_out, h, w in conv_shapes(height, width) if name in style)
    return {"conv_forward": conv, "gram": gram, "step": 2 * conv + gram}


def conv_throughput(height: int, width: int, device: str, dtype_name: str, repeats: int = 5) -> float:
    """FLOP/s of VGG-19's convolutions (to conv5_1) run alone, forward, at this image size."""
    import torch
    import torch.nn.functional as F

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    tensors = [(torch.rand(1, c_in, h, w, device=device, dtype=dtype),
                torch.randn(c_out, c_in, 3, 3, device=device, dtype=dtype) * 0.01)
               for _, c_in, c_out, h, w in conv_shapes(height, width)]
    best = float("inf")
    with torch.no_grad():
        for _ in range(repeats):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            for x, weight in tensors:
                F.conv2d(x, weight, padding=1)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
    return vgg_flops(height, width)["conv_forward"] / best


def measure(size: int, steps: int, device: str, warmup: int, precision: str,
            convolution: str = "auto") -> dict[str, float | str]:
    import torch

    import gramstyle
    from gramstyle.assets import DEMO_CONTENT, DEMO_STYLE

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
                                precision=precision, convolution=convolution, callback=tick)
    total = time.perf_counter() - start
    timed = sorted(times[warmup:])
    width, height = result.image.size
    out: dict[str, float | str] = {
        "size": size, "width": width, "height": height, "device": device, "threads": torch.get_num_threads(),
        "precision": result.precision, "convolution": "/".join(result.convolutions), "steps": len(timed),
        "median_s_per_step": timed[len(timed) // 2],
        "mean_s_per_step": sum(timed) / len(timed), "wall_s": total, "final_loss": result.losses["total"],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if device.startswith("cuda"):
        out["peak_cuda_mib"] = torch.cuda.max_memory_allocated() / 2**20
    flops = vgg_flops(height, width)
    throughput = conv_throughput(height, width, device, result.precision)
    out.update(step_gflop=flops["step"] / 1e9, conv_gflops=throughput / 1e9,
               predicted_s_per_step=flops["step"] / throughput)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=("fp32", "bf16", "auto"))
    parser.add_argument("--convolutions", nargs="+", default=["auto"], choices=("auto", "direct", "winograd"))
    parser.add_argument("--steps", type=int, default=20, help="timed steps per size")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: measure one size, print JSON
    parser.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    parser.add_argument("--convolution", default="auto", help=argparse.SUPPRESS)
    args = parser.parse_args()
    print(f"CPU: {cpu_description()}", file=sys.stderr)
    if args.one is not None:
        print(json.dumps(measure(args.one, args.steps, args.device, args.warmup, args.precision, args.convolution)))
        return
    print(f"{'size':>10} {'device':>6} {'prec':>5} {'conv':>8} {'threads':>7} {'s/step':>8} {'GFLOP':>6} "
          f"{'conv GFLOP/s':>12} {'predicted':>9} {'ratio':>6} {'peak RSS MiB':>12} {'peak CUDA MiB':>13}")
    for size in args.sizes:
        for precision, convolution in ((p, c) for p in args.precisions for c in args.convolutions):
            command = [sys.executable, __file__, "--one", str(size), "--steps", str(args.steps), "--warmup",
                       str(args.warmup), "--device", args.device, "--precision", precision, "--convolution",
                       convolution]
            line = subprocess.run(command, check=True, capture_output=True, text=True, env=os.environ).stdout
            r = json.loads(line.strip().splitlines()[-1])
            cuda = f"{r['peak_cuda_mib']:13.0f}" if "peak_cuda_mib" in r else f"{'-':>13}"
            print(f"{r['width']:>4}x{r['height']:<5} {r['device']:>6} {r['precision']:>5} {r['convolution']:>8} "
                  f"{r['threads']:>7} "
                  f"{r['median_s_per_step']:8.4f} {r['step_gflop']:6.1f} {r['conv_gflops']:12.0f} "
                  f"{r['predicted_s_per_step']:9.4f} {r['median_s_per_step'] / r['predicted_s_per_step']:6.2f} "
                  f"{r['peak_rss_mib']:12.0f} {cuda}", flush=True)


if __name__ == "__main__":
    main()
