"""A batch's jobs: the product of contents x styles x every axis's values (or contents zipped with styles), each
with a stable id, the hash of its inputs' bytes and its resolved settings, so that a rerun knows what is done."""

from __future__ import annotations

import glob
import hashlib
import itertools
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ... import config
from ...config import Settings
from ...errors import SettingsError, literal

#: Files a folder contributes (by extension, lower case).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif")
#: A pseudo-setting an axis may sweep: alpha/beta, applied as beta = alpha / ratio (the paper's Fig. 3 columns).
RATIO = "ratio"
TASK = "transfer"


@dataclass(frozen=True)
class Job:
    """One run of a batch: a content photo, its style image(s), its resolved settings and where it came from.

    ``task`` is the session's task (``transfer``, ``content`` or ``texture``): a content reconstruction has no
    styles, a texture no content (None). ``name``, when given, is kept as the file stem (else one is made from the
    inputs and axes)."""

    content: str | None
    styles: tuple[str, ...]
    settings: Settings
    axes: tuple[tuple[str, str], ...] = ()  # (axis name, value as the user wrote it), for names and the sheet
    id: str = ""  # filled by `with_id`
    name: str = ""  # readable file stem, without the id
    task: str = TASK

    @property
    def inputs(self) -> tuple[str, ...]:
        """The input files, content first."""
        return (*(() if self.content is None else (self.content,)), *self.styles)

    @property
    def stem(self) -> str:
        return f"{self.name}-{self.id[:12]}"


@dataclass(frozen=True)
class Axis:
    name: str
    values: tuple[Any, ...]  # parsed values
    texts: tuple[str, ...]  # as written


def parse_axis(text: str) -> Axis:
    """``NAME=V1,V2,...`` (values split on ';' instead when the text has one, for values with commas such as layer
    lists: ``style_layers=conv1_1;conv1_1,conv2_1``); each value parsed by `config.parse_field`."""
    name, sep, values = text.partition("=")
    name = name.strip().replace("-", "_")
    if not sep or not name or not values.strip():
        raise SettingsError(f"an axis is NAME=V1,V2,... such as ratio=1e-4,1e-3, got {literal(repr(text))}")
    texts = tuple(v.strip() for v in values.split(";" if ";" in values else ",") if v.strip())
    if name == RATIO:
        parsed: list[Any] = []
        for t in texts:
            try:
                value = float(t)
            except ValueError:
                raise SettingsError(f"axis ratio: expected a number, got {literal(repr(t))}") from None
            if not (value > 0 and value != float("inf")):
                raise SettingsError(f"axis ratio: must be a finite number > 0, got {literal(t)}")
            parsed.append(value)
        return Axis(name, tuple(parsed), texts)
    return Axis(name, tuple(config.parse_field(name, t) for t in texts), texts)


def expand_inputs(items: Iterable[str], what: str) -> list[str]:
    """Files, folders (their image files, sorted) and globs, in the order given; a glob or folder with no image
    is refused now, a missing file fails its own jobs later."""
    out: list[str] = []
    for item in items:
        if any(ch in item for ch in "*?["):
            matches = sorted(p for p in glob.glob(item) if Path(p).is_file())
            if not matches:
                raise SettingsError(f"{what} {literal(item)}: no file matches")
            out += matches
        elif Path(item).is_dir():
            found = sorted(str(p) for p in Path(item).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise SettingsError(f"{what} {literal(item)}: folder has no image files")
            out += found
        else:
            out.append(item)
    return out


def expand(contents: Sequence[str], styles: Sequence[str], settings: Settings, axes: Sequence[Axis] = (),
           *, pair: bool = False) -> list[Job]:
    """The jobs (without ids) of contents x styles (or zipped with `pair`) x every axis's values, validated."""
    if not contents:
        raise SettingsError("give at least one content image")
    if not styles:
        raise SettingsError("give at least one style image")
    if pair and len(contents) != len(styles):
        raise SettingsError(f"--pair needs as many contents as styles, got {len(contents)} and {len(styles)}")
    images = list(zip(contents, styles, strict=True)) if pair else list(itertools.product(contents, styles))
    names = [a.name for a in axes]
    if len(set(names)) != len(names):
        raise SettingsError("each axis may be given once")
    jobs = []
    for content, style in images:
        for combo in itertools.product(*[list(zip(a.values, a.texts, strict=True)) for a in axes]):
            changes = {a.name: value for a, (value, _) in zip(axes, combo, strict=True) if a.name != RATIO}
            s = settings.replace(**changes)
            for a, (value, _) in zip(axes, combo, strict=True):
                if a.name == RATIO:
                    s = s.replace(beta=s.alpha / value)
            jobs.append(Job(content, (style,), s.validated(),
                            tuple((a.name, text) for a, (_, text) in zip(axes, combo, strict=True))))
    return jobs


def read_bytes(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except (OSError, ValueError):
        return None


def job_id(job: Job, data: Mapping[str, bytes | None]) -> str:
    """sha256 of the task, every input's bytes (its path where it cannot be read) and the resolved settings."""
    h = hashlib.sha256()
    h.update(job.task.encode())
    for path in job.inputs:
        blob = data.get(path)
        h.update(b"\0file\0" + (hashlib.sha256(blob).digest() if blob is not None else b"path:" + path.encode()))
    h.update(json.dumps(job.settings.to_dict(), sort_keys=True).encode())
    return h.hexdigest()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=+_-]+", "_", text).strip("_")[:40] or "x"


def readable_name(job: Job) -> str:
    parts = [*(Path(p).stem for p in job.inputs), *(f"{n}{v}" for n, v in job.axes)]
    return "-".join(_slug(p) for p in parts)


def with_ids(jobs: Sequence[Job], data: Mapping[str, bytes | None]) -> list[Job]:
    out = []
    for job in jobs:
        out.append(Job(job.content, job.styles, job.settings, job.axes, job_id(job, data),
                       job.name or readable_name(job), job.task))
    return out


def load_inputs(jobs: Sequence[Job]) -> dict[str, bytes | None]:
    """Every distinct input file's bytes, read once (None: unreadable)."""
    data: dict[str, bytes | None] = {}
    for job in jobs:
        for path in job.inputs:
            if path not in data:
                data[path] = read_bytes(os.fspath(path))
    return data
