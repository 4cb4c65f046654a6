"""Where a long stage is: a tqdm bar on a terminal; elsewhere (a job's log file, a pipe, CI) a log
line at least every `every` seconds with the count, the pace and an estimate of the time left.

A bar redraws in place, which in a file is one endless line of carriage returns; a log line per
unit floods it. A quiet minute-long step still gets its line: a timer thread writes them, not the
updates, so a full-size step on a CPU that takes ten minutes is seen running all along. A stage
that ends before its first line stays silent, so short stages add nothing to the log.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from types import TracebackType

log = logging.getLogger(__name__)


def on_terminal() -> bool:
    """Whether someone watches the output: both stdout and stderr are terminals."""
    return sys.stdout.isatty() and sys.stderr.isatty()


class Progress:
    """Counts a stage's units (steps, images) from `initial` (those done before a resume) to
    `total`; `silent` for the ranks other than the one that reports. A bar shows once the stage
    has run `bar_after` seconds, so stages that are usually short do not litter a terminal."""

    def __init__(self, desc: str, total: int, *, unit: str, bar: bool, initial: int = 0, silent: bool = False,
                 every: float = 60.0, bar_after: float = 0.0) -> None:
        self._desc, self._total, self._unit, self._every = desc, total, unit, every
        self._initial = self._count = initial
        self._notes: dict[str, str] = {}
        self._start = time.monotonic()
        self._lines = 0
        from tqdm.auto import tqdm  # imported late: repro's CLI asks on_terminal() at every start

        self._bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=silent or not bar,
                         delay=bar_after)
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None
        if not (bar or silent):
            self._timer = threading.Thread(target=self._beat, name=f"progress-{desc}", daemon=True)
            self._timer.start()

    def update(self, n: int = 1) -> None:
        self._count += n
        self._bar.update(n)

    def note(self, **values: str) -> None:
        """Values shown beside the count (a step's loss), until replaced."""
        self._notes.update(values)
        self._bar.set_postfix(self._notes)

    def close(self) -> None:
        self._bar.close()
        if self._timer is None:
            return
        self._stop.set()
        self._timer.join()
        self._timer = None
        if self._lines:
            log.info("%s: %d/%d %ss done in %s", self._desc, self._count, self._total, self._unit,
                     _duration(time.monotonic() - self._start))

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def _beat(self) -> None:
        while not self._stop.wait(self._every):
            self._lines += 1
            log.info("%s", self.line())

    def line(self) -> str:
        """The count, the pace and the estimate, as a log line says them."""
        elapsed = time.monotonic() - self._start
        done, left = self._count - self._initial, self._total - self._count
        parts = [f"{self._desc}: {self._count}/{self._total} {self._unit}s", f"{_duration(elapsed)} in"]
        if done:
            pace = elapsed / done
            parts.append(f"{_duration(pace)}/{self._unit}, ~{_duration(pace * left)} left")
        else:
            parts.append(f"the first {self._unit} still running, no estimate yet")
        parts += [f"{name}={value}" for name, value in self._notes.items()]
        return ", ".join(parts)


def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, seconds = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"
