"""The ``gramstyle batch`` subcommand: flags, the progress bar and the summary line."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from ...errors import SettingsError
from .jobs import Job, expand, expand_inputs, parse_axis
from .runner import MANIFEST, SHEET, Executor, LocalExecutor, OnJob, Outcome, Summary, batch


def _say(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def add_parser(sub: Any, add_settings: Any, number: Any) -> None:
    """Register ``batch`` on the CLI's subparsers; `add_settings` adds the transfer's settings flags."""
    p = sub.add_parser("batch", help="many transfers in one command: contents x styles x axes, resumable, "
                       "locally or on Ray")
    p.add_argument("content", nargs="+", help="content images: files, folders or globs")
    p.add_argument("--style", nargs="+", required=True, metavar="STYLE", help="style images: files, folders or globs")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR",
                   help=f"folder for the images, their records, {MANIFEST} and {SHEET}")
    p.add_argument("--axis", action="append", default=[], metavar="NAME=V1,V2,...",
                   help="sweep a setting (or ratio, alpha/beta) over these values; repeatable, the jobs are the "
                        "product; separate values with ';' when they contain commas "
                        "(style_layers=conv1_1;conv1_1,conv2_1)")
    p.add_argument("--pair", action="store_true", help="zip contents with styles instead of taking every pair")
    p.add_argument("--ratio", type=number(float, "a number"), metavar="ALPHA/BETA",
                   help="content-to-style ratio alpha/beta for every job (sets beta = alpha / ratio)")
    add_settings(p, "transfer")
    add_execution_flags(p, number)


def add_execution_flags(p: argparse.ArgumentParser, number: Any, unit: str = "job") -> None:
    """The flags of how a batch runs (workers, Ray, progress), for every command that runs one."""
    group = p.add_argument_group("execution")
    group.add_argument("--jobs", type=number(int, "an integer"), default=1,
                       help="local worker processes, each keeping its network; torch threads = cores / N "
                            "[default: 1]")
    group.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                       help="run on Ray: a local Ray for this run, or the cluster at ADDRESS (needs gramstyle[ray])")
    group.add_argument("--cpus-per-job", type=number(float, "a number"), default=1.0,
                       help=f"Ray: CPUs per {unit} (its torch threads) [default: 1]")
    group.add_argument("--gpus-per-job", type=number(float, "a number"), default=0.0,
                       help=f"Ray: GPUs per {unit}, fractional to share a card (0.25: four {unit}s per GPU) "
                            "[default: 0]")
    group.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no summary")
    group.add_argument("--verbose", action="store_true", help=f"a line per finished {unit}")


def jobs_from_args(args: argparse.Namespace, settings_from_args: Any) -> list[Job]:
    settings = settings_from_args(args, "transfer")
    axes = [parse_axis(text) for text in args.axis]
    contents = expand_inputs(args.content, "content")
    styles = expand_inputs(args.style, "--style")
    return expand(contents, styles, settings, axes, pair=args.pair)


def executor_from_args(args: argparse.Namespace) -> Executor:
    if args.ray is not None:
        from .on_ray import RayExecutor

        return RayExecutor(address=None if args.ray == "local" else args.ray, cpus_per_job=args.cpus_per_job,
                           gpus_per_job=args.gpus_per_job)
    if args.jobs < 1:
        raise SettingsError(f"--jobs must be a positive integer, got {args.jobs}")
    return LocalExecutor(jobs=args.jobs)


#: What `drive` runs: a batch given its two callbacks, returning its summary and what it wrote (for the last line).
Start = Callable[[OnJob, Callable[[int, int], None]], tuple[Summary, str]]


def run(args: argparse.Namespace, settings_from_args: Any) -> int:
    """Exit status 0 when every job is done, 1 when some failed (their errors are in the manifest)."""
    jobs = jobs_from_args(args, settings_from_args)
    executor = executor_from_args(args)

    def start(on_job: OnJob, on_start: Callable[[int, int], None]) -> tuple[Summary, str]:
        summary = batch(jobs, args.output, executor=executor, on_job=on_job, on_start=on_start)
        return summary, f"{args.output}/{MANIFEST}" + (f", {summary.sheet}" if summary.sheet else "")

    return drive(args, start)


def drive(args: argparse.Namespace, start: Start, unit: str = "job") -> int:
    """Run `start` under the one progress bar (unless ``--quiet``), then the summary line and each failure; exit
    status 0 when every job is done, 1 when some failed, 130 when interrupted."""
    bar: Any = None
    counts = {"done": 0, "failed": 0}
    started = time.monotonic()

    def on_start(todo: int, skipped: int) -> None:
        nonlocal bar
        if args.quiet:
            return
        if not todo:
            _say(f"gramstyle: all {skipped} {unit}s already done in {args.output}; nothing to run")
            return
        if skipped:
            _say(f"gramstyle: {skipped} {unit}s already done, {todo} to run")
        from tqdm import tqdm

        bar = tqdm(total=todo, unit=unit, file=sys.stderr, dynamic_ncols=True)

    def on_job(job: Job, outcome: Outcome) -> None:
        counts["done" if outcome.error is None else "failed"] += 1
        if bar is None:
            return
        if args.verbose:
            what = (f"done in {outcome.elapsed:.1f} s" if outcome.error is None else f"FAILED: {outcome.error}")
            bar.write(f"{job.stem}: {what}", file=sys.stderr)
        bar.set_postfix_str(f"{counts['failed']} failed" if counts["failed"] else "", refresh=False)
        bar.update(1)

    try:
        summary, wrote = start(on_job, on_start)
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        _say(f"gramstyle: interrupted after {counts['done']} {unit}s; rerun the same command to do the rest")
        return 130
    if bar is not None:
        bar.close()
    if not args.quiet and (summary.done or summary.failed):
        _say(f"gramstyle: {len(summary.done)} done, {len(summary.failed)} failed, {summary.skipped} skipped in "
             f"{time.monotonic() - started:.1f} s; {wrote}")
    for job_id, error in summary.failed.items() if not args.quiet else ():
        _say(f"gramstyle: failed {job_id[:12]}: {error}")
    return 0 if summary.ok else 1
