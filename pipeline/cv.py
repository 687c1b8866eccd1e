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
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

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
}
_CSV_QUOTED = re.compile(r'^"(?:[^"]|"")*"$')
LAYOUT_HELP = """\
Expected a Common Voice release extracted like this:

    {root}/
      {lang}/
        clips/common_voice_{lang}_123.mp3 ...
        train.tsv  dev.tsv  test.tsv  validated.tsv

Download a release from https://commonvoice.mozilla.org/datasets, extract it, and pass
the folder that holds the language folder with --cv-root (make shards LANG={lang}
CV_ROOT=...). To try the tool without a download, `make demo` builds a synthetic French
corpus in this layout under data/demo/."""


class ReleaseError(Exception):
    """The folder is not a Common Voice release (one clear message, no traceback)."""


@dataclass
class Clip:
    """One row of a split TSV."""

    id: str  # clip file name without extension, safe as a webdataset key
    split: str
    path: Path  # absolute path of the audio file
    sentence: str  # raw transcript as the release writes it
    meta: dict = field(default_factory=dict)  # client_id, gender, age, accent, ...


@dataclass
class TsvProblem:
    """A row that could not be read; it becomes a reject."""

    id: str
    split: str
    reason: str
    detail: str


@dataclass
class Release:
    root: Path  # the language folder
    lang: str
    clips: dict[str, list[Clip]]  # split -> clips, in TSV order (train shuffled later)
    problems: list[TsvProblem]
    columns: dict[str, list[str]]  # split -> header of its TSV


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
    raw = path.read_bytes()
    text = raw.decode("utf-8-sig", errors="replace")
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    header = [h.strip() for h in lines[0].split("\t")] if lines else []
    twice = sorted({h for h in header if h and header.count(h) > 1})
    if twice:  # which of the two would be read is a guess: refuse it rather than let the last one win
        raise ReleaseError(f"{path}: the header names column {', '.join(twice)} more than once; keep one of them")
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise ReleaseError(f"{path} has no column {', '.join(missing)} (header: {' '.join(header) or 'empty'})")
    col = {name: i for i, name in enumerate(header)}
    optional = {out: next((col[n] for n in names if n in col), None) for out, names in OPTIONAL.items()}
    clips: list[Clip] = []
    problems: list[TsvProblem] = []
    clips_root = clips_dir.resolve()
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("\t")
        path_field = unquote(fields[col["path"]]).strip() if len(fields) > col["path"] else ""
        cid = clip_id(path_field) if path_field else f"{split}-line{lineno}"
        if len(fields) > len(header) or len(fields) <= max(col["path"], col["sentence"]):
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
        clips.append(Clip(cid, split, audio, unquote(fields[col["sentence"]]), meta))
    return clips, problems, header


def open_release(cv_root: Path, lang: str, train_set: str = "train") -> Release:
    """Read the split TSVs of `<cv_root>/<lang>/`.

    train_set: "train" uses train.tsv; "validated" uses validated.tsv minus every clip of
    dev and test and minus every clip whose sentence is read in dev or test (the larger
    training set ESPnet's recipe uses). Rows left out that way are reported as problems
    with reason "in_eval_split" / "sentence_in_eval_split", so nothing disappears unseen.
    """
    cv_root = Path(cv_root)
    help_text = LAYOUT_HELP.format(root=cv_root, lang=lang)
    if not cv_root.is_dir():
        raise ReleaseError(f"Common Voice root {cv_root} does not exist.\n\n{help_text}")
    root = cv_root / lang
    if not root.is_dir():
        present = sorted(p.name for p in cv_root.iterdir() if p.is_dir())
        hint = f" (language folders present: {', '.join(present)})" if present else ""
        raise ReleaseError(f"no folder {root}{hint}.\n\n{help_text}")
    wanted = {"train": "validated" if train_set == "validated" else "train", "dev": "dev", "test": "test"}
    if train_set not in ("train", "validated"):
        raise ReleaseError(f"--train-set must be 'train' or 'validated', not {train_set!r}")
    missing = [f"{name}.tsv" for name in wanted.values() if not (root / f"{name}.tsv").is_file()]
    if missing:
        raise ReleaseError(f"{root} lacks {', '.join(missing)}.\n\n{help_text}")
    clips_dir = root / "clips"
    if not clips_dir.is_dir():
        raise ReleaseError(f"{root} has no clips/ folder.\n\n{help_text}")

    clips: dict[str, list[Clip]] = {}
    problems: list[TsvProblem] = []
    columns: dict[str, list[str]] = {}
    for split, name in wanted.items():
        rows, bad, header = read_tsv(root / f"{name}.tsv", split, clips_dir)
        clips[split], columns[split] = rows, header
        problems += bad
    if train_set == "validated":
        clips["train"], left_out = _validated_minus_eval(clips, lang)
        problems += left_out
    _unique_ids(clips, clips_dir)
    for split in SPLITS:
        clips[split], dups = _drop_duplicates(clips[split])
        problems += dups
    clips["train"], overlap = _drop_eval_overlap(clips)
    problems += overlap
    if not clips["train"]:
        raise ReleaseError(f"{root / (wanted['train'] + '.tsv')} lists no usable training clip "
                           f"({len([p for p in problems if p.split == 'train'])} train row(s) rejected): "
                           "a model cannot be trained without train data")
    return Release(root, lang, clips, problems, columns)


def _unique_ids(clips: dict[str, list[Clip]], clips_dir: Path) -> None:
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


def _drop_eval_overlap(clips: dict[str, list[Clip]]) -> tuple[list[Clip], list[TsvProblem]]:
    """A clip listed in train and in dev/test stays in the evaluation split only."""
    eval_ids = {c.id for s in EVAL_SPLITS for c in clips[s]}
    kept = [c for c in clips["train"] if c.id not in eval_ids]
    dropped = [TsvProblem(c.id, "train", "in_eval_split", "also listed in dev or test")
               for c in clips["train"] if c.id in eval_ids]
    return kept, dropped


def _validated_minus_eval(clips: dict[str, list[Clip]], lang: str) -> tuple[list[Clip], list[TsvProblem]]:
    from pipeline.text import get_normalizer  # sentences compared as the models will see them

    norm = get_normalizer(lang)
    eval_ids = {c.id for s in EVAL_SPLITS for c in clips[s]}
    eval_sentences = {norm.normalize(c.sentence) for s in EVAL_SPLITS for c in clips[s]} - {None}
    kept, left_out = [], []
    for c in clips["train"]:
        if c.id in eval_ids:
            continue  # the clip itself is in dev/test: it is built there, not lost
        if norm.normalize(c.sentence) in eval_sentences:
            left_out.append(TsvProblem(c.id, "train", "sentence_in_eval_split",
                                       "validated clip whose sentence is read in dev or test"))
        else:
            kept.append(c)
    return kept, left_out


def shuffled(clips: list[Clip], seed: int) -> list[Clip]:
    """Deterministic shuffle, independent of the TSV's row order."""
    ordered = sorted(clips, key=lambda c: c.id)
    rng = random.Random(hashlib.sha256(f"shuffle-{seed}".encode()).hexdigest())
    rng.shuffle(ordered)
    return ordered
