"""Atomic file writes: write to a temporary name beside the target, then rename it onto it.

Every file the project writes that a reader may open while it is being written, or that a
crash must not leave half-written (shards, dataset.json, checkpoints, ARPA files, eval
results, the synthetic corpus's clips and TSVs), goes through this module. A rename within
one folder is atomic on POSIX file systems, so a reader sees the old file or the new one,
never a mix. On any error (a full disk included) the temporary file is removed and the
previous file stays as it was.

    with atomic_path(out / "model.pt") as tmp:    # any writer that takes a path
        torch.save(obj, tmp)
    with atomic_open(out / "summary.json", "w") as f:
        json.dump(summary, f)
    write_json(out / "dataset.json", meta)
"""

from __future__ import annotations

import contextlib
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
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
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


def write_bytes(path: Path, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def write_text(path: Path, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


def write_json(path: Path, obj, indent: int | None = 1) -> None:
    """JSON with a trailing newline, non-ASCII characters kept as they are."""
    write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")
