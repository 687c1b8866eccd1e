"""Reading a Common Voice release: `<root>/<lang>/clips/*.mp3` and the split TSVs.

Columns are read by header name, never by position: releases differ (`accent` in old
ones, `accents`, `variant`, `sentence_id`, `sentence_domain`, `segment` in newer ones), and
only `path` and `sentence` are required.

Quoting: releases disagree. Some write every field raw (`He said "yes".`), others write a
field CSV-style when it holds a quote (`"He said ""yes""."`). A CSV reader would let a
raw field with an unbalanced quote swallow the following rows, so rows are split on
newlines and fields on tabs (Common Voice fields never hold either), and a field is
unquoted only when it is exactly of the CSV-quoted form: it starts and ends with `"` and
every quote inside comes doubled.

Splits: dev and test are read as the release gives them; train (from train.tsv or
validated.tsv) loses, in this order of precedence, every clip that is itself in dev or test,
every clip of a dev/test speaker (`client_id`) and every clip whose normalised sentence is
read in dev or test, then, with `--max-per-speaker`, the clips above the cap of each speaker
(`apply_split_rules`, which Spontaneous Speech, `pipeline.spontaneous`, goes through too).
Every clip left out is a `TsvProblem` with its reason, so the TSV's rows are always kept +
rejected. Durations without decoding come from `pipeline.releasefiles`.

Where the files come from: a folder (`pipeline.releasefiles.FolderFiles`), or an archive streamed
through once (`pipeline.archive.ArchiveFiles`); the reading is the same.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from pipeline.mdc import DATA_COLLECTIVE
from pipeline.releasefiles import DURATIONS_TSV, ClipDurations, FolderFiles, file_stamp  # noqa: F401

SPLITS = ("train", "dev", "test")
EVAL_SPLITS = ("dev", "test")
REQUIRED = ("path", "sentence")
# Output metadata field -> accepted header names, first found wins.
OPTIONAL = {
    "client_id": ("client_id",),
    "gender": ("gender",),
    "age": ("age",),
    "accent": ("accents", "accent"),
    "variant": ("variant",),
    "locale": ("locale",),
    "sentence_id": ("sentence_id",),
    "sentence_domain": ("sentence_domain",),
}
# Why a train clip is left out by the split rules, in order of precedence: a clip of a dev/test
# speaker that also reads a dev/test sentence is reported for its speaker (the stronger leak).
IN_EVAL_SPLIT = "in_eval_split"  # the clip itself is listed in dev or test
SPEAKER_IN_EVAL = "speaker_in_eval_split"
SENTENCE_IN_EVAL = "sentence_in_eval_split"
SPEAKER_CAP = "speaker_cap"  # above --max-per-speaker
LEFT_OUT_REASONS = (IN_EVAL_SPLIT, SPEAKER_IN_EVAL, SENTENCE_IN_EVAL, SPEAKER_CAP)
_CSV_QUOTED = re.compile(r'^"(?:[^"]|"")*"$')
LAYOUT_HELP = """\
Expected a Common Voice release, as its .tar.gz (--cv-archive) or extracted (--cv-root):

    Scripted Speech     {root}/{lang}/clips/common_voice_{lang}_123.mp3 ...
                        {root}/{lang}/train.tsv  dev.tsv  test.tsv  validated.tsv ...
    Spontaneous Speech  {root}/sps-corpus-5.0-2026-09-11-{lang}/audios/spontaneous-speech-{lang}-1.mp3 ...
                        {root}/sps-corpus-5.0-2026-09-11-{lang}/ss-corpus-{lang}.tsv ...

