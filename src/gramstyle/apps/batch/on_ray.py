"""The batch on Ray: the same jobs and `execute` as the local executor, run by actors that keep one Session each.

- ``address=None`` starts a local Ray for the run (``ray.init(address="local")``); an address connects to a
  cluster. Usage statistics are switched off before Ray is imported.
- One actor per ``cpus_per_job`` CPUs (and ``gpus_per_job`` GPUs, fractional: several jobs share a card) the
  cluster has, at most one per job; each sets torch's threads from the CPUs Ray assigned it.
- Every distinct input file goes into the object store once, as its encoded bytes; results come back as PNG
  bytes and a record, written by the driver, so no shared filesystem is needed.
- A crashed actor is restarted and its job retried by Ray (``max_restarts``, ``max_task_retries``); a
  `GramstyleError` is a returned failure, never retried. Progress is by completion (``ray.wait``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ...errors import SettingsError
from .runner import OnOutcome, Outcome, Work, execute


def _import_ray() -> Any:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError:
        raise SettingsError("--ray needs Ray: pip install 'gramstyle[ray]'") from None
    return ray


class _Worker:
    """The actor: one Session for its lifetime."""

    def __init__(self) -> None:
        import ray
        import torch

        from ...devices import keep_freed_memory
        from ...session import Session

        cpus = ray.get_runtime_context().get_assigned_resources().get(  # type: ignore[no-untyped-call]
            "CPU", 1.0)
        self.threads = max(1, int(cpus))
        torch.set_num_threads(self.threads)
        keep_freed_memory()  # a worker process of its own, as the command line's
        self.session = Session()
        self.node = ray.get_runtime_context().get_node_id()

    def pid(self) -> int:
        return os.getpid()

    def run(self, work: Work, content: bytes | None, *styles: bytes | None) -> Outcome:
        work = replace(work, content=None if work.content is None else (work.content[0], content),
                       styles=tuple((name, data) for (name, _), data in zip(work.styles, styles, strict=True)))
        outcome = execute(self.session, work)
        outcome.node = self.node
        return outcome


@dataclass
class RayExecutor:
    """Runs a batch's works on Ray (see the module's docstring)."""

    address: str | None = None  # None: a local Ray for this run
    cpus_per_job: float = 1.0
    gpus_per_job: float = 0.0
    num_cpus: int | None = None  # a local Ray's CPUs (default: all of this machine's)
    max_restarts: int = 3
    actors: list[Any] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)  # the actors' processes, once started

    def __post_init__(self) -> None:
        if not self.cpus_per_job > 0:
            raise SettingsError(f"--cpus-per-job must be > 0, got {self.cpus_per_job}")
        if not self.gpus_per_job >= 0:
            raise SettingsError(f"--gpus-per-job must be >= 0, got {self.gpus_per_job}")

    def run(self, works: Sequence[Work], on_outcome: OnOutcome) -> None:
        ray = _import_ray()
        started = False
        if not ray.is_initialized():
            if self.address is None:
                ray.init(address="local", num_cpus=self.num_cpus, include_dashboard=False, log_to_driver=False,
                         logging_level=logging.WARNING)
            else:
                ray.init(address=self.address, log_to_driver=False, logging_level=logging.WARNING)
            started = True
        try:
            self._run(ray, works, on_outcome)
        finally:
            self.actors = []
            if started:
                ray.shutdown()

    def _run(self, ray: Any, works: Sequence[Work], on_outcome: OnOutcome) -> None:
        resources = ray.cluster_resources()
        slots = int(resources.get("CPU", 1) // self.cpus_per_job)
        if self.gpus_per_job > 0:
            slots = min(slots, int(resources.get("GPU", 0) // self.gpus_per_job))
        if slots < 1:
            raise SettingsError(f"the Ray cluster has {resources.get('CPU', 0):g} CPUs and "
                                f"{resources.get('GPU', 0):g} GPUs: not enough for one job with --cpus-per-job "
                                f"{self.cpus_per_job:g} --gpus-per-job {self.gpus_per_job:g}")
        remote = ray.remote(max_restarts=self.max_restarts, max_task_retries=self.max_restarts)(_Worker)
        self.actors = [remote.options(num_cpus=self.cpus_per_job, num_gpus=self.gpus_per_job).remote()
                       for _ in range(min(slots, len(works)))]
        self.pids = ray.get([a.pid.remote() for a in self.actors])
        refs: dict[str, Any] = {}  # one object per distinct input file

        def stored(name: str, data: bytes | None) -> Any:
            if name not in refs:
                refs[name] = ray.put(data)
            return refs[name]

        queue = list(works)
        in_flight: dict[Any, tuple[Any, Work]] = {}

        def submit(actor: Any) -> None:
            work = queue.pop(0)
            light = replace(work, content=None if work.content is None else (work.content[0], None),
                            styles=tuple((n, None) for n, _ in work.styles))
            ref = actor.run.remote(light, None if work.content is None else stored(*work.content),
                                   *(stored(n, d) for n, d in work.styles))
            in_flight[ref] = (actor, work)

        for actor in self.actors:
            if queue:
                submit(actor)
        while in_flight:
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            for ref in ready:
                actor, work = in_flight.pop(ref)
                try:
                    outcome = ray.get(ref)
                except ray.exceptions.RayError as exc:  # retries spent: the actor died every time
                    outcome = Outcome(work.id, error=f"the Ray worker failed: {str(exc).splitlines()[0]}",
                                      error_type=type(exc).__name__)
                on_outcome(outcome)
                if queue:
                    submit(actor)
