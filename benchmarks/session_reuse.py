"""What a Session saves per run: the same small transfer repeated with one session against a fresh one each time.

A fresh session loads the weights (dequantising the 8-bit file; for caffe-normalized also rebuilding the normalised
weights from the cached means) and builds VGG-19; a kept session does that once. Runs are 64 px, 1 step, so the
difference is the set-up itself.

    python benchmarks/session_reuse.py --runs 5 --weights caffe caffe-normalized
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

import gramstyle
from gramstyle.assets import DEMO_CONTENT, DEMO_STYLE
from gramstyle.vgg.weights import load_caffe_weights
from machine import cpu_description  # this folder is on sys.path when a script in it runs


def timed(session_for_run, runs: int, **settings: object) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        gramstyle.transfer(DEMO_CONTENT, DEMO_STYLE, size=64, steps=1, session=session_for_run(), **settings)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--weights", nargs="+", default=["caffe", "caffe-normalized"])
    parser.add_argument("--precision", default="fp32")
    args = parser.parse_args()
    print(f"CPU: {cpu_description()}", file=sys.stderr)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for weights in args.weights:
        kept = gramstyle.Session()
        timed(lambda kept=kept: kept, 1, weights=weights, precision=args.precision)  # the kept session builds here

        def fresh() -> gramstyle.Session:
            load_caffe_weights.cache_clear()  # what a new process pays: the weights file is read again
            return gramstyle.Session()

        new = timed(fresh, args.runs, weights=weights, precision=args.precision)
        reuse = timed(lambda kept=kept: kept, args.runs, weights=weights, precision=args.precision)
        saved = statistics.median(new) - statistics.median(reuse)
        print(f"{weights:>17} {args.precision}: fresh session {statistics.median(new):.3f} s/run, kept session "
              f"{statistics.median(reuse):.3f} s/run (median of {args.runs}); saved {saved:.3f} s per run")


if __name__ == "__main__":
    main()
