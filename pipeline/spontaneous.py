"""Common Voice Spontaneous Speech: contributors answer open questions in their own words.

A second dataset beside Scripted Speech (Corpus 1.0, 2025-09; 5.0, 2026-09), with its own layout:

    sps-corpus-{version}-{date}-{locale}/
      audios/spontaneous-speech-{locale}-N.mp3
      ss-corpus-{locale}.tsv            one row per answer: client_id, audio_file, duration_ms,
                                        transcription, split, quality_tags, age, gender, variant, ...
      ss-reported-audios-{locale}.tsv   answers the community reported (their audio stays in audios/)
      README.md, ss-corpus-{locale}.qa-summary.json

How it becomes shards (the same builder, the same shard format):

- Splits come from the `split` column: train, dev and test as given, then the split rules of
  `pipeline.cv` (no dev/test speaker or transcript reaches train; the TSV has `client_id`).
  `unassigned` rows (audio without a validated transcription) are left out and counted: a reject
  of reason and split `unassigned`, and a line of the summary.
- Transcripts carry annotation tags (`[disfluency]`, `[noise]`, ...). TAG_RULE removes them before
  the normaliser runs, so no tag reaches the text models learn; the index's `sentence` keeps the
  transcript as the release wrote it, tags and all (`Clip.annotated`).
- A reported audio is never used: a row whose audio_file is in ss-reported-audios is a `reported`
  reject with the report's reason (releases already leave them out of ss-corpus; this holds if not).
- `quality_tags` are informational in the release; `--drop-quality-tags` leaves out the rows that
  carry given ones (`pipeline.selection`).
- Durations come from `duration_ms`. Answers last 25 s on average and up to minutes: the default
  --max-duration of 20 s keeps the shorter half; `--max-duration 60` keeps most answers (a longer
  one is a `too_long` reject, refused from its header before it is decoded), and training then
  needs `--max-frames 6000` (60 s), its default skipping anything over 20 s.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from pipeline.cv import (LAYOUT_HELP, SPLITS, Clip, Release, ReleaseError, SpeakerCap, TsvProblem,
                         apply_split_rules, read_tsv_text, unique_ids)
from pipeline.releasefiles import FolderFiles

CORPUS_TSV = "ss-corpus-{lang}.tsv"
REPORTED_TSV = "ss-reported-audios-{lang}.tsv"
AUDIO_DIR = "audios"
FOLDER = re.compile(r"sps-corpus-(?P<version>\d+(?:\.\d+)*)-(?P<date>\d{4}-\d{2}-\d{2})-(?P<lang>.+)")
UNASSIGNED = "unassigned"  # the split of an answer without a validated transcription, and its reject's reason
_TAG = re.compile(r"\[[^\[\]]*\]")
TAG_RULE = "every [...] span removed, e.g. [disfluency], [noise]"  # what `strip_tags` does, in dataset.json


def strip_tags(text: str) -> str:
    """TAG_RULE: `"je [disfluency] pense [noise] que oui"` -> `"je pense que oui"` (a `[...]` span
    holding no bracket becomes a space; spaces collapse). An unmatched `[` is left to the
    normaliser (punctuation: a space)."""
    return " ".join(_TAG.sub(" ", text).split())


def find_folder(cv_root: Path, lang: str) -> Path | None:
    """The Spontaneous Speech folder of `lang` that `cv_root` names: the `sps-corpus-*-<lang>`
    folder itself, `<cv_root>/<lang>/` holding its TSV, or the newest `sps-corpus-*-<lang>` in
    `cv_root`; None when there is none (a Scripted Speech release, or nothing)."""
    cv_root = Path(cv_root)
    name = CORPUS_TSV.format(lang=lang)
    for folder in (cv_root, cv_root / lang):
        if (folder / name).is_file():
            return folder
    found = [(_version_key(m), p) for p in (cv_root.iterdir() if cv_root.is_dir() else ())
             if (m := FOLDER.fullmatch(p.name)) and m.group("lang") == lang and (p / name).is_file()]
    return max(found)[1] if found else None


def _version_key(m: re.Match) -> tuple:
    return tuple(int(x) for x in m.group("version").split(".")), m.group("date")


def open_folder(folder: Path, lang: str, train_set: str = "train", max_per_speaker: SpeakerCap | None = None,
                selection=None) -> Release:
    return open_spontaneous(FolderFiles(folder, Path(folder) / AUDIO_DIR), lang, train_set, max_per_speaker,
                            selection)


def open_spontaneous(files, lang: str, train_set: str = "train", max_per_speaker: SpeakerCap | None = None,
                     selection=None) -> Release:
    """A Spontaneous Speech release (`files`: a FolderFiles, or an archive's) -> Release, as the
    module docstring says. selection: `pipeline.selection.Selection` (its filters, all splits)."""
    name = CORPUS_TSV.format(lang=lang)
    help_text = LAYOUT_HELP.format(root=files.root.parent, lang=lang)
    if train_set != "train":
        raise ReleaseError(f"--train-set {train_set} is Scripted Speech's; Spontaneous Speech's train split is "
                           "its TSV's `split` column: leave --train-set out")
    raw = files.read(name)
    if raw is None:
        raise ReleaseError(f"{files.root} lacks {name}.\n\n{help_text}")
    if not files.has_audio_dir():
        raise ReleaseError(f"{files.root} has no {AUDIO_DIR}/ folder.\n\n{help_text}")
    rows, problems, header = read_tsv_text(raw, files.root / name, "train", files.audio_dir,
                                           names=("audio_file", "transcription"),
                                           extra={"split": "split", "quality_tags": "quality_tags",
                                                  "duration_ms": "duration_ms"})
    if "split" not in header:
        raise ReleaseError(f"{files.root / name} has no split column (header: {' '.join(header)}): it is not a "
                           "Spontaneous Speech release's corpus TSV")
    reported = _reported(files, lang)
    clips: dict[str, list[Clip]] = {s: [] for s in SPLITS}
    listed: dict[str, float] = {}
    for c in rows:
        split, ms = c.meta.pop("split").lower(), c.meta.pop("duration_ms")
        seconds = _seconds(ms)
        if seconds is not None:
            listed[c.path.name] = seconds
        c.annotated, c.sentence = c.sentence, strip_tags(c.sentence)
        where = split if split in SPLITS else UNASSIGNED
        if c.path.name in reported:
            problems.append(TsvProblem(c.id, where, "reported", f"reported by the community: {reported[c.path.name]}",
                                       c.path))
        elif where == UNASSIGNED:
            problems.append(TsvProblem(c.id, UNASSIGNED, UNASSIGNED,
                                       f"split {split or '(empty)'!s}: no validated transcription", c.path))
        else:
            c.split = split
            clips[split].append(c)
    unique_ids(clips, files.audio_dir)
    columns = {split: header for split in SPLITS}
    source = {"dataset": "spontaneous", "tag_rule": TAG_RULE,
              "unassigned": sum(1 for p in problems if p.reason == UNASSIGNED),
              "reported": sum(1 for p in problems if p.reason == "reported")}
    if selection is not None:
        problems += selection.apply(clips, columns, source)
    release = Release(files.root, lang, clips, problems, columns, None, files.durations(listed), files.stamp, source)
    return apply_split_rules(release, max_per_speaker, True, files.root / name,
                             bool(selection and selection.shared_speakers))


def _seconds(ms: str) -> float | None:
    try:
        value = float(ms) / 1000
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _reported(files, lang: str) -> dict[str, str]:
    """audio_file -> the report's reason, from ss-reported-audios (absent: none reported)."""
    raw = files.read(REPORTED_TSV.format(lang=lang))
    if raw is None:
        return {}
    lines = raw.decode("utf-8-sig", errors="replace").splitlines()
    header = [h.strip() for h in lines[0].split("\t")] if lines else []
    if "audio_file" not in header:
        return {}
    ai, ri = header.index("audio_file"), header.index("reason") if "reason" in header else None
    reported = {}
    for line in lines[1:]:
        f = line.split("\t")
        if len(f) > ai and f[ai].strip():
            reported[Path(f[ai].strip()).name] = f[ri].strip() if ri is not None and len(f) > ri else ""
    return reported
