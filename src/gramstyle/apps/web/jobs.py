"""The studio's jobs: a bounded queue, one worker thread per device, and the work folder that keeps them.

Each worker keeps one `Session` for its lifetime (the network is built once) and runs one job at a time. A job's
folder ``WORKDIR/jobs/ID/`` holds its inputs under generated names, ``job.json`` (its state, written atomically at
every change of state) and, when it produced an image, ``result.png`` with its run record ``result.png.json``
(written together by `Result.save`). The history is read back from these folders when a server starts.

The worker keeps only the latest preview tensor of a running job; a JPEG is encoded from it when a client asks,
in the client's request thread, so a run nobody watches pays nothing for previews.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import queue
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as _field
from pathlib import Path
from typing import Any

import torch

from ... import files
from ... import images as imageio
from ...config import Settings
from ...errors import Cancelled, GramstyleError
from ...events import CancelToken, Progress
from ...session import Session
from .form import label

STATES = ("queued", "running", "done", "failed", "cancelled")
FINISHED = ("done", "failed", "cancelled")
RESULT = "result.png"
RECORD = RESULT + ".json"
_STOP = "__stop__"
_log = logging.getLogger("gramstyle.web")
#: Points of the loss plot kept per job (older points are thinned out).
_PLOT_POINTS = 400


class QueueFull(Exception):
    """No room in the queue; the client should retry after `retry_after` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("the queue is full")
        self.retry_after = retry_after


