"""One run, one trainer: the job that trains a run holds an exclusive `flock` on
`runs/<hash>/.lock` for as long as it runs, so a second launcher (or a job it submitted) sees the
run in progress and leaves it alone.

The kernel drops a flock when its holder dies, however it dies, so a killed job's lock never
blocks the next attempt. The lock file holds "host:pid" of the holder, for the message only.
Limits: flock is per host on NFS before Linux 2.6.12 and on mounts with `nolock` or `local_lock`;
a lock is only as good as the filesystem's (Lustre: mount with `flock`; NFSv4 maps it to a byte-range lock).
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path
from typing import TextIO

LOCK_FILE = ".lock"


class RunLock:
    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._file: TextIO | None = None

    def acquire(self) -> bool:
        """Takes the lock without waiting; False when another process holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(f"{socket.gethostname()}:{os.getpid()}\n")
        handle.flush()
        self._file = handle
        return True

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def holder(self) -> str:
        try:
            return self.path.read_text().strip() or "unknown process"
        except OSError:
            return "unknown process"


def in_progress(run_dir: Path) -> str | None:
    """Who trains the run now ("host:pid"), or None when nobody does. Takes and drops the lock,
    so it creates nothing where the run has no folder yet."""
    if not (Path(run_dir) / LOCK_FILE).exists():
        return None
    lock = RunLock(run_dir)
    if lock.acquire():
        lock.release()
        return None
    return lock.holder()
