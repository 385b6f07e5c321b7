"""What a run tells its front door while it works, and how a front door stops it.

One callback receives every event: the start and end of each coarse-to-fine stage and every step, with the
stage, the step of the whole run, the elapsed time, an estimate of the time left and the losses. Returning True
from the callback, or cancelling the run's `CancelToken` from any thread, stops the run between two steps; the
best image so far is kept.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from torch import Tensor

EventKind = Literal["stage_start", "step", "stage_end"]


@dataclass(frozen=True)
class Stage:
    """One coarse-to-fine stage (a run without scales has one)."""

    index: int  # 0-based
    count: int
    size: int  # the longest side of the image at this stage
    shape: tuple[int, int]  # (height, width)
    steps: int  # steps planned at this stage


@dataclass(frozen=True)
class Progress:
    """An event of a run. ``image`` is the image evaluated at this step (read it, do not modify it)."""

    step: int  # steps of the whole run done so far (1-based at a step event)
    steps: int  # steps of the whole run planned
    elapsed: float  # seconds of optimization so far
    losses: dict[str, float]  # "total", "content", "style", "tv" and per-layer values ({} before the first step)
    image: Tensor | None
    kind: EventKind = "step"
    stage: Stage | None = None
    eta: float | None = None  # estimated seconds left (None until a step has been timed)
    stage_step: int = 0  # steps done in this stage


#: Called with every event; return True to stop (cancellation between steps).
Callback = Callable[[Progress], "bool | None"]


@dataclass
class CancelToken:
    """Cancels a run from another thread (a web server's request, a signal handler): the run ends after the
    step under way, with the best image so far."""

    _event: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()
