"""Throughput of `gramstyle batch` against the same jobs as separate `gramstyle transfer` commands.

Every mode runs as fresh processes timed from launch to exit (imports, Ray start-up, weights, steps and saving
included), each into its own empty folder, on the same jobs: the bundled Tübingen and Shipwreck photos x The
Starry Night and The Scream x alpha/beta values (16 jobs with --count 16, 8 with --count 8).

- separate: one `gramstyle transfer` process per job, one after the other (a shell loop);
- batch --jobs 1 and --jobs 2: one process, one network per worker;
- batch --ray: a local Ray started for the run, one actor per CPU (--cpus-per-job 1).

"network reuse" is (separate - batch --jobs 1) / jobs: what a job saves by not starting a process and loading
VGG-19 again. "Ray overhead" is (ray - batch --jobs 2) / jobs, the same two workers either way.

    python benchmarks/batch_throughput.py                        # 16 jobs at 128 px, 20 steps
    python benchmarks/batch_throughput.py --count 8 --steps 5    # the reduced run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(SRC))

from gramstyle.assets import SHIPWRECK, STARRY_NIGHT, THE_SCREAM, TUBINGEN  # noqa: E402
from machine import cpu_description  # noqa: E402  (this folder is on sys.path when a script in it runs)

RATIOS = ("1e-4", "1e-3", "1e-2", "1e-1")


def timed(command: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "RAY_USAGE_STATS_ENABLED": "0"}
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def mean_job_seconds(folder: Path) -> float:
    """The mean optimization time per job from the run records (the part that is the same in every mode)."""
    times = [json.loads(p.read_text())["elapsed_seconds"] for p in folder.glob("*.png.json")]
    return sum(times) / len(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=16, choices=(4, 8, 16))
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--modes", default="separate,jobs1,jobs2,ray")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    ratios = RATIOS[: args.count // 4]
    contents, styles = [str(TUBINGEN), str(SHIPWRECK)], [str(STARRY_NIGHT), str(THE_SCREAM)]
    settings = ["--size", str(args.size), "--steps", str(args.steps)]
    gramstyle = [sys.executable, "-m", "gramstyle"]
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        batch = [*gramstyle, "batch", *contents, "--style", *styles, "--axis", "ratio=" + ",".join(ratios),
                 *settings, "-q"]
        for mode in args.modes.split(","):
            out = root / mode
            out.mkdir()
            if mode == "separate":
                seconds = 0.0
                for i, (c, s, r) in enumerate((c, s, r) for c in contents for s in styles for r in ratios):
                    seconds += timed([*gramstyle, "transfer", c, s, "--ratio", r, *settings, "-q",
                                      "-o", str(out / f"{i}.png")])
            else:
                extra = {"jobs1": ["--jobs", "1"], "jobs2": ["--jobs", "2"], "ray": ["--ray"]}[mode]
                seconds = timed([*batch, "-o", str(out), *extra])
            workers = 2 if mode in ("jobs2", "ray") else 1
            optimize = mean_job_seconds(out)
            # What a job costs beyond its own optimization (process start, imports, weights, Ray, saving), from
            # the worker-seconds: less sensitive to the machine's load than the wall time alone.
            results[mode] = {"seconds": seconds, "jobs_per_minute": 60 * args.count / seconds,
                             "optimize_seconds_per_job": optimize,
                             "overhead_seconds_per_job": seconds * workers / args.count - optimize}
            print(f"{mode}: {seconds:.1f} s, {results[mode]['jobs_per_minute']:.2f} jobs/min", file=sys.stderr)
    print(f"\n{args.count} jobs at {args.size} px, {args.steps} steps, {os.cpu_count()} CPUs; {cpu_description()}\n")
    print("| mode | wall s | jobs/min | optimization s/job (records) | overhead s/job (worker-s/job - optimization) |")
    print("|---|---|---|---|---|")
    for mode, r in results.items():
        print(f"| {mode} | {r['seconds']:.1f} | {r['jobs_per_minute']:.2f} | {r['optimize_seconds_per_job']:.2f} "
              f"| {r['overhead_seconds_per_job']:.2f} |")
    if "separate" in results and "jobs1" in results:
        saved = (results["separate"]["seconds"] - results["jobs1"]["seconds"]) / args.count
        reuse = results["separate"]["overhead_seconds_per_job"] - results["jobs1"]["overhead_seconds_per_job"]
        print(f"\nnetwork reuse saves {saved:.2f} s per job of wall time (separate - batch --jobs 1, per job); "
              f"{reuse:.2f} s of overhead per job")
    if "ray" in results and "jobs2" in results:
        overhead = (results["ray"]["seconds"] - results["jobs2"]["seconds"]) / args.count
        extra = results["ray"]["overhead_seconds_per_job"] - results["jobs2"]["overhead_seconds_per_job"]
        print(f"Ray's overhead: {overhead:.2f} s per job of wall time (ray - batch --jobs 2, per job, start-up "
              f"included); {extra:.2f} worker-s of overhead per job")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
