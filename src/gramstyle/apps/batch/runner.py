"""Running a batch: what is done is skipped, the rest goes to an executor, the driver writes every result.

Workers (local processes or Ray actors) keep one `Session` each and return the PNG's bytes and the run record;
only the driver writes to OUTDIR, so a cluster needs no shared filesystem. Each job's image and record are
written together atomically, then its line is appended to ``manifest.jsonl``; a rerun trusts the image and
record (their id and settings), not the manifest, and adds the manifest line a killed driver could not write.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from ... import files
from ... import images as imageio
from ...config import Settings
from ...errors import GramstyleError, ImageError, SettingsError, literal
from ...result import record as run_record
from ...session import Session, default_session
from ..grid import compose
from .jobs import Job, load_inputs, with_ids

MANIFEST = "manifest.jsonl"
SHEET = "sheet.jpg"


# --- what travels between the driver and its workers ----------------------------------------------------------

@dataclass(frozen=True)
class Work:
    """One job as a worker gets it: the inputs as encoded bytes (None where a file could not be read)."""

    id: str
    task: str
    settings: dict[str, Any]
    content: tuple[str, bytes | None] | None  # None: the task has no content image (a texture)
    styles: tuple[tuple[str, bytes | None], ...]  # empty: no style image (a content reconstruction)
    output: str  # the file name the record names


@dataclass
class Outcome:
    id: str
    png: bytes | None = None
    record: dict[str, Any] | None = None
    error: str | None = None  # rendered with setting names
    error_type: str | None = None
    field: str | None = None
    pid: int = 0
    node: str | None = None
    elapsed: float = 0.0


def _decode(name: str, data: bytes | None, max_pixels: int) -> Image.Image:
    """Encoded bytes -> RGB image, with the same checks and messages as reading the file."""
    if data is None:
        imageio.open_image(name, max_pixels)  # raises the file's own error (missing, folder, unreadable)
        raise ImageError(f"{literal(name)}: cannot be read")
    if not data:
        raise ImageError(f"{literal(name)}: empty file (0 bytes)")
    try:
        with imageio._pil_limit_lifted():
            image = Image.open(io.BytesIO(data))
    except Exception as exc:  # PIL raises many kinds on malformed headers
        raise ImageError(f"{literal(name)}: not an image file or corrupt ({imageio._first_line(exc)})") from None
    return imageio._decode(image, literal(name), max_pixels)


def execute(session: Session, work: Work) -> Outcome:
    """Run one job in `session`. A `GramstyleError` (a bad input, a setting no run can use) is the job's failure,
    returned, never raised: it would fail again on any retry. A task ``gramstyle.apps.MODULE:FUNCTION`` is a front
    door's own kind of job (a video's shot): ``FUNCTION(session, work)`` runs it and returns its Outcome."""
    if work.task.startswith("gramstyle.apps.") and ":" in work.task:
        module, _, name = work.task.partition(":")
        handler: Callable[[Session, Work], Outcome] = getattr(importlib.import_module(module), name)
        return handler(session, work)
    start = time.monotonic()
    try:
        settings = Settings.from_dict(work.settings)
        content = None if work.content is None else _decode(*work.content, settings.max_pixels)
        styles = [_decode(name, data, settings.max_pixels) for name, data in work.styles]
        result = session.run(work.task, settings, content=content, styles=styles or None)
        buffer = io.BytesIO()
        result.image.save(buffer, format="PNG")
        rec = run_record(result, work.output, {
            "inputs": {"content": None if work.content is None else work.content[0],
                       "style": [name for name, _ in work.styles]},
            "batch_id": work.id})
        return Outcome(work.id, png=buffer.getvalue(), record=rec, pid=os.getpid(), elapsed=time.monotonic() - start)
    except GramstyleError as exc:
        return Outcome(work.id, error=str(exc), error_type=type(exc).__name__, field=exc.field, pid=os.getpid(),
                       elapsed=time.monotonic() - start)


def unexpected(work_id: str, exc: BaseException) -> Outcome:
    """A job that raised something other than a GramstyleError (a bug): its failure, not the batch's."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return Outcome(work_id, error=f"unexpected {type(exc).__name__}: {first}", error_type=type(exc).__name__)


