"""The command line's entry point and its one signal policy, installed before anything heavy is imported.

Ctrl-C (SIGINT) and SIGTERM are handled alike from the first instant of our code: one line on stderr,
``gramstyle: interrupted; ...``, and exit status 128 + the signal's number (130 for SIGINT, 143 for SIGTERM),
never a traceback. While the command line's modules (torch) are imported a signal is only noted, and acted on as
soon as the import is done (a second one leaves at once); afterwards it raises `Interrupted` (a
KeyboardInterrupt) where the program is, and the note stays, so that an interrupt swallowed somewhere deep is
still acted on at the next check (`check`) before any output is replaced. The library itself holds the signals
while it renames a run's files into place (`gramstyle.files.interrupts_held`).

This module imports only the standard library (``gramstyle/__init__`` is lazy): it is what
``python -m gramstyle`` and the console script run first.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A SIGINT or SIGTERM, as an exception (a KeyboardInterrupt, so that every cleanup runs)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


_received: int | None = None
_raising = False


def exit_status(signum: int) -> int:
    """The shell's convention: 128 + the signal's number."""
    return 128 + signum


def _handler(signum: int, frame: FrameType | None) -> None:
    global _received
    first = _received is None
    if first:
        _received = signum
    if _raising:
        raise Interrupted(signum)
    if not first:  # a second signal while importing: leave now (nothing has been written yet)
        os.write(2, b"gramstyle: interrupted; nothing written\n")
        os._exit(exit_status(signum))


def install(*, raising: bool = True) -> None:
    """Handle SIGINT and SIGTERM from now on (main thread only); ``raising=False`` only notes them."""
    global _raising
    _raising = raising
    for signum in SIGNALS:
        signal.signal(signum, _handler)


def pending() -> int | None:
    """The first signal received, or None."""
    return _received


def check() -> None:
    """Raise `Interrupted` if a signal came (even one whose exception something swallowed)."""
    if _received is not None:
        raise Interrupted(_received)


def main(argv: Sequence[str] | None = None) -> int:
    install(raising=False)
    from . import cli  # torch: seconds

    if _received is not None:
        sys.stderr.write("gramstyle: interrupted; nothing written\n")
        return exit_status(_received)
    install(raising=True)
    return cli.main(argv)


def run() -> None:
    """The console script: ``gramstyle = "gramstyle.apps.entry:run"``."""
    sys.exit(main())


if __name__ == "__main__":
    run()
