"""Atomic file writes: write to a temporary name beside the target, then rename it onto it.

Every file the project writes that a reader may open while it is being written, or that a
crash must not leave half-written (shards, dataset.json, checkpoints, ARPA files, eval
results, the synthetic corpus's clips and TSVs), goes through this module. A rename within
one folder is atomic on POSIX file systems, so a reader sees the old file or the new one,
never a mix. On any error (a full disk included) the temporary file is removed and the
previous file stays as it was; an OSError without a file name gets the target's, so
`os_error_message` can say "no space left on <path>".

    with atomic_path(out / "model.pt") as tmp:    # any writer that takes a path
        torch.save(obj, tmp)
    with atomic_open(out / "summary.json", "w") as f:
        json.dump(summary, f)
    write_json(out / "dataset.json", meta)
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from pathlib import Path
from typing import IO, Iterator

TMP_SUFFIX = ".tmp"  # `<name>.tmp` beside `<name>`: a killed writer's leftovers match `*.tmp`


def tmp_path(path: Path) -> Path:
    """The temporary name `path` is written under before its rename."""
    path = Path(path)
    return path.with_name(path.name + TMP_SUFFIX)


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; when the block ends without an error, rename it
    onto `path`. On an error the temporary file is removed and `path` is left untouched."""
    path = Path(path)
    tmp = tmp_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(e, OSError) and not e.filename:  # a write() failure names no file
            e.filename = str(path)
        raise


@contextlib.contextmanager
def atomic_open(path: Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """`open(path, mode)` that only replaces `path` once the block has ended and the file is
    closed; mode "w" (text, utf-8) or "wb"."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode 'w' or 'wb', not {mode!r}")
    with atomic_path(path) as tmp:
        with open(tmp, mode, encoding=None if "b" in mode else encoding) as f:
            yield f


def promote(done: Path, path: Path) -> None:
    """Rename a file written in steps under its own temporary name (a resumable download's
    `<name>.part`) onto `path`, once it is whole and checked."""
    os.replace(done, path)


def write_bytes(path: Path, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def write_text(path: Path, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


def write_json(path: Path, obj, indent: int | None = 1) -> None:
    """JSON with a trailing newline, non-ASCII characters kept as they are."""
    write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


def append_line(path: Path, line: str) -> None:
    """Append one line (a log's) whole or not at all: on an error (a full disk) the file is cut
    back to its previous length, so it never ends in half a line."""
    data = (line.rstrip("\n") + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        except OSError as e:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise OSError(e.errno, e.strerror, str(path)) from None
    finally:
        os.close(fd)


_REASONS = {errno.ENOSPC: "no space left on {}", errno.EDQUOT: "disk quota exceeded on {}",
            errno.EROFS: "cannot write to {}: read-only file system",
            errno.EACCES: "cannot write to {}: permission denied", errno.EPERM: "cannot write to {}: permission denied"}


def os_error_message(e: OSError) -> str:
    """One line for a failed write: "no space left on <path>", "cannot write to <path>: read-only
    file system", ...; other errors as Python words them."""
    reason = _REASONS.get(e.errno)
    if reason is None:
        return str(e)
    return reason.format(e.filename or "the device")
