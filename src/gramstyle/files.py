"""Files written safely: every output is written whole to a temporary file beside its target and renamed over it.

Every problem becomes an `ImageError` whose one-line message starts with the file's name.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from .errors import ImageError, literal


def check_writable(path: str | os.PathLike[str]) -> Path:
    """Fail before any work if `path` cannot be written: a folder, a missing or read-only folder."""
    path = Path(path)
    if path.is_dir():
        raise ImageError(f"{literal(path)}: is a folder; give a file name such as {literal(path / 'out.png')}")
    folder = _folder(path)
    if not folder.exists():
        raise ImageError(f"{path}: folder {folder} does not exist")
    if not folder.is_dir():
        raise ImageError(f"{path}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ImageError(f"{path}: folder {folder} is not writable")
    return path


def _folder(path: Path) -> Path:
    return path.parent if str(path.parent) else Path(".")


def _new_file_mode(path: Path) -> int:
    """The permissions a plain `open(path, "w")` would give: the existing file's, else 0o666 less the umask."""
    with contextlib.suppress(OSError):
        return stat.S_IMODE(path.stat().st_mode)
    umask = 0o022
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("Umask:"):
                umask = int(line.split()[1], 8)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_paths(paths: Sequence[str | os.PathLike[str]]) -> Iterator[list[Path]]:
    """Yield one temporary path per target, each in its target's folder; when the block succeeds, rename them
    all over their targets, else delete them.

    A reader never sees a half-written file, and existing files survive any failure while writing: all files
    are complete on disk before the first rename, so an image is never replaced without its run record. An
    OSError becomes an ImageError naming the target; any other exception passes through; temporary files go.
    """
    targets = [Path(p) for p in paths]
    temps: list[Path] = []
    try:
        for path in targets:
            folder = _folder(path)
            try:
                fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=folder)
            except OSError as exc:
                raise ImageError(f"{path}: cannot write in {folder} ({exc.strerror or exc})") from None
            os.close(fd)
            temps.append(Path(tmp))
        current = targets[0]
        try:
            yield temps
            for current, tmp_path in zip(targets, temps, strict=True):
                os.chmod(tmp_path, _new_file_mode(current))  # mkstemp creates 0600; an output is an ordinary file
                with open(tmp_path, "r+b") as written:
                    os.fsync(written.fileno())  # the data is on disk before the rename makes it the file
            for current, tmp_path in zip(targets, temps, strict=True):
                os.replace(tmp_path, current)
        except OSError as exc:
            raise ImageError(f"{current}: cannot write ({exc.strerror or exc})") from None
    finally:
        for tmp_path in temps:
            with contextlib.suppress(OSError):
                tmp_path.unlink()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """`atomic_paths` for a single file."""
    with atomic_paths([path]) as (tmp,):
        yield tmp




def write_text(text: str, path: str | os.PathLike[str]) -> Path:
    """Write a text file atomically (run records, loss logs)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
