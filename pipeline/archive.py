"""Reading a Common Voice release straight from its .tar.gz: nothing is extracted to disk.

A whole English release is a ~90 GB archive; extracting it first takes twice the disk. A gzip
stream cannot be sought (reading a member means decompressing everything before it), so the
archive is read front to back, in at most two sequential passes:

1. the index pass (`index_archive`): the TSVs a build reads are kept in memory, every audio
   member of the language is noted (name, size), and the duration of each one the TSVs do not
   give (clip_durations.tsv, Spontaneous Speech's duration_ms) is read from its header, from the
   member's bytes in memory: what the dry run, the space check and the hour cap need;
2. the clip pass (`ArchiveIndex.audio`): the audio members a build decodes, as bytes, in archive
   order; the builder's workers decode them from memory (`pipeline.archive_build`).

When the TSVs (and a durations listing) come before the first audio member, the index pass of a
build stops there and the clip pass goes on from the same stream: one pass. The dry run always
reads the archive through (which clips are there, and their headers), as it stats a folder's.

Layouts (the language folder is found by name; its member path is the `prefix`):

    cv-corpus-25.0-2026-03-09/fr/clips/*.mp3, train.tsv, ...        Scripted Speech
    sps-corpus-5.0-2026-09-11-fr/audios/*.mp3, ss-corpus-fr.tsv, ... Spontaneous Speech

A clip's path is `<archive>/<member name>` (`ArchiveFiles`), so the TSV rules of `pipeline.cv`
(paths confined to the audio folder) and the index's `path` column are those of the folder.
"""

from __future__ import annotations

import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterator

from pipeline.cv import ReleaseError, unquote
from pipeline.releasefiles import DURATIONS_TSV, ClipDurations, header_seconds, parse_listing
from pipeline.spontaneous import AUDIO_DIR as SPS_AUDIO, CORPUS_TSV, FOLDER, REPORTED_TSV

SCRIPTED_AUDIO = "clips"
READ_BUFFER = 1 << 20  # tarfile's stream buffer (its default, 10 KB, makes Python loop 100 times more)


class ArchiveError(ReleaseError):
    """An archive that cannot be read as a release (one line)."""


@dataclass
class ArchiveIndex:
    """What the index pass learnt of an archive (see the module docstring)."""

    path: Path
    lang: str
    kind: str = ""  # "scripted" or "spontaneous" once the language folder is found
    prefix: str = ""  # member path of the language folder, "cv-corpus-25.0-2026-03-09/fr/"
    texts: dict[str, bytes] = field(default_factory=dict)  # TSV name -> bytes (those a build reads)
    members: dict[str, int] = field(default_factory=dict)  # audio path under the audio folder -> size
    headers: dict[str, tuple] = field(default_factory=dict)  # audio path -> ClipDurations.probe's answer
    complete: bool = False  # every member seen (else the clip pass goes on from `_rest`)
    passes: int = 1
    others: set[str] = field(default_factory=set)  # language folders of other languages (for the error)
    _rest: Iterator | None = None  # the stream where the index pass stopped (its current member first)
    _stream: "_Stream | None" = None

    @property
    def audio_dir(self) -> str:
        return SCRIPTED_AUDIO if self.kind == "scripted" else SPS_AUDIO

    def stopped_early(self) -> bool:
        """Whether the index pass stopped at the first audio member (the clip pass goes on from there)."""
        return self._rest is not None

    def root(self) -> Path:
        """The language folder, as a path: `<archive>/<prefix>`."""
        return self.path / self.prefix.rstrip("/")

    def audio(self, wanted: set[str], progress=None) -> Iterator[tuple[str, bytes]]:
        """(audio path, bytes) of the members in `wanted`, in archive order: the rest of the first
        pass's stream, or a second pass. `progress(compressed bytes read)` is called as it goes."""
        if self._rest is None:
            self._stream = _Stream(self.path)
            members, self.passes = self._stream.members(), self.passes + 1
        else:
            members, self._rest = self._rest, None
        stream = self._stream
        audio = self.prefix + self.audio_dir + "/"
        try:
            for m in members:
                if progress is not None:
                    progress(stream.position())
                if not (m.isfile() and m.name.startswith(audio)):
                    continue
                rel = m.name[len(audio):]
                self.members[rel] = m.size
                if rel in wanted:
                    yield rel, stream.read(m)
        finally:
            stream.close()
        self.complete = True


