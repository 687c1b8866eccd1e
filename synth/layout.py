"""Common Voice's on-disk layout for the synthetic corpus: TSVs, the stamp, clip cleanup.

    out/                                    (the language folder, e.g. data/demo/fr)
      clips/common_voice_fr_<id>.mp3
      train.tsv dev.tsv test.tsv            the split TSVs (current release columns)
      validated.tsv                         train+dev+test plus ~5 % clips in no split
      invalidated.tsv other.tsv             header only
      clip_durations.tsv                    clip, duration[ms]
      .synth.json                           parameters + completion flag, written last
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np

from pipeline.atomic import TMP_SUFFIX, write_text
from pipeline.cv import SPLITS
from synth.plan import ClipJob, Plan
from synth.render import ClipResult

STAMP = ".synth.json"
COLUMNS = ("client_id", "path", "sentence_id", "sentence", "sentence_domain", "up_votes",
           "down_votes", "age", "gender", "accents", "variant", "locale", "segment")
OTHER_TSVS = ("invalidated.tsv", "other.tsv")
DURATIONS_TSV = "clip_durations.tsv"


def _tsv(rows: list[list[str]], header=COLUMNS) -> str:
    for row in rows:
        for value in row:
            if "\t" in value or "\n" in value:
                raise ValueError(f"TSV field holds a tab or newline: {value!r}")
    return "".join("\t".join(r) + "\n" for r in [list(header), *rows])


def _row(job: ClipJob, votes: tuple[int, int], lang: str) -> list[str]:
    spk = job.speaker
    return [spk.client_id, Path(job.path).name,
            hashlib.sha256(job.sentence.encode("utf-8")).hexdigest(), job.sentence, "",
            str(votes[0]), str(votes[1]), spk.age, spk.gender, spk.accents, "", lang, ""]


def write_tsvs(out: Path, plan: Plan, results: dict[int, ClipResult]) -> None:
    """The split TSVs, validated.tsv, the empty ones and clip_durations.tsv."""
    rng = np.random.default_rng([plan.config.seed, 0x75F])
    lang = plan.config.lang
    rows_by_split: dict[str, list[list[str]]] = {s: [] for s in (*SPLITS, "extra")}
    for job, split, votes in zip(plan.jobs, plan.split_of, plan.votes):
        rows_by_split[split].append(_row(job, votes, lang))
    validated: list[list[str]] = []
    for split in SPLITS:
        rows = rows_by_split[split]
        order = rng.permutation(len(rows))
        write_text(out / f"{split}.tsv", _tsv([rows[i] for i in order]))
        validated += rows
    validated += rows_by_split["extra"]
    order = rng.permutation(len(validated))
    write_text(out / "validated.tsv", _tsv([validated[i] for i in order]))
    for name in OTHER_TSVS:
        write_text(out / name, _tsv([]))
    durations = sorted((Path(j.path).name, str(results[j.index].duration_ms)) for j in plan.jobs)
    write_text(out / DURATIONS_TSV, _tsv([list(d) for d in durations],
                                         header=("clip", "duration[ms]")))


def summarize(plan: Plan, results: dict[int, ClipResult], seconds: float) -> dict:
    hours: dict[str, float] = {}
    clips: dict[str, int] = {}
    for split in (*SPLITS, "extra"):
        idx = [j.index for j, s in zip(plan.jobs, plan.split_of) if s == split]
        clips[split] = len(idx)
        hours[split] = round(sum(results[i].duration_ms for i in idx) / 3.6e6, 4)
    clips["validated"] = len(plan.jobs)
    hours["validated"] = round(sum(hours.values()), 4)
    rates: dict[int, int] = {}
    for r in results.values():
        rates[r.sample_rate] = rates.get(r.sample_rate, 0) + 1
    return {
        "clips": clips,
        "hours": hours,
        "speakers": {s: sum(1 for p in plan.speakers if p.split == s) for s in SPLITS},
        "sample_rates": dict(sorted(rates.items(), reverse=True)),
        "stereo_clips": sum(1 for r in results.values() if r.channels == 2),
        "seconds": round(seconds, 2),
        "skipped": False,
    }


def read_stamp(out: Path) -> dict | None:
    """The stamp's contents, or None when `out` has no readable stamp."""
    try:
        return json.loads((out / STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def corpus_complete(out: Path) -> bool:
    """All TSVs present and every clip listed in clip_durations.tsv exists."""
    names = [f"{s}.tsv" for s in SPLITS] + ["validated.tsv", *OTHER_TSVS, DURATIONS_TSV]
    if not all((out / n).is_file() for n in names):
        return False
    lines = (out / DURATIONS_TSV).read_text(encoding="utf-8").splitlines()[1:]
    return all((out / "clips" / line.split("\t")[0]).is_file() for line in lines)


def write_stamp(out: Path, config: dict, summary: dict | None = None) -> None:
    """The stamp: the parameters, and once the corpus is complete (summary given), its
    summary. Written first with "complete": false, last with "complete": true."""
    stamp = {"config": config, "complete": False} if summary is None else \
        {"config": config, "complete": True, "summary": summary}
    write_text(out / STAMP, json.dumps(stamp, indent=2))


def summary_from_stamp(stamp: dict) -> dict:
    summary = dict(stamp["summary"])
    summary["sample_rates"] = {int(k): v for k, v in summary["sample_rates"].items()}
    summary["skipped"] = True
    return summary


def clip_pattern(lang: str) -> re.Pattern:
    """A clip's file name, or the temporary name a killed writer left (pipeline.atomic)."""
    return re.compile(rf"common_voice_{re.escape(lang)}_\d+\.mp3({re.escape(TMP_SUFFIX)})?$")


def has_foreign_corpus(out: Path, lang: str) -> bool:
    """TSVs or clips in `out` without our stamp: a real release, never to be touched."""
    if (out / "validated.tsv").exists():
        return True
    clips = out / "clips"
    pattern = clip_pattern(lang)
    return clips.is_dir() and any(pattern.match(p.name) for p in clips.iterdir())


def remove_stale_clips(out: Path, lang: str, keep: set[str]) -> None:
    """Delete clips of an earlier synthetic corpus in `out` that the new plan lacks."""
    pattern = clip_pattern(lang)
    for p in (out / "clips").iterdir():
        if pattern.match(p.name) and p.name not in keep:
            p.unlink()
