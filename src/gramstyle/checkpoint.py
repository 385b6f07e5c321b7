"""Checkpoints: a run's whole state between two steps, written atomically, from which it continues exactly.

A checkpoint holds the descent's state (`optimize.LoopState.capture`: the next point, the optimizer's every
attribute, the best image and loss, the stage's history), the stage, the run's earlier history, torch's RNG state,
and two digests: of the settings that shape the result (all but ``steps``, ``scale_steps`` and ``time_limit``,
which only say how long to go on) and of the input images as the network sees them. Resuming with other settings
or inputs is refused with the reason. On the same device and precision the resumed run ends with the bytes of an
uninterrupted one (tests/test_checkpoint.py).

Front doors hold a `Checkpointer`: ``every`` N steps it writes at the step boundary; ``request()`` (safe in a
signal handler: it only sets a flag) writes at the next boundary; ``write()`` writes the state at the last
boundary now, which is what to call after a KeyboardInterrupt or a SIGTERM-turned-exception has unwound the run
(the evaluation in progress never changes that state).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from . import files
from .config import Settings
from .errors import GramstyleError, literal

VERSION = 1
#: Settings that say how long a run goes on, not what it computes: a checkpoint continues under new values.
DURATION = ("steps", "scale_steps", "time_limit")


class CheckpointError(GramstyleError):
    """A checkpoint that cannot be read or does not belong to this run."""


def settings_identity(settings: Settings) -> dict[str, Any]:
    return {k: v for k, v in settings.to_dict().items() if k not in DURATION}


def digest_settings(settings: Settings) -> str:
    return hashlib.sha256(json.dumps(settings_identity(settings), sort_keys=True).encode()).hexdigest()


def digest_inputs(tensors: Sequence[Tensor | None]) -> str:
    """sha256 of the images as the network sees them (after loading, resizing and colour handling)."""
    h = hashlib.sha256()
    for t in tensors:
        if t is None:
            h.update(b"none")
            continue
        data = t.detach().to("cpu", torch.float32).contiguous()
        h.update(repr(tuple(data.shape)).encode())
        h.update(data.numpy().tobytes())
    return h.hexdigest()


def load(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        data: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{literal(path)}: no such checkpoint") from None
    except Exception as exc:  # a truncated or foreign file: torch raises many kinds
        raise CheckpointError(f"{literal(path)}: not a gramstyle checkpoint ({literal(type(exc).__name__)})") from None
    if not isinstance(data, dict) or data.get("format") != "gramstyle-checkpoint":
        raise CheckpointError(f"{literal(path)}: not a gramstyle checkpoint")
    if data.get("version") != VERSION:
        raise CheckpointError(f"{literal(path)}: checkpoint version {data.get('version')}, this gramstyle reads "
                              f"{VERSION}")
    return data


def verify(data: dict[str, Any], settings: Settings, inputs_digest: str, name: str = "the checkpoint") -> None:
    """Refuse a checkpoint made with other settings or inputs, naming what differs."""
    if data["settings_digest"] != digest_settings(settings):
        mine = settings_identity(settings)
        theirs = data.get("settings", {})
        differ = [f"{{{k}}} {literal(repr(theirs.get(k)))} there, {literal(repr(mine.get(k)))} here"
                  for k in sorted(set(mine) | set(theirs)) if mine.get(k) != theirs.get(k)]
        raise CheckpointError(f"{literal(name)} was made with other settings: " + "; ".join(differ[:4]))
    if data["inputs_digest"] != inputs_digest:
        raise CheckpointError(f"{literal(name)} was made from other input images (or another size of them)")


def extended(settings: Settings, data: dict[str, Any], more_steps: int) -> Settings:
    """`settings` with the checkpoint's last stage going on for `more_steps` more steps (``--more-steps``)."""
    if more_steps < 1:
        raise CheckpointError(f"more steps must be a positive number, got {more_steps}")
    counts = [int(n) for n in data["steps"]]
    counts[-1] += more_steps
    if len(counts) == 1:
        return settings.replace(steps=counts[0]).validated()
    return settings.replace(scale_steps=",".join(map(str, counts))).validated()


class Checkpointer:
    """Writes a run's checkpoints to ``path``: every ``every`` steps (None: only on request and at the end)."""

    def __init__(self, path: str | os.PathLike[str], every: int | None = None) -> None:
        if every is not None and every < 1:
            raise CheckpointError(f"checkpoints every {every} steps: give a positive number")
        self.path, self.every = Path(path), every
        self._provider: Callable[[], dict[str, Any] | None] | None = None
        self._requested = False
        self.written = 0  # checkpoints written so far

    def bind(self, provider: Callable[[], dict[str, Any] | None]) -> None:
        """The run's function that returns its state (None: nothing consistent yet); the session binds it."""
        self._provider = provider

    def request(self) -> None:
        """Write at the next step boundary (signal-handler safe: sets a flag)."""
        self._requested = True

    def boundary(self, step: int) -> None:
        """Called by the run between steps, with the run's step count."""
        if self._requested or (self.every is not None and step % self.every == 0):
            self._requested = False
            self.write()

    def write(self) -> bool:
        """Write the run's state at its last step boundary now; False when there is none yet."""
        state = self._provider() if self._provider is not None else None
        if state is None:
            return False
        with files.atomic_paths([self.path]) as (temp,):
            torch.save({"format": "gramstyle-checkpoint", "version": VERSION, **state}, temp)
        self.written += 1
        return True
