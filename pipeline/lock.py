"""One process owns a run folder or a shard output folder at a time: an OS file lock.

    with lock_folder(out, "train"):          # LockedError if another process holds `out`
        ...

The lock is `fcntl.flock` on `<folder>/.lock`, which holds the owner's pid as text. The OS
drops it when the owner exits, however it exits (kill -9 included), so a crashed run never
leaves its folder locked; the file itself stays (removing it would let two processes lock
two different files under one name). A process whose parent holds the lock works in the
folder on the parent's behalf (`asr-cli train --procs N`: the parent locks, rank 0 of the
spawned group writes). Under torchrun only rank 0 locks; `agree` (asr.runtime.distributed.any_rank)
tells every rank whether it failed, so the others stop with it instead of waiting.

Standard library only: both halves import it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path
from typing import Callable, Iterator

LOCK_FILE = ".lock"


class LockedError(RuntimeError):
    """Another process holds the folder."""


def holder_pid(folder: Path) -> int | None:
    """The pid written in `folder`'s lock file (None: none or unreadable)."""
    try:
        return int((Path(folder) / LOCK_FILE).read_text().strip())
    except (OSError, ValueError):
        return None


class FolderLock:
    def __init__(self, folder: Path, command: str):
        self.folder, self.command = Path(folder), command
        self.fd: int | None = None
        self.created = False  # the folder did not exist: a run that fails leaves nothing behind

    def acquire(self) -> "FolderLock":
        """Take the lock (creating the folder) or raise LockedError; an OSError (read-only or
        full file system, no permission) names the folder."""
        try:
            self.created = not self.folder.exists()
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise OSError(e.errno, e.strerror, str(self.folder)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise OSError(e.errno, e.strerror, str(self.folder)) from None
            pid = holder_pid(self.folder)
            if pid is not None and pid == os.getppid():
                return self  # held for us by the process that started us
            raise LockedError(f"{self.folder} is in use by another asr-cli {self.command} "
                              f"(pid {pid if pid is not None else 'unknown'}); wait for it or choose another --out")
        self.fd = fd
        with contextlib.suppress(OSError):  # the pid is for the message only: a full disk must not stop us
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        if self.created:  # we made the folder and nothing was written in it (the command failed early)
            with contextlib.suppress(OSError):
                if os.listdir(self.folder) == [LOCK_FILE]:
                    (self.folder / LOCK_FILE).unlink()
                    self.folder.rmdir()
        os.close(self.fd)  # closing drops the flock
        self.fd = None

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


@contextlib.contextmanager
def lock_folder(folder: Path, command: str, main: bool = True,
                agree: Callable[[bool], bool] | None = None) -> Iterator[FolderLock | None]:
    """Hold `folder` for the block. Only `main` (rank 0) locks; with several ranks, `agree(failed)`
    must return True on every rank when any rank failed, so all of them raise together."""
    lock, error = None, None
    if main:
        try:
            lock = FolderLock(folder, command).acquire()
        except (LockedError, OSError) as e:
            error = e
    if agree is not None and agree(error is not None) and error is None:
        raise LockedError(f"{folder}: rank 0 could not take the run folder's lock (see its message)")
    if error is not None:
        raise error
    try:
        yield lock
    finally:
        if lock is not None:
            lock.release()