class _Stream:
    """One sequential read of an archive (any compression tarfile knows); errors in one line."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self.f = open(self.path, "rb")
            self.tar = tarfile.open(fileobj=self.f, mode="r|*", bufsize=READ_BUFFER)
        except (OSError, tarfile.TarError, EOFError, zlib.error) as e:
            raise ArchiveError(f"cannot read {self.path} as a .tar.gz ({_why(e)})") from None

    def members(self) -> Iterator[tarfile.TarInfo]:
        try:
            yield from self.tar
        except (OSError, tarfile.TarError, EOFError, zlib.error) as e:
            raise self._broken(e, "its member list") from None

    def read(self, member: tarfile.TarInfo) -> bytes:
        try:
            return self.tar.extractfile(member).read()
        except (OSError, tarfile.TarError, EOFError, zlib.error) as e:
            raise self._broken(e, member.name) from None

    def _broken(self, e: Exception, where: str) -> ArchiveError:
        return ArchiveError(f"{self.path} ends early or is corrupt ({_why(e)}, reading {where}): a truncated "
                            "download? `asr-cli download` resumes one and checks its checksum")

    def position(self) -> int:
        """Compressed bytes read so far (what a progress bar over the archive's size shows)."""
        try:
            return self.f.tell()
        except (OSError, ValueError):
            return 0

    def close(self) -> None:
        self.tar.close()
        self.f.close()


def _why(e: Exception) -> str:
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


def _place(name: str, lang: str) -> tuple[str, str, str] | None:
    """(kind, prefix, rest) when member `name` lies in `lang`'s language folder of either layout."""
    parts = PurePosixPath(name).parts
    if ".." in parts:
        return None
    for i, part in enumerate(parts[:-1]):
        if part == lang and (parts[i + 1] == SCRIPTED_AUDIO and len(parts) > i + 2 or len(parts) == i + 2):
            return "scripted", "/".join(parts[: i + 1]) + "/", "/".join(parts[i + 1:])
        m = FOLDER.fullmatch(part)
        if m and m.group("lang") == lang:
            return "spontaneous", "/".join(parts[: i + 1]) + "/", "/".join(parts[i + 1:])
    return None


def _other_language(name: str) -> str | None:
    parts = PurePosixPath(name).parts
    if len(parts) >= 3 and parts[-2] == SCRIPTED_AUDIO:
        return parts[-3]
    m = FOLDER.fullmatch(parts[0]) if parts else None
    return m.group("lang") if m else None


def needed_texts(kind: str, lang: str, train_set: str) -> tuple[str, ...]:
    """The TSVs a build reads (the durations listing included: the index pass may stop early only
    with it, since the clips' headers are then never needed)."""
    if kind == "spontaneous":
        return CORPUS_TSV.format(lang=lang), REPORTED_TSV.format(lang=lang)
    names = ["train.tsv", "dev.tsv", "test.tsv", DURATIONS_TSV]
    return tuple(names + (["validated.tsv"] if train_set == "validated" else []))


def index_archive(path: Path, lang: str, train_set: str = "train", stop_early: bool = True,
                  progress=None) -> ArchiveIndex:
    """The index pass (module docstring). stop_early: stop at the first audio member once every
    TSV a build reads is in (`needed_texts`), leaving the stream open for the clip pass.
    progress(compressed bytes read) is called as it goes."""
    index = ArchiveIndex(Path(path), lang)
    if not index.path.is_file():
        raise ArchiveError(f"--cv-archive {index.path} is not a file")
    stream = _Stream(index.path)
    members = stream.members()
    listed: dict[str, float] = {}
    referenced: set[str] | None = None
    for m in members:
        if progress is not None:
            progress(stream.position())
        if not m.isfile():
            continue
        place = _place(m.name, lang)
        if place is None:
            other = _other_language(m.name)
            if other:
                index.others.add(other)
            continue
        kind, prefix, rest = place
        if not index.kind:
            index.kind, index.prefix = kind, prefix
        elif prefix != index.prefix:
            continue  # a second folder of the language (a delta release beside it): not this release
        needed = needed_texts(index.kind, lang, train_set)
        if "/" not in rest:  # a file of the language folder itself
            if rest in needed:
                index.texts[rest] = stream.read(m)
                if rest == DURATIONS_TSV:
                    listed = parse_listing(index.texts[rest].decode("utf-8", errors="replace"))
            continue
        if not rest.startswith(index.audio_dir + "/"):
            continue
        have_all = all(n in index.texts for n in needed)
        if stop_early and have_all and not index.members:  # no clip passed yet: the clip pass goes on from here
            index._rest, index._stream = _chain(m, members), stream
            return index
        if referenced is None and have_all:
            referenced = _referenced(index)
        rel = rest[len(index.audio_dir) + 1:]
        index.members[rel] = m.size
        if m.size and PurePosixPath(rel).name not in listed and (referenced is None or rel in referenced):
            index.headers[rel] = header_seconds(stream.read(m))
    stream.close()
    index.complete = True
    if not index.kind:
        found = f" (it holds {', '.join(sorted(index.others))})" if index.others else ""
        raise ArchiveError(f"{index.path} holds no Common Voice release of {lang!r}{found}: a Scripted Speech "
                           f"archive has <folder>/{lang}/clips/, a Spontaneous Speech one sps-corpus-*-{lang}/audios/")
    return index


def _chain(first, rest: Iterator) -> Iterator:
    yield first
    yield from rest


def _referenced(index: ArchiveIndex) -> set[str]:
    """The audio paths the kept TSVs name (a header is read only for those)."""
    column = "path" if index.kind == "scripted" else "audio_file"
    names: set[str] = set()
    for name, raw in index.texts.items():
        lines = raw.decode("utf-8-sig", errors="replace").splitlines()
        header = [h.strip() for h in lines[0].split("\t")] if lines else []
        if column in header:
            i = header.index(column)
            fields = (line.split("\t") for line in lines[1:])
            names.update(PurePosixPath(unquote(f[i]).strip()).as_posix() for f in fields if len(f) > i and f[i].strip())
    return names | {n + ".mp3" for n in names if not PurePosixPath(n).suffix}  # as pipeline.cv.read_tsv_text reads them


class ArchiveDurations(ClipDurations):
    """ClipDurations of an archive's clips, from the index pass: its listing, the members' sizes
    (a missing or empty clip, as a folder's stat tells) and the headers it read."""

    def __init__(self, index: ArchiveIndex, audio_root: Path, listed: dict[str, float]):
        super().__init__(listed=listed)
        self.index, self.audio_root = index, audio_root

    def _probe(self, path: Path) -> tuple[float | None, str, str]:
        try:
            rel = path.relative_to(self.audio_root).as_posix()
        except ValueError:
            return None, "missing_file", str(path)
        size = self.index.members.get(rel)
        if size is None and self.index.complete:
            return None, "missing_file", f"{self.index.path}: no member {self.index.prefix}{self.index.audio_dir}/{rel}"
        if size == 0:
            return None, "empty_file", str(path)
        if path.name in self.listed:
            return self.listed[path.name], "", ""
        if rel in self.index.headers:
            return self.index.headers[rel]
        return None, "missing_file", "not in the archive's durations listing (its header is read when it comes)"


class ArchiveFiles:
    """The release files of an archive (as `pipeline.releasefiles.FolderFiles` for a folder)."""

    def __init__(self, index: ArchiveIndex):
        self.index = index
        self.root = index.root()
        self.audio_dir = self.root / index.audio_dir
        st = index.path.stat()
        self._stamp = [st.st_size, st.st_mtime_ns, "archive"]

    def read(self, name: str) -> bytes | None:
        return self.index.texts.get(name)

    def has(self, name: str) -> bool:
        return name in self.index.texts

    def has_audio_dir(self) -> bool:
        return bool(self.index.members) or self.index.stopped_early()

    def durations(self, listed: dict[str, float] | None = None) -> ClipDurations:
        if listed is None:
            raw = self.index.texts.get(DURATIONS_TSV)
            listed = parse_listing(raw.decode("utf-8", errors="replace")) if raw is not None else {}
        return ArchiveDurations(self.index, self.audio_dir, listed)

    def stamp(self, path: Path) -> list | None:
        """Every clip's fingerprint holds the archive's size and mtime: another archive, another build."""
        return self._stamp

    def member(self, path: Path) -> str:
        """The audio path (under the audio folder) of a clip's path."""
        return path.relative_to(self.audio_dir).as_posix()