# --- executors ------------------------------------------------------------------------------------------------

OnOutcome = Callable[[Outcome], None]


class Executor(Protocol):
    """Runs works and calls back (in the driver's thread) with each outcome, in the order they finish."""

    def run(self, works: Sequence[Work], on_outcome: OnOutcome) -> None: ...


_SESSION: Session | None = None


def _worker_init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    global _SESSION
    _SESSION = Session()


def _worker_execute(work: Work) -> Outcome:
    global _SESSION
    if _SESSION is None:
        _SESSION = Session()
    return execute(_SESSION, work)


@dataclass
class LocalExecutor:
    """``jobs`` worker processes on this machine, each with one Session and cores // jobs torch threads; with
    ``jobs == 1``, this process itself (no start-up cost). A worker that dies takes its pool down: the jobs not
    finished go to a fresh pool, up to ``restarts`` times."""

    jobs: int = 1
    threads: int | None = None  # per worker; default: cores // jobs
    restarts: int = 2
    session: Session | None = None  # for jobs == 1 (default: the process's shared one)

    def __post_init__(self) -> None:
        if not isinstance(self.jobs, int) or self.jobs < 1:
            raise SettingsError(f"--jobs must be a positive integer, got {self.jobs}")

    def threads_per_job(self) -> int:
        return self.threads or max(1, (os.cpu_count() or 1) // self.jobs)

    def run(self, works: Sequence[Work], on_outcome: OnOutcome) -> None:
        if self.jobs == 1:
            import torch

            saved = torch.get_num_threads()
            torch.set_num_threads(self.threads_per_job())
            session = self.session or default_session()
            try:
                for work in works:
                    try:
                        outcome = execute(session, work)
                    except Exception as exc:  # a bug shows in its job's line; the other jobs still run
                        outcome = unexpected(work.id, exc)
                    on_outcome(outcome)
            finally:
                torch.set_num_threads(saved)
            return
        pending = {w.id: w for w in works}
        for attempt in range(self.restarts + 1):
            if not pending:
                return
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(min(self.jobs, len(pending)), mp_context=context, initializer=_worker_init,
                                     initargs=(self.threads_per_job(),)) as pool:
                futures: dict[Future[Outcome], str] = {pool.submit(_worker_execute, w): w.id
                                                       for w in pending.values()}
                broken = False
                while futures:
                    done, _ = wait(futures, return_when=FIRST_COMPLETED)
                    for future in done:
                        work_id = futures.pop(future)
                        try:
                            outcome = future.result()
                        except BrokenProcessPool:
                            broken = True
                            continue
                        except Exception as exc:
                            outcome = unexpected(work_id, exc)
                        pending.pop(work_id, None)
                        on_outcome(outcome)
                if not broken:
                    return
            if attempt == self.restarts:
                for work_id in list(pending):
                    on_outcome(Outcome(work_id, error="the worker process died (after "
                                       f"{self.restarts} restarts)", error_type="WorkerDied"))


# --- the output folder ----------------------------------------------------------------------------------------

class Manifest:
    """``OUTDIR/manifest.jsonl``: one JSON line per finished or failed job, each appended by one ``write`` with
    flush and fsync under a lock (a thread lock and an advisory file lock), so a line is whole or absent; a
    torn last line (a driver killed mid-write) is ignored when read and does not glue to the next one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def lines(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                item = json.loads(line)
                if isinstance(item, dict):
                    out.append(item)
        return out

    def append(self, entry: Mapping[str, Any]) -> None:
        data = (json.dumps(entry, sort_keys=True) + "\n").encode()
        with self._lock, _file_lock(self.path.with_name(self.path.name + ".lock")):
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                size = os.fstat(fd).st_size
                if size:
                    with open(self.path, "rb") as f:
                        f.seek(size - 1)
                        if f.read(1) != b"\n":
                            data = b"\n" + data
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # Windows: the thread lock alone
        yield
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def paths(outdir: Path, job: Job) -> tuple[Path, Path]:
    image = outdir / f"{job.stem}.png"
    return image, Path(str(image) + ".json")


def is_done(outdir: Path, job: Job) -> bool:
    """Its image and record are there and the record is this job's (its id and settings)."""
    image, rec = paths(outdir, job)
    if not (image.is_file() and rec.is_file()):
        return False
    try:
        data = json.loads(rec.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("batch_id") == job.id and data.get("settings") == job.settings.to_dict()


def write_outcome(outdir: Path, job: Job, outcome: Outcome) -> None:
    image, rec = paths(outdir, job)
    assert outcome.png is not None and outcome.record is not None
    with files.atomic_paths([image, rec]) as (tmp_image, tmp_record):
        tmp_image.write_bytes(outcome.png)
        tmp_record.write_text(json.dumps(outcome.record, indent=2) + "\n", encoding="utf-8")


def manifest_entry(outdir: Path, job: Job, outcome: Outcome | None) -> dict[str, Any]:
    image, _ = paths(outdir, job)
    entry: dict[str, Any] = {"id": job.id, "name": job.stem, "content": job.content, "styles": list(job.styles),
                             "axes": dict(job.axes), "task": job.task}
    if outcome is None or outcome.error is None:
        entry.update(status="done", output=image.name)
        if outcome is not None and outcome.record is not None:
            entry.update(elapsed_seconds=round(outcome.elapsed, 3), steps=outcome.record.get("steps"),
                         final_loss=outcome.record.get("final_losses", {}).get("total"))
    else:
        entry.update(status="failed", error=outcome.error, error_type=outcome.error_type, field=outcome.field)
    if outcome is not None and outcome.node is not None:
        entry["node"] = outcome.node
    if outcome is not None and outcome.pid:
        entry["pid"] = outcome.pid
    return entry


# --- grids: the contact sheet, the paper's figures -----------------------------------------------------------

@dataclass(frozen=True)
class Cell:
    """Where a job's image goes in a grid, and its caption."""

    job: Job
    row: int
    column: int
    caption: str


def sheet_layout(jobs: Sequence[Job]) -> tuple[list[Cell], str]:
    """Each job's cell and the sheet's title. Columns are the last axis's values (the styles when there is no
    axis); rows are every other combination (content, style, the other axes)."""
    if not jobs:
        return [], ""
    axes = [name for name, _ in jobs[0].axes]

    def row_key(job: Job) -> tuple[str, ...]:
        values = [Path(job.content).stem if job.content is not None else "-"]
        if axes:
            values += [Path(s).stem for s in job.styles] + [f"{n}={v}" for n, v in job.axes[:-1]]
        return tuple(values)

    def column_key(job: Job) -> str:
        return f"{job.axes[-1][0]}={job.axes[-1][1]}" if axes else "+".join(Path(s).stem for s in job.styles)

    rows = list(dict.fromkeys(row_key(j) for j in jobs))
    columns = list(dict.fromkeys(column_key(j) for j in jobs))
    cells = [Cell(job, rows.index(row_key(job)), columns.index(column_key(job)),
                  f"{' '.join(row_key(job))} | {column_key(job)}") for job in jobs]
    title = (f"rows: content, style{', ' + ', '.join(axes[:-1]) if axes[:-1] else ''}; columns: {axes[-1]}"
             if axes else "rows: content; columns: style")
    return cells, title


def write_grid(outdir: Path, cells: Sequence[Cell], title: str, path: Path) -> Path | None:
    """The labelled grid of the cells' finished images (a failed job leaves its cell blank); None when no job of
    them has an image. Cells are scaled to the widest image, between 192 px (for the captions) and 384 px."""
    images: dict[tuple[int, int], tuple[Image.Image, str]] = {}
    for cell in cells:
        image, _ = paths(outdir, cell.job)
        if image.is_file():
            with Image.open(image) as im:
                images[(cell.row, cell.column)] = (im.convert("RGB"), cell.caption)
    if not images:
        return None
    width = max(im.width for im, _ in images.values())
    imageio.save_image(compose(images, title, max(192, min(width, 384))), path)
    return path


def write_sheet(outdir: Path, jobs: Sequence[Job], path: Path | None = None) -> Path | None:
    """The contact sheet: every finished job's image in `sheet_layout`'s grid."""
    cells, title = sheet_layout(jobs)
    return write_grid(outdir, cells, title, path or outdir / SHEET)


# --- the batch ------------------------------------------------------------------------------------------------

@dataclass
class Summary:
    """What a batch did: jobs run now (done or failed), skipped as done before, and where the files are."""

    total: int
    skipped: int
    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # id -> error
    sheet: Path | None = None
    outcomes: dict[str, Outcome] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed


#: Called after each job that ran, with the job, its outcome and the counts so far (done, failed, to run).
OnJob = Callable[[Job, Outcome], None]


def prepare(jobs: Sequence[Job]) -> tuple[list[Job], dict[str, bytes | None]]:
    """The jobs with ids and the bytes of every input."""
    data = load_inputs(jobs)
    with_id = with_ids(jobs, data) if any(not j.id for j in jobs) else list(jobs)
    seen: dict[str, Job] = {}
    for job in with_id:
        seen.setdefault(job.id, job)  # the same inputs and settings twice are one job
    return list(seen.values()), data


def batch(jobs: Sequence[Job], outdir: str | os.PathLike[str], *, executor: Executor | None = None,
          on_job: OnJob | None = None, on_start: Callable[[int, int], None] | None = None,
          sheet: bool = True) -> Summary:
    """Run `jobs` into `outdir`, skipping those done before; see the module's docstring."""
    out = Path(outdir)
    if out.exists() and not out.is_dir():
        raise SettingsError(f"{literal(out)}: exists and is not a folder")
    todo_jobs, data = prepare(jobs)
    out.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(out / MANIFEST)
    recorded = {line.get("id") for line in manifest.lines() if line.get("status") == "done"}
    todo, skipped = [], 0
    for job in todo_jobs:
        if is_done(out, job):
            skipped += 1
            if job.id not in recorded:  # written before the driver was killed, its line not yet
                manifest.append(manifest_entry(out, job, None))
        else:
            todo.append(job)
    summary = Summary(total=len(todo_jobs), skipped=skipped)
    if on_start is not None:
        on_start(len(todo), skipped)
    by_id = {job.id: job for job in todo}
    works = [Work(job.id, job.task, job.settings.to_dict(),
                  None if job.content is None else (job.content, data[job.content]),
                  tuple((s, data[s]) for s in job.styles), str(paths(out, job)[0])) for job in todo]

    def finished(outcome: Outcome) -> None:
        job = by_id[outcome.id]
        if outcome.error is None:
            try:
                write_outcome(out, job, outcome)
            except GramstyleError as exc:
                outcome.error, outcome.error_type, outcome.field = str(exc), type(exc).__name__, exc.field
        summary.outcomes[job.id] = outcome
        manifest.append(manifest_entry(out, job, outcome))
        if outcome.error is None:
            summary.done.append(job.id)
        else:
            summary.failed[job.id] = outcome.error
        if on_job is not None:
            on_job(job, outcome)

    if works:
        (executor or LocalExecutor()).run(works, finished)
    if sheet and (works or not (out / SHEET).is_file()):  # a rerun with nothing to do writes nothing
        summary.sheet = write_sheet(out, todo_jobs)
    return summary
