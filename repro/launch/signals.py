"""SIGTERM to the launcher (a login node's watchdog, a closed terminal, `kill`) ends it the way
Ctrl-C does: as a KeyboardInterrupt where it is waiting, so it can stop its local jobs and
record their runs as KILLED before it exits, rather than dying and leaving them as orphans.

The launcher alone decides how its local jobs stop. submitit's controller process, on a SIGINT
of its own (a terminal's Ctrl-C reaches the whole process group), SIGKILLs its tasks one second
later, mid step and before any checkpoint; so the jobs start with SIGINT blocked, the
controller never sees it, and the job's training process unblocks it for itself
(repro.launch.run_job)."""

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


@contextmanager
def sigint_blocked() -> Iterator[None]:
    """SIGINT blocked in this thread meanwhile: processes started here inherit the mask (across
    exec too, unlike a handler), and a Ctrl-C that comes meanwhile is delivered at the end rather
    than lost, as it would be by ignoring the signal instead."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGINT])
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def signal_name(interrupt: KeyboardInterrupt) -> str:
    return "SIGTERM" if isinstance(interrupt, Terminated) else "SIGINT"


def exit_status(interrupt: KeyboardInterrupt) -> int:
    """What a shell reports for a process its signal ended: 128 + the signal's number."""
    return 128 + (signal.SIGTERM if isinstance(interrupt, Terminated) else signal.SIGINT)
