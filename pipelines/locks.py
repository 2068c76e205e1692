"""Run locks: one run at a time per output folder (`filter`, `crawl`) and per state store (`nightly`).

An exclusive, non-blocking `flock` on a small file: the kernel releases it when the process dies,
however it dies, so a killed run never leaves a stale lock behind. The file holds the holder's pid,
for the message a second run prints.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_FILE = ".lock"


class LockHeld(RuntimeError):
    """Another live process holds the lock: try again later (exit 75)."""


@contextmanager
def hold_lock(path: Path, what: str) -> Iterator[None]:
    """Hold the lock file `path` for the block; LockHeld at once if another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
            raise LockHeld(
                f"{path}: another {what} holds the lock ({holder or 'pid unknown'}); try again later"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(
            fd, f"pid {os.getpid()} since {dt.datetime.now(dt.timezone.utc):%Y-%m-%dT%H:%M:%SZ}\n".encode(), 0
        )
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
