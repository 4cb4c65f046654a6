"""SIGTERM to the launcher (a login node's watchdog, a closed terminal, `kill`) ends it the way
Ctrl-C does: as a KeyboardInterrupt where it is waiting, so it can stop its local jobs and
record their runs as KILLED before it exits, rather than dying and leaving them as orphans."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager


class Terminated(KeyboardInterrupt):
    """The launcher got SIGTERM."""


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    def interrupt(signum: int, frame: object) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def signal_name(interrupt: KeyboardInterrupt) -> str:
    return "SIGTERM" if isinstance(interrupt, Terminated) else "SIGINT"


def exit_status(interrupt: KeyboardInterrupt) -> int:
    """What a shell reports for a process its signal ended: 128 + the signal's number."""
    return 128 + (signal.SIGTERM if isinstance(interrupt, Terminated) else signal.SIGINT)