Common Voice is downloaded from the Mozilla Data Collective (""" + DATA_COLLECTIVE + """): accept
the dataset's terms on its page, make an API key, then `asr-cli download --lang {lang}` (or
--dataset spontaneous). To try the tool without a download, `make demo` builds a synthetic
French corpus in the Scripted Speech layout under data/demo/."""


class ReleaseError(Exception):
    """The folder is not a Common Voice release (one clear message, no traceback)."""


@dataclass
class Clip:
    """One row of a split TSV."""

    id: str  # clip file name without extension, safe as a webdataset key
    split: str
    path: Path  # absolute path of the audio file (inside an archive: <archive>/<member name>)
    sentence: str  # the transcript as the release writes it: what is normalised
    meta: dict = field(default_factory=dict)  # client_id, gender, age, accent, ...
    annotated: str | None = None  # Spontaneous Speech: the transcript with its tags (`sentence` lacks them)


@dataclass
class TsvProblem:
    """A row that could not be read; it becomes a reject."""

    id: str
    split: str
    reason: str
    detail: str
    path: Path | None = None  # the audio file, for a clip left out by the split rules (its hours)


@dataclass
class Release:
    root: Path  # the language folder
    lang: str
    clips: dict[str, list[Clip]]  # split -> clips, in TSV order (train shuffled later)
    problems: list[TsvProblem]
    columns: dict[str, list[str]]  # split -> header of its TSV
    train_tsv_paths: set[Path] | None = None  # train_set "validated": the audio files train.tsv lists
    durations: ClipDurations | None = None
    stamp: Callable[[Path], list | None] = file_stamp  # what a shard's fingerprint holds of each clip
    source: dict = field(default_factory=dict)  # dataset kind, filters, notes (`pipeline.selection.source_lines`)


@dataclass(frozen=True)
class SpeakerCap:
    """`--max-per-speaker`: at most `clips` train clips, or `seconds` of train audio, per speaker."""

    clips: int | None = None
    seconds: float | None = None

    @classmethod
    def parse(cls, text: str | None) -> "SpeakerCap | None":
        """`"500"` -> 500 clips, `"2h"` / `"90m"` -> hours / minutes of audio, None / "" -> no cap.
        ValueError, in one line, for anything else."""
        if text is None or not text.strip():
            return None
        t = text.strip().lower()
        hint = "give a clip count (500) or hours / minutes of audio (2h, 90m)"
        m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([hm]?)", t)
        if not m or (not m.group(2) and "." in m.group(1)):
            raise ValueError(f"--max-per-speaker: {text.strip()!r} is not a cap; {hint}")
        value = float(m.group(1))
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"--max-per-speaker: {text.strip()!r} must be more than 0; {hint}")
        if not m.group(2):
            return cls(clips=int(m.group(1)))
        return cls(seconds=value * (3600 if m.group(2) == "h" else 60))

    def describe(self) -> str:
        if self.clips is not None:
            return f"{self.clips} clips"
        return f"{self.seconds / 3600:g}h"


def unquote(value: str) -> str:
    """Undo CSV-style quoting if and only if the field is exactly CSV-quoted."""
    if len(value) >= 2 and _CSV_QUOTED.match(value):
        return value[1:-1].replace('""', '"')
    return value


def clip_id(path_field: str) -> str:
    """`common_voice_fr_123.mp3` -> `common_voice_fr_123` (dots would split a webdataset key)."""
    name = Path(path_field).name
    stem = name[: -len(Path(name).suffix)] if Path(name).suffix else name
    return stem.replace(".", "_")


def inside(path: Path, folder: Path) -> bool:
    """Whether `path` resolves (`..` and symlinks followed) inside the resolved `folder`."""
    try:
        return path.resolve().is_relative_to(folder)
    except (OSError, ValueError, RuntimeError):  # a NUL byte, a symlink loop: not a clip either
        return False


def read_tsv(path: Path, split: str, clips_dir: Path) -> tuple[list[Clip], list[TsvProblem], list[str]]:
    """One split TSV -> clips, unreadable rows, header."""
    return read_tsv_text(path.read_bytes(), path, split, clips_dir)


def read_tsv_text(raw: bytes, path: Path, split: str, clips_dir: Path, names: tuple[str, str] = REQUIRED,
                  extra: dict[str, str] | None = None) -> tuple[list[Clip], list[TsvProblem], list[str]]:
    """A TSV's bytes (`path`: where it is, for messages) -> clips, unreadable rows, header.

    names: the headers of the audio file and of the transcript (Spontaneous Speech's
    `audio_file`, `transcription`); extra: more meta fields, {field: header} (its `split`, ...)."""
    text = raw.decode("utf-8-sig", errors="replace")
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    header = [h.strip() for h in lines[0].split("\t")] if lines else []
    twice = sorted({h for h in header if h and header.count(h) > 1})
    if twice:  # which of the two would be read is a guess: refuse it rather than let the last one win
        raise ReleaseError(f"{path}: the header names column {', '.join(twice)} more than once; keep one of them")
    missing = [c for c in names if c not in header]
    if missing:
        raise ReleaseError(f"{path} has no column {', '.join(missing)} (header: {' '.join(header) or 'empty'})")
    col = {name: i for i, name in enumerate(header)}
    path_col, sentence_col = col[names[0]], col[names[1]]
    wanted = {**OPTIONAL, **{out: (name,) for out, name in (extra or {}).items()}}
    optional = {out: next((col[n] for n in hs if n in col), None) for out, hs in wanted.items()}
    clips: list[Clip] = []
    problems: list[TsvProblem] = []
    clips_root = clips_dir.resolve()
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("\t")
        path_field = unquote(fields[path_col]).strip() if len(fields) > path_col else ""
        cid = clip_id(path_field) if path_field else f"{split}-line{lineno}"
        if len(fields) > len(header) or len(fields) <= max(path_col, sentence_col):
            problems.append(TsvProblem(cid, split, "malformed_row",
                                       f"{path.name}:{lineno}: {len(fields)} fields, header has {len(header)}"))
            continue
        fields += [""] * (len(header) - len(fields))  # trailing empty fields left out
        if not path_field:
            problems.append(TsvProblem(cid, split, "malformed_row", f"{path.name}:{lineno}: empty path"))
            continue
        audio = clips_dir / path_field
        if inside(audio, clips_root) and not audio.suffix and not audio.exists():
            audio = audio.with_name(audio.name + ".mp3")  # very old releases omit the extension
        if not inside(audio, clips_root):  # `../x.mp3`, `/etc/passwd`, a symlink out: never opened
            problems.append(TsvProblem(cid, split, "path_outside_clips",
                                       f"{path.name}:{lineno}: {path_field!r} is outside {clips_dir}"))
            continue
        meta = {out: (unquote(fields[i]).strip() if i is not None else "") for out, i in optional.items()}
        clips.append(Clip(cid, split, audio, unquote(fields[sentence_col]), meta))
    return clips, problems, header


def open_release(cv_root: Path, lang: str, train_set: str = "train", max_per_speaker: SpeakerCap | None = None,
                 selection=None, files: FolderFiles | None = None) -> Release:
    """Read the split TSVs of `<cv_root>/<lang>/` (or of `files`: an archive's, `pipeline.archive`).

    train_set: "train" uses train.tsv; "validated" uses validated.tsv (the larger training
    set ESPnet's recipe uses). Either way train loses every clip of a dev/test speaker and
    every clip whose sentence is read in dev or test (see the module docstring); the clips of
    validated.tsv that are themselves dev/test clips are built there and are not reported.
    selection (`pipeline.selection.Selection`) leaves out the rows its filters do not match,
    before the split rules. max_per_speaker caps each speaker's train clips (`cap_speakers`).
    Every other row left out is a problem with its reason, so nothing disappears unseen.
    """
    cv_root = Path(cv_root)
    help_text = LAYOUT_HELP.format(root=cv_root, lang=lang)
    if files is None:
        if not cv_root.is_dir():
            raise ReleaseError(f"Common Voice root {cv_root} does not exist.\n\n{help_text}")
        if not (cv_root / lang).is_dir():
            present = sorted(p.name for p in cv_root.iterdir() if p.is_dir())
            hint = f" (language folders present: {', '.join(present)})" if present else ""
            raise ReleaseError(f"no folder {cv_root / lang}{hint}.\n\n{help_text}")
        files = FolderFiles(cv_root / lang, cv_root / lang / "clips")
    root, clips_dir = files.root, files.audio_dir
    wanted = {"train": "validated" if train_set == "validated" else "train", "dev": "dev", "test": "test"}
    if train_set not in ("train", "validated"):
        raise ReleaseError(f"--train-set must be 'train' or 'validated', not {train_set!r}")
    missing = [f"{name}.tsv" for name in wanted.values() if not files.has(f"{name}.tsv")]
    if missing:
        raise ReleaseError(f"{root} lacks {', '.join(missing)}.\n\n{help_text}")
    if not files.has_audio_dir():
        raise ReleaseError(f"{root} has no clips/ folder.\n\n{help_text}")

    clips: dict[str, list[Clip]] = {}
    problems: list[TsvProblem] = []
    columns: dict[str, list[str]] = {}
    for split, name in wanted.items():
        rows, bad, header = read_tsv_text(files.read(f"{name}.tsv"), root / f"{name}.tsv", split, clips_dir)
        clips[split], columns[split] = rows, header
        problems += bad
    train_tsv_paths = None
    if train_set == "validated":  # what the summary's "hours gained over train.tsv" compares with
        train_tsv = files.read("train.tsv")
        train_tsv_paths = set() if train_tsv is None else \
            {c.path for c in read_tsv_text(train_tsv, root / "train.tsv", "train", clips_dir)[0]}
    unique_ids(clips, clips_dir)
    source = {"dataset": "scripted"}
    if selection is not None:
        problems += selection.apply(clips, columns, source)
    return apply_split_rules(Release(root, lang, clips, problems, columns, train_tsv_paths, files.durations(),
                                     files.stamp, source), max_per_speaker, train_set != "validated",
                             root / f"{wanted['train']}.tsv", bool(selection and selection.shared_speakers))


def apply_split_rules(release: Release, max_per_speaker: SpeakerCap | None, report_overlap: bool,
                      train_tsv: Path, shared_speakers: bool = False) -> Release:
    """`release` (its clips read, ids unique) after the split rules of the module docstring, in
    place: duplicates, clips also in dev/test (reported when `report_overlap`), dev/test speakers
    and sentences, the speaker cap. ReleaseError when no train clip is left (`train_tsv` named)."""
    clips, problems, lang = release.clips, release.problems, release.lang
    notes = release.source.setdefault("notes", [])
    if not any("client_id" in header for header in release.columns.values()):
        notes.append("WARNING: speaker separation cannot be checked: the TSVs have no client_id column, so dev "
                     "and test speakers may be in train (their CER will look better than a new speaker's)")
    else:
        unknown = {s: sum(1 for c in clips[s] if not c.meta.get("client_id")) for s in SPLITS}
        if any(unknown.values()):
            counts = ", ".join(f"{n} {s}" for s, n in unknown.items() if n)
            notes.append(f"WARNING: clips without a client_id ({counts}): their speakers cannot be kept apart "
                         "from the other splits'")
    if shared_speakers:
        notes.append("speakers shared between splits on purpose (--allow-shared-speakers): dev/test speakers' "
                     "train clips are kept; dev/test sentences still never reach train")
    for split in SPLITS:
        clips[split], dups = _drop_duplicates(clips[split])
        problems += dups
    clips["train"], overlap = _drop_eval_overlap(clips, report=report_overlap)
    problems += overlap
    clips["train"], left_out = _drop_eval_speakers_and_sentences(clips, lang, shared_speakers)
    problems += left_out
    if max_per_speaker is not None:
        clips["train"], capped = cap_speakers(clips["train"], max_per_speaker, lang, release.durations)
        problems += capped
    if not clips["train"]:
        by_speaker = sum(1 for p in problems if p.split == "train" and p.reason == SPEAKER_IN_EVAL)
        hint = (f"; {by_speaker} were left out as dev/test speakers' clips: if the splits share speakers on "
                "purpose (your own voice, a few speakers' unseen takes), pass --allow-shared-speakers"
                if by_speaker else "")
        raise ReleaseError(f"{train_tsv} lists no usable training clip "
                           f"({len([p for p in problems if p.split == 'train'])} train row(s) rejected{hint}): "
                           "a model cannot be trained without train data")
    return release


def unique_ids(clips: dict[str, list[Clip]], clips_dir: Path) -> None:
    """Give distinct files distinct ids, in place. `clip_id` maps `a.b.c.mp3` and `a_b_c.mp3`
    (or `sub/x.mp3` and `x.mp3`) to one id; the file whose name is the id itself keeps it, any
    other gets `<id>_<8 hex of its path>`, the same whatever the TSV order. The same file
    listed twice keeps one id (a true duplicate, reported as such)."""
    files: dict[str, set[Path]] = {}
    for c in (c for split in SPLITS for c in clips[split]):
        files.setdefault(c.id, set()).add(c.path)
    for split in SPLITS:
        for c in clips[split]:
            paths = files[c.id]
            if len(paths) < 2 or c.path.name == f"{c.id}{c.path.suffix}" and c.path.parent == min(
                    (p.parent for p in paths if p.name == f"{c.id}{p.suffix}"), key=str):
                continue
            rel = c.path.relative_to(clips_dir).as_posix()  # not where the release lies: ids stay put
            c.id = f"{c.id}_{hashlib.sha256(rel.encode()).hexdigest()[:8]}"


def _drop_duplicates(clips: list[Clip]) -> tuple[list[Clip], list[TsvProblem]]:
    seen: set[str] = set()
    kept, dups = [], []
    for c in clips:
        if c.id in seen:
            dups.append(TsvProblem(c.id, c.split, "duplicate_row", "the clip appears twice in its TSV"))
        else:
            seen.add(c.id)
            kept.append(c)
    return kept, dups


def _drop_eval_overlap(clips: dict[str, list[Clip]], report: bool) -> tuple[list[Clip], list[TsvProblem]]:
    """A clip listed in train and in dev/test stays in the evaluation split only. Reported
    (in_eval_split) from train.tsv, where it is a release's mistake; not from validated.tsv,
    which lists every dev and test clip: those are built in their split, not lost."""
    eval_ids = {c.id for s in EVAL_SPLITS for c in clips[s]}
    kept = [c for c in clips["train"] if c.id not in eval_ids]
    dropped = [TsvProblem(c.id, "train", IN_EVAL_SPLIT, "also listed in dev or test", c.path)
               for c in clips["train"] if c.id in eval_ids] if report else []
    return kept, dropped


def _drop_eval_speakers_and_sentences(clips: dict[str, list[Clip]], lang: str,
                                      shared_speakers: bool = False) -> tuple[list[Clip], list[TsvProblem]]:
    """Train minus the clips of dev/test speakers, then minus those whose sentence is read in
    dev or test (see LEFT_OUT_REASONS for the precedence). An empty client_id is no one's: it
    never makes a clip a dev/test speaker's. Two sentences the normaliser rejects are not "the
    same sentence" (both normalise to None)."""
    from pipeline.text import get_normalizer  # sentences compared as the models will see them

    norm = get_normalizer(lang)
    eval_speakers = set() if shared_speakers else {c.meta.get("client_id", "") for s in EVAL_SPLITS
                                                   for c in clips[s]} - {""}
    eval_sentences = {norm.normalize(c.sentence) for s in EVAL_SPLITS for c in clips[s]} - {None}
    kept, left_out = [], []
    for c in clips["train"]:
        if c.meta.get("client_id", "") in eval_speakers:
            left_out.append(TsvProblem(c.id, "train", SPEAKER_IN_EVAL,
                                       f"speaker {c.meta['client_id'][:12]}... reads in dev or test", c.path))
        elif norm.normalize(c.sentence) in eval_sentences:
            left_out.append(TsvProblem(c.id, "train", SENTENCE_IN_EVAL, "its sentence is read in dev or test",
                                       c.path))
        else:
            kept.append(c)
    return kept, left_out


def _tiebreak(clip: Clip) -> str:
    return hashlib.sha256(clip.id.encode()).hexdigest()


def cap_speakers(train: list[Clip], cap: SpeakerCap, lang: str,
                 durations: ClipDurations) -> tuple[list[Clip], list[TsvProblem]]:
    """At most `cap` train clips (or seconds of audio) per speaker, the rest `speaker_cap` rejects.

    The clips a capped speaker keeps are picked one at a time, each time one whose normalised
    sentence the kept train set (every speaker's) holds the fewest copies of, ties broken by a
    hash of the clip id; speakers are taken in client_id order. The result depends on the
    clips listed, never on the TSV's row order. An hour cap stops at the first pick that would
    pass it. Clips without a client_id are no one speaker's and are never capped."""
    import heapq

    from pipeline.text import get_normalizer

    norm = get_normalizer(lang)
    by_speaker: dict[str, list[Clip]] = {}
    for c in train:
        by_speaker.setdefault(c.meta.get("client_id", ""), []).append(c)

    def over(clips: list[Clip]) -> bool:
        if cap.clips is not None:
            return len(clips) > cap.clips
        return sum(durations.seconds(c.path) for c in clips) > cap.seconds

    capped = sorted(spk for spk, clips in by_speaker.items() if spk and over(clips))
    copies: dict[str | None, int] = {}
    for spk, clips in by_speaker.items():
        if spk not in capped:
            for c in clips:
                key = norm.normalize(c.sentence)
                copies[key] = copies.get(key, 0) + 1
    keep: set[int] = {id(c) for spk, clips in by_speaker.items() if spk not in capped for c in clips}
    rejects: list[TsvProblem] = []
    for spk in capped:
        heap = [(copies.get(norm.normalize(c.sentence), 0), _tiebreak(c), i, c)
                for i, c in enumerate(sorted(by_speaker[spk], key=_tiebreak))]
        heapq.heapify(heap)
        kept_n, kept_s = 0, 0.0
        while heap:
            n, tie, i, c = heapq.heappop(heap)
            key = norm.normalize(c.sentence)
            if n != copies.get(key, 0):  # its sentence was kept since it was pushed: re-rank it
                heapq.heappush(heap, (copies.get(key, 0), tie, i, c))
                continue
            seconds = durations.seconds(c.path)
            full = kept_n >= cap.clips if cap.clips is not None else kept_s + seconds > cap.seconds
            if full:
                heap.append((n, tie, i, c))
                break
            keep.add(id(c))
            kept_n, kept_s = kept_n + 1, kept_s + seconds
            copies[key] = copies.get(key, 0) + 1
        for *_, c in sorted(heap, key=lambda h: h[1]):
            rejects.append(TsvProblem(c.id, "train", SPEAKER_CAP,
                                      f"--max-per-speaker {cap.describe()}: speaker {spk[:12]}... keeps "
                                      f"{kept_n} of {len(by_speaker[spk])} clips", c.path))
    return [c for c in train if id(c) in keep], rejects


def shuffled(clips: list[Clip], seed: int) -> list[Clip]:
    """Deterministic shuffle, independent of the TSV's row order."""
    ordered = sorted(clips, key=lambda c: c.id)
    rng = random.Random(hashlib.sha256(f"shuffle-{seed}".encode()).hexdigest())
    rng.shuffle(ordered)
    return ordered
