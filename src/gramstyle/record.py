"""The run record: every output gets ``OUT.json`` beside it (settings, seed, versions, weights, losses) and,
on request, a CSV of the losses of every step. Written atomically, after the image."""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import platform
from typing import TYPE_CHECKING, Any

import numpy as np
import PIL
import torch

from . import image as imageio
from ._version import __version__

if TYPE_CHECKING:  # only for annotations: the record is written for results, it does not make them
    from .stylize import Result


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


def save_result(result: Result, path: str, log: str | None = None, extra: dict[str, Any] | None = None) -> None:
    """The image, its record and optionally the CSV, all or none: each is written in full before any replaces
    its target, so an image never stands without its record."""
    imageio.check_writable(path)
    targets = [path, str(path) + ".json", *([log] if log is not None else [])]
    with imageio.atomic_paths(targets) as temps:
        imageio.encode_image(result.image, temps[0], path)
        temps[1].write_text(json.dumps(record(result, str(path), extra), indent=2) + "\n", encoding="utf-8")
        if log is not None:
            temps[2].write_text(history_csv(result.history), encoding="utf-8")
