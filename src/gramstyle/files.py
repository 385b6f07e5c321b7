"""Files written safely: every output is written whole to a temporary file beside its target and renamed over it.

Writers of one target are serialised by a lock file beside it (``TARGET.lock``, `fcntl.flock`, removed again
by its holder); temporary files are removed on any exception (KeyboardInterrupt and SystemExit included), and
those a killed process left behind are removed by the next writer of the same target, under the lock. Ctrl-C
and SIGTERM arriving while the renames run are held until the last rename is done, so a group of files is
published whole or not at all. Every problem becomes an `ImageError` whose one-line message starts with the
file's name.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import signal
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, Literal

from .errors import ImageError, literal

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks; writes stay atomic, not serialised
    fcntl = None  # type: ignore[assignment]

#: Where a checked path is to be written: renamed over ("file") or written through ("device": a character
#: device or a FIFO, such as /dev/null or /dev/stdout, which must never be replaced by a regular file).
Kind = Literal["file", "device"]
_NAME_MAX = 255
_INTERRUPTS = tuple(s for s in (getattr(signal, "SIGINT", None), getattr(signal, "SIGTERM", None)) if s is not None)


def reason(exc: BaseException) -> str:
    """The OS's one-line reason for an OSError (or the exception's first line), ready for a message."""
    lines = str(exc).strip().splitlines()
    text = getattr(exc, "strerror", None) or (lines[0] if lines else "")
    return literal(text or type(exc).__name__)


def check_writable(path: str | os.PathLike[str], *, through: bool = False) -> Path:
    """Fail before any work if `path` cannot be written: a bad name, a folder, an existing file that is not a
    regular file (unless `through` allows a character device or FIFO), a missing or read-only folder, or any
    error of the OS in looking (a name too long, a folder we may not enter, a loop of symbolic links)."""
    kind_of(path, through=through)
    return Path(path)


def kind_of(path: str | os.PathLike[str], *, through: bool = False) -> Kind:
    """`check_writable`, returning how the file is to be written."""
    name = literal(path)
    text = os.fspath(path)
    if "\x00" in text:
        raise ImageError(f"{name}: not a usable file name (it contains a NUL byte)")
    p = Path(text)
    try:
        st: os.stat_result | None = os.stat(p)
    except FileNotFoundError:
        st = None
    except NotADirectoryError:
        raise ImageError(f"{name}: {literal(_folder(p))} is not a folder") from None
    except OSError as exc:
        raise ImageError(f"{name}: cannot be written ({reason(exc)})") from None
    kind: Kind = "file"
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise ImageError(f"{name}: is a folder; give a file name such as {literal(p / 'out.png')}")
        if not stat.S_ISREG(st.st_mode):
            if through and (stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode)):
                return "device"  # written through: the folder's permissions do not matter
            raise ImageError(f"{name}: exists and is not a regular file ({_file_type(st.st_mode)}); "
                             "refusing to replace it")
    target = Path(os.path.realpath(p))  # a symbolic link is written through to its target
    folder = target.parent
    shown = literal(_folder(p) if target == p.absolute() else folder)
    try:
        fst = os.stat(folder)
    except FileNotFoundError:
        raise ImageError(f"{name}: folder {shown} does not exist") from None
    except NotADirectoryError:
        raise ImageError(f"{name}: {shown} is not a folder") from None
    except OSError as exc:
        raise ImageError(f"{name}: cannot be written ({reason(exc)})") from None
    if not stat.S_ISDIR(fst.st_mode):
        raise ImageError(f"{name}: {shown} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ImageError(f"{name}: folder {shown} is not writable")
    check_name_length(p)
    return kind


def check_name_length(path: Path, what: str = "name") -> None:
    """Refuse a file name (through links) longer than its folder's file system allows."""
    target = Path(os.path.realpath(path))
    limit = name_max(target.parent)
    size = len(os.fsencode(target.name))
    if size > limit:
        raise ImageError(f"{literal(path)}: the {what} is too long ({size} bytes; this file system allows {limit})")


def name_max(folder: Path) -> int:
    """The longest file name (in bytes) the folder's file system allows."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    return _NAME_MAX


def _file_type(mode: int) -> str:
    for test, what in ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return what
    return "a special file"


def _folder(path: Path) -> Path:
    return path.parent if str(path.parent) else Path(".")


def _new_file_mode(path: Path) -> int:
    """The permissions a plain `open(path, "w")` would give: the existing file's, else 0o666 less the umask."""
    with contextlib.suppress(OSError):
        return stat.S_IMODE(path.stat().st_mode)
    umask = 0o022
    with contextlib.suppress(OSError, ValueError, LookupError), open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("Umask:"):
                umask = int(line.split()[1], 8)
    return 0o666 & ~umask


def temp_prefix(target: Path) -> str:
    """The start of every temporary file's name for `target`: ``.NAME.`` (a long name shortened, with a hash
    of the whole, so that the temporary name fits where the target's does)."""
    name = target.name
    if len(os.fsencode(name)) > 150:
        digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:12]
        name = os.fsdecode(os.fsencode(name)[:120]).rstrip("\ufffd") + "~" + digest
    return f".{name}."


def lock_path(target: Path) -> Path:
    """The lock file that serialises the writers of `target`: ``TARGET.lock`` beside it (through links)."""
    real = Path(os.path.realpath(target))
    return real.with_name(real.name + ".lock")


