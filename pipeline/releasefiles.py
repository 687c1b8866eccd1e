"""A release's files: where they are read from, and the seconds of a clip without decoding it.

`FolderFiles` reads a release in a folder (its TSVs, its audio folder, a clip's size and mtime for
the shard fingerprints); `pipeline.archive.ArchiveFiles` answers the same questions for a release
read from its .tar.gz, from what one pass through the archive saw.

Durations serve the dry run, the hour cap and the summary's hours left out. A release says how
long its clips are in a TSV (`clip_durations.tsv` of Scripted Speech since Corpus 12, the
`duration_ms` column of Spontaneous Speech); a clip it does not list is measured from its audio
header (libsndfile reads a few frames, not the whole file). A release read from an archive hands
in the sizes and headers measured while streaming the archive through: nothing is extracted.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import sys
from pathlib import Path

DURATIONS_TSV = "clip_durations.tsv"  # clip (file name), duration[ms]: Scripted Speech since Corpus 12
# The file-name column: `clip` in the releases; the Corpus 25.0 datasheet calls it `filename`.
NAME_COLUMNS = ("clip", "filename")
MS_COLUMN = "duration[ms]"


def parse_listing(text: str) -> dict[str, float]:
    """clip_durations.tsv's text -> {file name: seconds}; rows that are not a finite, non-negative
    number of milliseconds are left out (their clips' headers are read instead)."""
    lines = text.lstrip("\ufeff").splitlines()
    header = [h.strip() for h in lines[0].split("\t")] if lines else []
    name_col = next((c for c in NAME_COLUMNS if c in header), None)
    if name_col is None or MS_COLUMN not in header:
        return {}
    ci, di = header.index(name_col), header.index(MS_COLUMN)
    listed = {}
    for line in lines[1:]:
        f = line.split("\t")
        try:
            ms = float(f[di])
        except (IndexError, ValueError):
            continue
        if math.isfinite(ms) and ms >= 0:
            listed[f[ci].strip()] = ms / 1000
    return listed


def header_seconds(source: str | os.PathLike | bytes) -> tuple[float | None, str, str]:
    """(seconds, "", "") from an audio file's header (a path, or the file's bytes), or (None,
    "decode_error", detail) when libsndfile cannot tell."""
    import soundfile as sf

    try:
        with quiet_stderr():  # libmpg123 prints resync notes of a broken MP3 straight to fd 2
            info = sf.info(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else str(source))
    except Exception as e:  # libsndfile's errors differ across versions
        return None, "decode_error", f"unreadable header ({type(e).__name__})"
    if not info.samplerate or info.frames <= 0:
        return None, "decode_error", "the header gives no duration"
    return info.frames / info.samplerate, "", ""


class ClipDurations:
    """Seconds of a folder's clips: the listing when it names the clip, else the file's header.
    `root`'s clip_durations.tsv is read when `listed` is not given."""

    def __init__(self, root: Path | None = None, listed: dict[str, float] | None = None):
        if listed is None:
            tsv = Path(root) / DURATIONS_TSV if root is not None else None
            listed = parse_listing(tsv.read_text(encoding="utf-8-sig", errors="replace")) \
                if tsv is not None and tsv.is_file() else {}
        self.listed = listed
        self._cache: dict[Path, tuple[float | None, str, str]] = {}

    def probe(self, path: Path) -> tuple[float | None, str, str]:
        """(seconds, "", "") or (None, reason, detail): missing_file, empty_file, decode_error
        (a header libsndfile cannot read), the reasons the build would give."""
        if path not in self._cache:
            self._cache[path] = self._probe(path)
        return self._cache[path]

    def _probe(self, path: Path) -> tuple[float | None, str, str]:
        try:
            st = path.stat()
        except OSError:
            return None, "missing_file", str(path)
        if st.st_size == 0:
            return None, "empty_file", str(path)
        if path.name in self.listed:
            return self.listed[path.name], "", ""
        return header_seconds(path)

    def seconds(self, path: Path) -> float:
        """The clip's seconds, 0 when neither the TSV nor the header can tell (such a clip is
        rejected by the build when it decodes it)."""
        return self.probe(path)[0] or 0.0


@contextlib.contextmanager
def quiet_stderr():
    """fd 2 sent to /dev/null for the block: a C library's notes on a broken file would
    otherwise fill the terminal (or the one-line error of a refused build)."""
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def file_stamp(path: Path) -> list | None:
    """(size, mtime in ns) of an input file, None when it is missing: a clip that comes back,
    or is replaced by another of the same name, changes its shard's fingerprint."""
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


class FolderFiles:
    """A release's files in a folder: `root` (the language folder) holds the TSVs, `audio_dir` the audio."""

    def __init__(self, root: Path, audio_dir: Path):
        self.root, self.audio_dir = Path(root), Path(audio_dir)

    def read(self, name: str) -> bytes | None:
        path = self.root / name
        return path.read_bytes() if path.is_file() else None

    def has(self, name: str) -> bool:
        return (self.root / name).is_file()

    def has_audio_dir(self) -> bool:
        return self.audio_dir.is_dir()

    def durations(self, listed: dict[str, float] | None = None) -> ClipDurations:
        return ClipDurations(self.root, listed)

    def stamp(self, path: Path) -> list | None:
        return file_stamp(path)