def new_id() -> str:
    """A job id: time-ordered (history sorts by it) and unguessable."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(4)


def valid_id(job_id: str) -> bool:
    return len(job_id) <= 40 and all(c.isalnum() or c == "-" for c in job_id) and bool(job_id)


@dataclass
class Job:
    id: str
    folder: Path
    settings: dict[str, Any]  # Settings.to_dict() of the validated settings
    inputs: dict[str, Any]  # {"content": client's name, "styles": [...], "continue_from": id}; for display only
    content: str  # generated file names inside `folder`
    styles: list[str]
    created: float = _field(default_factory=time.time)
    state: str = "queued"
    started: float | None = None
    finished: float | None = None
    step: int = 0
    steps: int = 0
    stage: dict[str, Any] | None = None
    losses: dict[str, float] = _field(default_factory=dict)
    eta: float | None = None
    elapsed: float = 0.0
    error: str | None = None
    field: str | None = None
    stop_reason: str | None = None
    plot: list[list[float]] = _field(default_factory=list)  # [elapsed, total loss]
    # live only, never saved:
    cancel: CancelToken = _field(default_factory=CancelToken)
    deleted: bool = False
    version: int = 0
    preview: torch.Tensor | None = None
    preview_step: int = -1
    _jpeg: tuple[int, bytes] | None = None

    @property
    def has_result(self) -> bool:
        return (self.folder / RESULT).is_file()

    def public(self, plot: bool = True) -> dict[str, Any]:
        """The job as the API shows it."""
        data: dict[str, Any] = {
            "id": self.id, "state": self.state, "created": self.created, "started": self.started,
            "finished": self.finished, "step": self.step, "steps": self.steps, "stage": self.stage,
            "losses": self.losses, "eta": self.eta, "elapsed": self.elapsed, "error": self.error,
            "field": self.field, "stop_reason": self.stop_reason, "settings": self.settings, "inputs": self.inputs,
            "has_result": self.has_result, "preview_step": self.preview_step,
        }
        if plot:
            data["plot"] = self.plot
        return data

    def saved(self) -> dict[str, Any]:
        data = self.public()
        data.update(content=self.content, styles=self.styles)
        data.pop("has_result")
        data.pop("preview_step")
        return data

    def save(self) -> None:
        files.write_text(json.dumps(self.saved(), indent=1) + "\n", self.folder / "job.json")

    @classmethod
    def load(cls, folder: Path) -> Job:
        data = json.loads((folder / "job.json").read_text(encoding="utf-8"))
        job = cls(id=folder.name, folder=folder, settings=dict(data["settings"]), inputs=dict(data["inputs"]),
                  content=str(data["content"]), styles=[str(s) for s in data["styles"]])
        for name in ("created", "started", "finished", "step", "steps", "stage", "losses", "eta", "elapsed",
                     "error", "field", "stop_reason", "plot", "state"):
            if name in data:
                setattr(job, name, data[name])
        if job.state not in FINISHED:  # the server stopped while it waited or ran
            job.state, job.error = "failed", "the server stopped before this job finished"
            job.eta = None
        return job


class JobManager:
    """The jobs of one work folder; `submit` queues, `cancel` and `delete` act at once, workers run."""

    def __init__(self, workdir: str | Path, queue_size: int = 4, devices: tuple[str, ...] = ("auto",),
                 session_factory: Callable[[], Session] = Session) -> None:
        self.folder = Path(workdir) / "jobs"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.queue_size = queue_size
        self._queue: queue.Queue[str] = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()
        self.jobs: dict[str, Job] = {}
        self._load()
        self._devices = devices
        self._session_factory = session_factory
        self._workers = [threading.Thread(target=self._work, args=(device,), name=f"gramstyle-web-{device}",
                                          daemon=True) for device in devices]
        self._closing = False
        for worker in self._workers:
            worker.start()

    # --- the history -----------------------------------------------------------------------------------------

    def _load(self) -> None:
        for folder in sorted(self.folder.iterdir()):
            if not (folder / "job.json").is_file() or not valid_id(folder.name):
                continue
            try:
                job = Job.load(folder)
            except (OSError, ValueError, KeyError, TypeError):
                continue  # a folder we cannot read is not part of the history
            self.jobs[job.id] = job
            if job.error == "the server stopped before this job finished":
                with contextlib.suppress(GramstyleError):
                    job.save()

    def list(self) -> list[Job]:
        with self._lock:
            return sorted(self.jobs.values(), key=lambda j: j.created)

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self.jobs.get(job_id)

    # --- client actions ------------------------------------------------------------------------------------

    def new_folder(self) -> tuple[str, Path]:
        job_id = new_id()
        folder = self.folder / job_id
        folder.mkdir()
        return job_id, folder

    def submit(self, job: Job) -> None:
        """Queue `job` (its folder already holds its inputs), or QueueFull (the folder is removed)."""
        with self._lock:
            if self._queue.full():
                shutil.rmtree(job.folder, ignore_errors=True)
                raise QueueFull(self.retry_after())
            job.save()  # before the worker can see it, so that its own saves come later
            self.jobs[job.id] = job
            self._queue.put_nowait(job.id)  # only submit puts jobs, under the lock: there is room

    def retry_after(self) -> int:
        """Seconds until a place in the queue is likely free: the running job's estimate, at least 1."""
        etas = [j.eta for j in self.jobs.values() if j.state == "running" and j.eta is not None]
        return max(1, int(min(etas, default=5.0) + 1))

    def cancel(self, job: Job) -> None:
        job.cancel.cancel()
        with self._lock:
            if job.state == "queued":  # the worker skips it when it comes out of the queue
                self._finish(job, "cancelled")

    def delete(self, job: Job) -> None:
        """Forget a job and remove its folder; a running one is cancelled and removed when its worker stops."""
        job.cancel.cancel()
        with self._lock:
            job.deleted = True
            self.jobs.pop(job.id, None)
            running = job.state == "running"
            if job.state == "queued":
                job.state = "cancelled"
            job.version += 1
        if not running:
            shutil.rmtree(job.folder, ignore_errors=True)

    def close(self, timeout: float = 30.0) -> None:
        """Cancel the running jobs and stop the workers (queued jobs stay queued and fail at the next start)."""
        self._closing = True
        for job in self.list():
            if job.state == "running":
                job.cancel.cancel()
        for _ in self._workers:
            with contextlib.suppress(queue.Full):
                self._queue.put(_STOP, timeout=timeout)
        for worker in self._workers:
            worker.join(timeout)

    # --- previews --------------------------------------------------------------------------------------------

    def preview_jpeg(self, job: Job) -> bytes | None:
        """The latest image of a running job as JPEG (encoded once per step), the result for a finished one."""
        image, step = job.preview, job.preview_step
        if image is not None:
            cached = job._jpeg
            if cached is not None and cached[0] == step:
                return cached[1]
            data = _jpeg(imageio.to_pil(image))
            job._jpeg = (step, data)
            return data
        if job.has_result:
            return _jpeg(imageio.open_image(job.folder / RESULT))
        return None

    # --- the worker ------------------------------------------------------------------------------------------

    def _work(self, device: str) -> None:
        session: Session | None = None
        while True:
            job_id = self._queue.get()
            if job_id == _STOP:
                return
            with self._lock:
                job = self.jobs.get(job_id)
                if job is None or job.state != "queued" or self._closing:
                    continue
                job.state, job.started = "running", time.time()
                job.version += 1
            try:
                job.save()
                if session is None:
                    session = self._session_factory()
                self._run(session, job, device)
            except Exception as exc:
                self._failed(job, exc)

    def _run(self, session: Session, job: Job, device: str) -> None:
        settings = Settings.from_dict(job.settings)
        if settings.device == "auto" and device != "auto":
            settings = settings.replace(device=device)

        def callback(event: Progress) -> bool:
            if event.kind == "step":
                if event.image is not None:
                    # a reference, not a copy: the optimizer makes a new tensor at every step, and an unwatched
                    # run pays nothing more for its previews
                    job.preview = event.image.detach()
                    job.preview_step = event.step
                # the step count from step events only: a stage's end event counts its steps twice (session._Clock)
                job.step, job.eta, job.elapsed = event.step, event.eta, event.elapsed
            job.steps = event.steps
            if event.stage is not None:
                job.stage = {"index": event.stage.index, "count": event.stage.count, "size": event.stage.size}
            if event.losses:
                job.losses = {k: v for k, v in event.losses.items() if k in ("total", "content", "style", "tv")}
                if event.kind == "step":
                    job.plot.append([round(event.elapsed, 3), event.losses.get("total", 0.0)])
                    if len(job.plot) > _PLOT_POINTS:
                        job.plot = job.plot[::2]
            job.version += 1
            return job.cancel.cancelled

        try:
            result = session.run("transfer", settings, content=job.folder / job.content,
                                 styles=[job.folder / s for s in job.styles], callback=callback, cancel=job.cancel)
        except Cancelled:
            self._end(job, "cancelled")
            return
        if job.deleted:
            self._end(job, "cancelled")
            return
        result.save(str(job.folder / RESULT), extra={"inputs": job.inputs, "job": job.id})
        job.losses = dict(result.losses)
        job.stop_reason = result.stop_reason
        job.step, job.elapsed, job.eta = result.steps, result.elapsed, 0.0
        self._end(job, "cancelled" if result.stop_reason == "cancelled" else "done")

    def _failed(self, job: Job, exc: Exception) -> None:
        if isinstance(exc, GramstyleError):
            job.error, job.field = exc.render(label), exc.field
            # messages name the job's files by the client's names, never by the server's paths
            shown = [(job.content, str(job.inputs.get("content", "content")))]
            shown += zip(job.styles, [str(s) for s in job.inputs.get("styles", [])], strict=False)
            for name, client_name in shown:
                job.error = job.error.replace(str(job.folder / name), client_name)
        elif isinstance(exc, MemoryError):
            job.error = "out of memory; try a smaller size"
        else:
            job.error = f"internal error ({type(exc).__name__}); the server's log has the details"
            _log.exception("job %s failed", job.id)  # the traceback goes to the server's log, never to a client
        self._end(job, "failed")

    def _end(self, job: Job, state: str) -> None:
        with self._lock:
            self._finish(job, state)
        if job.deleted:
            shutil.rmtree(job.folder, ignore_errors=True)

    def _finish(self, job: Job, state: str) -> None:
        job.state, job.finished = state, time.time()
        if state != "done":
            job.eta = None
        job.preview = None  # the result (if any) is the preview from now on
        job.version += 1
        if not job.deleted:
            with contextlib.suppress(GramstyleError, OSError):
                job.save()


def _jpeg(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()

