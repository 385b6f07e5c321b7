"""The output plan: every path a run will write, checked together before the network loads.

A run writes its image, the image's run record ``OUT.json``, optionally a loss log (CSV) and intermediate
images ``OUT_stepNNNNN.EXT``, and takes the lock ``OUT.lock`` while it publishes. `plan` checks all of them at
once, before any work: each path as `files.check_writable` does (a bad name, a folder, an existing special file,
a missing or read-only folder, any error of the OS such as a name too long, a folder we may not enter or a loop
of symbolic links), and then that no two of them are the same file, through symbolic and hard links and the
intermediates' names included. An existing output that is not a regular file is refused, except a loss log on a
character device or FIFO (/dev/null, /dev/stdout), which is written through. A symbolic link is written through
to its target. The same `plan` runs again, just before the files are written, in `result.save_result`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from . import files
from .errors import ImageError, literal
from .images import output_format


@dataclass(frozen=True)
class OutputPlan:
    image: Path
    record: Path
    log: Path | None = None
    log_through: bool = False  # the log is a character device or FIFO: written into, never renamed over
    intermediates: bool = False  # --save-every: OUT_stepNNNNN.EXT beside the image

    def intermediate(self, step: int) -> Path:
        """The name of the intermediate image saved at `step`."""
        return intermediate_path(self.image, step)

    def paths(self) -> list[Path]:
        """What a finished run writes (intermediates aside), in the order they are published."""
        return [self.image, self.record, *([self.log] if self.log is not None else [])]


def record_path(image: str | os.PathLike[str]) -> Path:
    return Path(os.fspath(image) + ".json")


def intermediate_path(image: Path, step: int) -> Path:
    return image.with_name(f"{image.stem}_step{step:05d}{image.suffix}")


def _identity(path: Path) -> tuple[str, tuple[int, int] | None]:
    """The file a path names: its real path and, if it exists, its (device, inode) (hard links)."""
    real = os.path.realpath(path)
    try:
        st = os.stat(path)
    except OSError:
        return real, None
    return real, (st.st_dev, st.st_ino)


def plan(image: str | os.PathLike[str], *, log: str | os.PathLike[str] | None = None,
         save_every: int | None = None, steps: int | None = None,
         checkpoint: str | os.PathLike[str] | None = None) -> OutputPlan:
    """Check every path a run will write and return them, or raise `ImageError` naming the path and the problem.

    ``steps`` (with ``save_every``) bounds the intermediates' step numbers, whose names are checked too.
    ``checkpoint``: the run's checkpoint file (an existing one is the run's own, to be rewritten).
    """
    if not isinstance(image, (str, os.PathLike)) or not os.fspath(image):
        raise ImageError("give the output image a file name such as out.png")
    if log is not None and (not isinstance(log, (str, os.PathLike)) or not os.fspath(log)):
        raise ImageError(f"{{log}}: give a file name such as losses.csv, got {literal(repr(log))}")
    image = Path(image)
    files.check_writable(image)
    output_format(image)
    record = record_path(image)
    named = {"the output image": image, "its run record": record}
    try:
        files.check_writable(record)
    except ImageError as exc:
        raise ImageError(f"{exc.template} (the run record of {literal(image)}; use a shorter or other output "
                         "name)") from None
    files.check_name_length(files.lock_path(image), "lock file's name (the output's name + .lock)")
    log_path = Path(log) if log is not None else None
    through = False
    if log_path is not None:
        try:
            through = files.kind_of(log_path, through=True) == "device"
        except ImageError as exc:  # {log}: the front door's name for it (--log)
            raise ImageError("{log} " + exc.template) from None
        named["the loss log ({log})"] = log_path
    if checkpoint is not None:
        ckpt = Path(checkpoint)
        try:
            files.check_writable(ckpt)
        except ImageError as exc:  # {checkpoint}: the front door's name for it (--checkpoint)
            raise ImageError("{checkpoint} " + exc.template) from None
        files.check_name_length(files.lock_path(ckpt), "checkpoint lock file's name (the checkpoint's name + .lock)")
        named["the checkpoint ({checkpoint})"] = ckpt
    if save_every is not None and steps is not None and save_every <= steps:
        files.check_writable(intermediate_path(image, max(steps, 99999)))  # the longest name of them
    seen: dict[object, tuple[str, Path]] = {}
    for what, path in named.items():
        real, inode = _identity(path)
        for key in (real, inode):
            if key is None:
                continue
            if key in seen:
                other_what, other = seen[key]
                raise ImageError(f"{literal(path)}: {what} would be the same file as {other_what} "
                                 f"{literal(other)}; give another name")
            seen[key] = (what, path)
    if save_every is not None:
        folder = os.path.realpath(image.parent if str(image.parent) else ".")
        pattern = re.compile(re.escape(image.stem) + r"_step\d{5,}" + re.escape(image.suffix) + r"\Z")
        for what, path in named.items():
            resolved = Path(os.path.realpath(path))
            if what != "the output image" and str(resolved.parent) == folder and pattern.match(resolved.name):
                raise ImageError(f"{literal(path)}: {what} would be overwritten by an intermediate image "
                                 f"{literal(image.stem)}_stepNNNNN{literal(image.suffix)}; give another name")
    return OutputPlan(image=image, record=record, log=log_path, log_through=through,
                      intermediates=save_every is not None)
