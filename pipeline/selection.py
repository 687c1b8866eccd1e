"""Which rows of a release a build uses: the filters users ask for, and the summary lines of the source.

    --sentence-domain health,finance   Scripted Speech rows whose `sentence_domain` (Corpus 17.0 and
                                       later; a row may list several, comma-separated) names one of these
    --variant fr-CA                    rows whose `variant` (Corpus 13.0 and later) is one of these
    --drop-quality-tags short-audio    Spontaneous Speech rows whose `quality_tags` (pipe-separated)
                                       hold one of these are left out

A filter applies to every split (dev and test are what is evaluated: a variant's model is
evaluated on that variant), before the split rules of `pipeline.cv`. Each row left out is a
reject with its reason (`sentence_domain_filter`, `variant_filter`, `quality_tag`), so a TSV's
rows stay kept + rejected, and the counts go to dataset.json's `source`, the build summary and
the dry run. A filter on a column no TSV of the release has is refused in one line: it would
leave nothing, or everything, without saying why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipeline.cv import Clip, ReleaseError, TsvProblem

# Spontaneous Speech's quality tags (its README, Corpus 3.0 and later): informational, never applied by the release.
QUALITY_TAGS = ("short-audio", "long-audio", "transcription-length", "speech-rate", "non-allowed-script",
                "mixed-script-words", "mixed-script-transcription", "dataset-language-audio-mismatch")
_LIST = re.compile(r"[,;|]")


def parse_list(text: str | None) -> tuple[str, ...]:
    """`"a, b"` -> ("a", "b"); None or "" -> ()."""
    return tuple(sorted({t.strip() for t in (text or "").split(",") if t.strip()}))


@dataclass(frozen=True)
class Selection:
    """The row filters of one build (each empty: no filter)."""

    sentence_domains: tuple[str, ...] = ()
    variants: tuple[str, ...] = ()
    drop_quality_tags: tuple[str, ...] = ()
    # a corpus whose splits share speakers on purpose (one's own voice, a few speakers' unseen
    # takes): their train clips are kept (dev/test sentences are still never trained on)
    shared_speakers: bool = False

    @classmethod
    def parse(cls, sentence_domain: str | None = None, variant: str | None = None,
              drop_quality_tags: str | None = None, shared_speakers: bool = False) -> "Selection":
        return cls(parse_list(sentence_domain), parse_list(variant), parse_list(drop_quality_tags), shared_speakers)

    def describe(self) -> dict:
        return {"sentence_domain": list(self.sentence_domains), "variant": list(self.variants),
                "drop_quality_tags": list(self.drop_quality_tags), "shared_speakers": self.shared_speakers}

    def apply(self, clips: dict[str, list[Clip]], columns: dict[str, list[str]], source: dict) -> list[TsvProblem]:
        """Leave out, in place, the rows of every split the filters do not keep; returns their
        problems and records the counts in `source["filters"]`."""
        header = {h for cols in columns.values() for h in cols}
        rules = []
        if self.sentence_domains:
            _need(header, "sentence_domain", "--sentence-domain", "Scripted Speech Corpus 17.0 and later")
            rules.append(("sentence_domain", "sentence_domain_filter", lambda v: bool(
                {d.strip() for d in _LIST.split(v)} & set(self.sentence_domains)), self.sentence_domains))
        if self.variants:
            _need(header, "variant", "--variant", "Corpus 13.0 and later")
            rules.append(("variant", "variant_filter", lambda v: v in self.variants, self.variants))
        if self.drop_quality_tags:
            _need(header, "quality_tags", "--drop-quality-tags", "Spontaneous Speech Corpus 3.0 and later")
            present = {t for rows in clips.values() for c in rows for t in c.meta.get("quality_tags", "").split("|")}
            unknown = sorted(set(self.drop_quality_tags) - set(QUALITY_TAGS) - present)
            if unknown:
                raise ReleaseError(f"--drop-quality-tags: no row carries {', '.join(unknown)} and the release "
                                   f"documents no such tag (known: {', '.join(QUALITY_TAGS)})")
            rules.append(("quality_tags", "quality_tag", lambda v: not set(v.split("|")) & set(self.drop_quality_tags),
                          self.drop_quality_tags))
        problems: list[TsvProblem] = []
        filters = source.setdefault("filters", {})
        for column, reason, keep, wanted in rules:
            kept_n, left = 0, []
            for split, rows in clips.items():
                kept = []
                for c in rows:
                    value = c.meta.get(column, "")
                    if keep(value):
                        kept.append(c)
                    else:
                        left.append(TsvProblem(c.id, split, reason, _detail(column, value, wanted), c.path))
                clips[split] = kept
                kept_n += len(kept)
            filters[column] = {"wanted": list(wanted), "kept": kept_n, "left_out": len(left)}
            problems += left
        return problems


def _need(header: set[str], column: str, option: str, which: str) -> None:
    if column not in header:
        raise ReleaseError(f"{option}: the release's TSVs have no {column} column ({which} have it)")


def _detail(column: str, value: str, wanted: tuple[str, ...]) -> str:
    if column == "quality_tags":
        return f"quality tags {value} (--drop-quality-tags {','.join(wanted)})"
    return f"{column} {value or '(none)'!s} is not {' / '.join(wanted)}"


OPTIONS = {"sentence_domain": "--sentence-domain", "variant": "--variant", "quality_tags": "--drop-quality-tags"}


def source_lines(source: dict) -> list[str]:
    """The summary's and the dry run's lines about the release itself: the dataset when it is not
    Scripted Speech, the archive it was read from, each filter's counts, rows in no split, notes."""
    lines = []
    if source.get("dataset") == "spontaneous":
        lines.append("dataset: Common Voice Spontaneous Speech (transcript tags removed: "
                     f"{source.get('tag_rule', '')})")
    if source.get("archive"):
        passes = source.get("passes", 0)
        lines.append(f"read from the archive {source['archive']} ({passes} pass{'es' if passes != 1 else ''}, nothing "
                     "extracted)")
    for column, f in source.get("filters", {}).items():
        lines.append(f"{OPTIONS.get(column, column)} {','.join(f['wanted'])}: {f['kept']} rows kept, "
                     f"{f['left_out']} left out")
    if source.get("unassigned"):
        lines.append(f"unassigned: {source['unassigned']} rows in no split (no validated transcription): "
                     "counted, not used")
    lines += [n if n.startswith("WARNING") else f"note: {n}" for n in source.get("notes", [])]
    return lines
