"""Holds a preemption signal back until the training loop finishes its current step.

A scheduler's warning signal (SLURM's USR2 before a preemption or the time limit) interrupts
the process anywhere, mid optimizer step included, where the weights, optimizer and schedule
do not agree. `defer(signum)` wraps the handler already installed (the launcher's, which
requeues the job and exits): while `training()` is active the signal is only noted, and the
loop calls `proceed(save, world)` at its next step boundary, which saves a consistent checkpoint
and then runs the held-back handler. Outside training (evaluation, say) the handler runs at once.

Under data parallelism every rank gets the signal, each at its own moment, but submitit acts on
rank 0's alone (it requeues the job from global rank 0; the others' handlers only log). So the
ranks stop at the first step boundary at which rank 0 holds the signal, all together: one rank
running on alone would wait forever for the others in its next all-reduce.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from experiments.training.distributed import World

_held: list[tuple[Any, int, FrameType | None]] = []  # (handler, signum, frame)
_training = False


def defer(signum: int) -> None:
    original = signal.getsignal(signum)
    if not callable(original):  # the default action or ignored: nothing to hand on to
        return

    def hold(received: int, frame: FrameType | None) -> None:
        if _training:
            _held.append((original, received, frame))
        else:
            original(received, frame)

    signal.signal(signum, hold)


@contextmanager
def training() -> Iterator[None]:
    global _training
    _training = True
    try:
        yield
    finally:
        _training = False


def proceed(save: Callable[[], None], world: World = World()) -> None:
    """At a step boundary: if rank 0 holds a signal, save, then let its handler run. The other
    ranks end here: rank 0 is on its way out (submitit's handler requeues the job and exits)."""
    if not world.first_rank_says(bool(_held)):
        return
    save()
    if world.rank != 0:
        _held.clear()
        raise SystemExit(0)
    handler, signum, frame = _held.pop()
    _held.clear()
    handler(signum, frame)