@contextlib.contextmanager
def locked(target: str | os.PathLike[str]) -> Iterator[None]:
    """Hold the lock of `target` (blocking) for the block: one writer of a target at a time, across threads and
    processes. The holder removes the lock file when done; a waiter that then gets the lock of the removed
    file notices (its inode is gone) and takes the new one."""
    path = lock_path(Path(target))
    if fcntl is None:  # pragma: no cover
        yield
        return
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0),
                         0o644)
        except OSError as exc:
            raise ImageError(f"{literal(target)}: cannot write in {literal(path.parent)} ({reason(exc)})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                mine = os.fstat(fd)
                same = mine.st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    try:
        yield
    finally:
        # A lock file is empty; a file of that name with data in it is someone else's, and stays.
        if mine.st_size == 0 and os.fstat(fd).st_size == 0:
            with contextlib.suppress(OSError):
                os.unlink(path)
        os.close(fd)  # closing releases the lock, after the file is gone


def remove_stale_temporaries(target: Path) -> list[Path]:
    """Delete the temporary files a killed writer of `target` left beside it (call with the lock held)."""
    # mkstemp's names: the prefix, 8 random characters, the suffix; nothing else's name has that shape.
    pattern = re.compile(re.escape(temp_prefix(target)) + r"[a-z0-9_]{8}\.tmp" + re.escape(target.suffix) + r"\Z")
    removed = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(_folder(target)):
            if pattern.match(entry.name) and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed


@contextlib.contextmanager
def interrupts_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM for the block (in the main thread; elsewhere Python delivers none), then act on
    the first that came, with the handler that was in place: a few renames are never cut in two."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    saved: dict[int, Any] = {}

    def hold(signum: int, frame: FrameType | None) -> None:
        pending.append(signum)

    try:
        for signum in _INTERRUPTS:
            previous = signal.getsignal(signum)
            if previous in (signal.SIG_IGN, None):
                continue
            saved[signum] = previous
            signal.signal(signum, hold)
        yield
    finally:
        for signum, previous in saved.items():
            signal.signal(signum, previous)
        if pending:
            first = pending[0]
            previous = saved[first]
            if callable(previous):
                previous(first, None)
            else:  # SIG_DFL: what the signal would have done (SIGTERM: end the process), now the files are whole
                signal.raise_signal(first)


@contextlib.contextmanager
def atomic_paths(paths: Sequence[str | os.PathLike[str]],
                 on_replaced: Callable[[Path], None] | None = None) -> Iterator[list[Path]]:
    """Yield one temporary path per target, each in its target's folder; when the block succeeds, rename them
    all over their targets, else delete them.

    A reader never sees a half-written file, and existing files survive any failure while writing: all files
    are complete on disk before the first rename, so an image is never replaced without its run record. The
    writers of the first target are serialised by its lock, under which a killed writer's temporaries are
    removed. A symbolic link as a target is written through: its target is replaced, the link stays.
    ``on_replaced(target)`` is called after each rename. An OSError becomes an ImageError naming the target;
    any other exception passes through; temporary files go.
    """
    targets = [Path(p) for p in paths]
    real = [Path(os.path.realpath(p)) for p in targets]
    temps: list[Path] = []
    with locked(targets[0]):
        try:
            for path, where in zip(targets, real, strict=True):
                remove_stale_temporaries(where)
                folder = _folder(where)
                try:
                    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(where), suffix=".tmp" + path.suffix, dir=folder)
                except OSError as exc:
                    raise ImageError(f"{literal(path)}: cannot write in {literal(folder)} ({reason(exc)})") from None
                os.close(fd)
                temps.append(Path(tmp))
            current = targets[0]
            replaced: list[Path] = []
            try:
                yield temps
                for index, tmp_path in enumerate(temps):
                    current, where = targets[index], real[index]
                    os.chmod(tmp_path, _new_file_mode(where))  # mkstemp creates 0600; an output is an ordinary file
                    with open(tmp_path, "r+b") as written:
                        os.fsync(written.fileno())  # the data is on disk before the rename makes it the file
                with interrupts_held():
                    for current, where, tmp_path in zip(targets, real, temps, strict=True):
                        os.replace(tmp_path, where)
                        replaced.append(current)
                        if on_replaced is not None:
                            on_replaced(current)
            except OSError as exc:
                done = f"; {', '.join(literal(p) for p in replaced)} already replaced" if replaced else ""
                raise ImageError(f"{literal(current)}: cannot write ({reason(exc)}){done}") from None
        finally:
            for tmp_path in temps:
                with contextlib.suppress(OSError):
                    tmp_path.unlink()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """`atomic_paths` for a single file."""
    with atomic_paths([path]) as (tmp,):
        yield tmp


def write_through(text: str, path: str | os.PathLike[str]) -> Path:
    """Write text into an existing character device or FIFO (/dev/null, /dev/stdout) as it is, no rename."""
    try:
        with open(path, "w", encoding="utf-8") as out:
            out.write(text)
    except OSError as exc:
        raise ImageError(f"{literal(path)}: cannot write ({reason(exc)})") from None
    return Path(path)


def write_text(text: str, path: str | os.PathLike[str]) -> Path:
    """Write a text file atomically (run records, loss logs)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


__all__ = ["atomic_path", "atomic_paths", "check_writable", "interrupts_held", "kind_of", "locked",
           "remove_stale_temporaries", "sha256_of", "write_text", "write_through"]
