"""What a run gives back (`Result`) and its run record: every output gets ``OUT.json`` beside it (settings, seed,
versions, weights, losses) and, on request, a CSV of the losses of every step, all written atomically together."""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import PIL
import torch
from PIL import Image

from . import files, outputs
from . import images as imageio
from ._version import __version__
from .config import Settings


@dataclass
class Result:
    """What a run gives back: the picture, its losses and everything needed to record the run."""

    image: Image.Image  # the 8-bit RGB output
    losses: dict[str, float]  # the objective on `image` as saved (8-bit): what the user gets
    history: list[dict[str, float]]  # the losses of every step
    settings: Settings
    task: str
    steps: int
    stop_reason: str
    elapsed: float  # seconds of optimization
    device: str
    weights: dict[str, Any]
    precision: str = "fp32"  # the network's arithmetic as resolved from settings.precision
    inputs: dict[str, Any] = field(default_factory=dict)
    tiles: list[int | None] = field(default_factory=list)  # each stage's tile side (None: untiled)
    convolutions: list[str] = field(default_factory=list)  # each stage's: "winograd" or "direct"
    history_sizes: list[int] = field(default_factory=list)  # each stage's L-BFGS pairs after the memory plan
    # whether the same command reproduces these bytes: CPU with torch's deterministic algorithms on
    deterministic: bool | None = None

    def save(self, path: str, log: str | None = None, extra: dict[str, Any] | None = None,
             written: list[Path] | None = None) -> None:
        """Write the image, its run record ``path + '.json'`` and optionally the per-step CSV, atomically
        (`save_result`); ``written`` collects the paths as they are replaced."""
        save_result(self, path, log, extra, written)





def versions() -> dict[str, str]:
    return {"gramstyle": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "pillow": PIL.__version__, "numpy": np.__version__}


def record(result: Result, output: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    width, height = result.image.size
    data: dict[str, Any] = {
        "task": result.task,
        "output": output,
        "size": [width, height],
        "inputs": result.inputs,
        "settings": result.settings.to_dict(),
        "seed": result.settings.seed,
        "device": result.device,
        "precision": result.precision,
        "weights": result.weights,
        "versions": versions(),
        "steps": result.steps,
        "stop_reason": result.stop_reason,
        "elapsed_seconds": round(result.elapsed, 3),
        "tiles": result.tiles,
        "convolutions": result.convolutions,
        "history_sizes": result.history_sizes,
        "deterministic": result.deterministic,
        "final_losses": result.losses,
        "final_losses_note": "the objective evaluated in float32 on the saved 8-bit image",
        "best_step_loss": min((h["total"] for h in result.history), default=None),
        "finished_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if extra:
        data.update(extra)
    return data


def history_csv(history: list[dict[str, float]]) -> str:
    columns: list[str] = []
    for row in history:
        columns += [key for key in row if key not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    return buffer.getvalue()


def save_result(result: Result, path: str, log: str | None = None, extra: dict[str, Any] | None = None,
                written: list[Path] | None = None) -> None:
    """The image, its record and optionally the CSV, all or none, checked first by `outputs.plan`.

    Each is written in full before any replaces its target, under the output's lock, so an image never stands
    beside another run's record; the record carries the image's sha256 (``image_sha256``). A log on a character
    device or FIFO (/dev/null, /dev/stdout) is written into after the others. ``written`` collects the paths as
    they are replaced (what an interrupt or a failure left).
    """
    planned = outputs.plan(path, log=log)
    targets = [planned.image, planned.record, *([planned.log] if planned.log and not planned.log_through else [])]
    with files.atomic_paths(targets, on_replaced=written.append if written is not None else None) as temps:
        imageio.encode_image(result.image, temps[0], path)
        data = {**record(result, str(path), extra), "image_sha256": files.sha256_of(temps[0])}
        temps[1].write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        if len(temps) > 2:
            temps[2].write_text(history_csv(result.history), encoding="utf-8")
    if planned.log is not None and planned.log_through:
        files.write_through(history_csv(result.history), planned.log)
        if written is not None:
            written.append(planned.log)
