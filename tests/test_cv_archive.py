"""Scripted Speech Corpus 25.0 read from its .tar.gz, nothing extracted: the same shards as from the folder.

The corpora are the synthetic clips laid out as Corpus 25.0 releases of five languages in three
scripts (fr, de: Latin; ar, fa: Arabic; zh-CN: Chinese), their TSV text written in those scripts
(punctuation, digits, tatweel, zero-width non-joiners, full-width marks), with 25.0's files
(validated_sentences.tsv with `variant`, unvalidated_sentences.tsv, clip_durations.tsv, README.md).
Each builds from its folder and from its archive with >= 97 % of the rows kept, rows = kept +
rejected, and the two builds agree row for row and byte for byte. Also: one pass when the TSVs
come first, two otherwise; the dry run streams headers; the disk an archive build takes is that of
its shards (plus one shard group), never the extracted release; a killed archive build resumes
from its staged results; --sentence-domain / --variant are counted in the dry run and the summary.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cli import app
from conftest import LANG, ROOT
from pipeline import archive_build
from pipeline import estimate as E
from pipeline.build import BuildConfig, build, dry_run, format_summary
from pipeline.selection import Selection
from pipeline.shardformat import read_index, read_rejects
from pipeline.text import get_normalizer

TOP = "cv-corpus-25.0-2026-03-09"
COLUMNS = ["client_id", "path", "sentence_id", "sentence", "sentence_domain", "up_votes", "down_votes", "age",
           "gender", "accents", "variant", "locale", "segment"]
WORDS = {
    "de": "Straße Größe Bäcker schön über Mädchen Fußball heute morgen Haus Hund Katze grün Wasser Brücke Äpfel".split(),
    "ar": "مرحبا العالم كتاب مدرسة الطقس جميل اليوم بيت شمس قمر ماء سماء كِتَابٌ جـميل".split(),
    "fa": "من خانه می‌روم کتاب آسمان آبی است دوست دارم شهر بزرگ زیبا".split(),
    "zh-CN": list("今天天气很好我们去公园学习中文朋友喜欢吃饭喝茶看书写字唱歌"),
}
PUNCT = {"de": [",", ".", "!", "?"], "ar": ["،", "؟", ".", "!"], "fa": ["،", "؟", "."], "zh-CN": ["，", "。", "？"]}
EXTRA = {"de": ["3", "„", "“"], "ar": ["٣", "«", "»"], "fa": ["۱۲"], "zh-CN": ["“", "”"]}
DOMAINS = ["general", "health", "general,finance", ""]
VARIANTS = {"fr": ["fr-FR", "fr-CA"], "de": ["de-DE", "de-AT"], "ar": ["", "ar-EG"], "fa": [""], "zh-CN": [""]}


def sentence(lang: str, i: int) -> str:
    """The i-th sentence of `lang`: a few words, punctuation of its script, now and then a digit
    or quotes; each one distinct (the split rules leave out train sentences read in dev or test)."""
    rng = np.random.default_rng([i, len(lang), ord(lang[0])])
    words = WORDS[lang]
    picked = [words[j] for j in rng.choice(len(words), size=int(rng.integers(2, 5)), replace=False)]
    if i % 5 == 0:
        picked.insert(1, EXTRA[lang][(i // 5) % len(EXTRA[lang])])
    picked.append(words[i % len(words)] + words[(i // len(words)) % len(words)])  # distinct per i
    sep = "" if lang == "zh-CN" else " "
    end = PUNCT[lang][1 + i % (len(PUNCT[lang]) - 1)]
    return sep.join(picked[:2]) + PUNCT[lang][0] + sep + sep.join(picked[2:]) + end


def read_rows(path: Path) -> list[dict]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [dict(zip(lines[0].split("\t"), line.split("\t"))) for line in lines[1:] if line.strip()]


def write_rows(path: Path, header: list[str], rows: list[dict]) -> None:
    path.write_text("".join("\t".join(r.get(c, "") for c in header) + "\n" for r in [dict(zip(header, header)), *rows]),
                    encoding="utf-8")


def corpus25(synth_root: Path, dest: Path, lang: str) -> Path:
    """The synthetic clips as a Corpus 25.0 release of `lang`: <dest>/<TOP>/<lang>/ (returns <dest>/<TOP>)."""
    src, out = synth_root / LANG, dest / TOP / lang
    (out / "clips").mkdir(parents=True)
    names, text = {}, {}
    for i, row in enumerate(read_rows(src / "validated.tsv")):
        names[row["path"]] = f"common_voice_{lang}_{1000 + i}.mp3"
        text[row["path"]] = row["sentence"] if lang == "fr" else sentence(lang, i)
        shutil.copy(src / "clips" / row["path"], out / "clips" / names[row["path"]])

    def convert(row: dict, i: int) -> dict:
        s = text[row["path"]]
        return {**row, "path": names[row["path"]], "sentence": s, "locale": lang,
                "sentence_id": hashlib.sha256(s.encode()).hexdigest(), "sentence_domain": DOMAINS[i % len(DOMAINS)],
                "variant": VARIANTS[lang][i % len(VARIANTS[lang])]}

    for name in ("train", "dev", "test", "validated"):
        write_rows(out / f"{name}.tsv", COLUMNS, [convert(r, i) for i, r in enumerate(read_rows(src / f"{name}.tsv"))])
    for name in ("invalidated", "other", "reported"):
        write_rows(out / f"{name}.tsv", COLUMNS if name != "reported" else ["sentence_id", "sentence", "locale",
                                                                             "reason"], [])
    write_rows(out / "clip_durations.tsv", ["clip", "duration[ms]"],
               [{"clip": names[r["clip"]], "duration[ms]": r["duration[ms]"]}
                for r in read_rows(src / "clip_durations.tsv")])
    validated = [convert(r, i) for i, r in enumerate(read_rows(src / "validated.tsv"))]
    write_rows(out / "validated_sentences.tsv", ["sentence_id", "sentence", "variant", "sentence_domain", "source",
                                                 "is_used", "clips_count"],
               [{**r, "source": "synthetic", "is_used": "1", "clips_count": "1"} for r in validated])
    write_rows(out / "unvalidated_sentences.tsv", ["sentence_id", "sentence", "variant", "sentence_domain", "source",
                                                   "up_votes", "down_votes", "status"], [])
    (out / "README.md").write_text(f"# Common Voice Scripted Speech 25.0: {lang}\n(test corpus)\n")
    return dest / TOP


def tar_gz(release: Path, dest: Path, tsv_first: bool) -> Path:
    """`release` (<...>/<TOP>) as <dest>, members in a chosen order: the TSVs before the clips or after."""
    files = sorted(p for p in release.rglob("*") if p.is_file())
    clips = [p for p in files if p.parent.name == "clips"]
    rest = [p for p in files if p.parent.name != "clips"]
    with tarfile.open(dest, "w:gz") as tar:
        for p in (rest + clips if tsv_first else clips + rest):
            tar.add(p, arcname=f"{TOP}/{p.relative_to(release).as_posix()}")
    return dest


@pytest.fixture(scope="module")
def corpora(synth_root, tmp_path_factory) -> dict:
    """lang -> (release folder root, archive) of the five languages; fr, ar and zh-CN archives list
    their TSVs first, de and fa their clips first."""
    base = tmp_path_factory.mktemp("cv25")
    out = {}
    for lang in ("fr", "de", "ar", "fa", "zh-CN"):
        folder = corpus25(synth_root, base / lang, lang)
        out[lang] = (folder, tar_gz(folder, base / f"{TOP}-{lang}.tar.gz", tsv_first=lang in ("fr", "ar", "zh-CN")))
    return out


def cfg(source: Path, lang: str, out: Path, **kw) -> BuildConfig:
    return BuildConfig(cv_root=source, lang=lang, out=out, jobs=2, shard_size=8, progress=False, **kw)


def tsv_rows(folder: Path, lang: str) -> int:
    return sum(len(read_rows(folder / lang / f"{s}.tsv")) for s in ("train", "dev", "test"))


def test_five_languages_in_three_scripts_build_alike_from_the_folder_and_the_archive(corpora, tmp_path):
    for lang, (folder, archive) in corpora.items():
        from_folder = build(cfg(folder, lang, tmp_path / lang / "folder"))
        from_archive = archive_build.build(cfg(archive, lang, tmp_path / lang / "archive"))
        index, rejects = read_index(tmp_path / lang / "folder"), read_rejects(tmp_path / lang / "folder")
        rows = tsv_rows(folder, lang)
        assert len(index) + len(rejects) == rows, lang  # rows = kept + rejected
        assert len(index) >= 0.97 * rows, (lang, len(index), rows, [(r["reason"], r["detail"]) for r in rejects])
        assert read_index(tmp_path / lang / "archive") == index, lang  # row for row
        assert [(r["id"], r["reason"]) for r in read_rejects(tmp_path / lang / "archive")] == \
            [(r["id"], r["reason"]) for r in rejects]
        a, b = from_folder["splits"], from_archive["splits"]
        for split in ("train", "dev", "test"):  # byte for byte: the tars' sha256
            assert [s["sha256"] for s in a[split]["shards"]] == [s["sha256"] for s in b[split]["shards"]], (lang, split)
        assert from_folder["cmvn"] == from_archive["cmvn"] and from_folder["vocab"] == from_archive["vocab"]
        assert from_archive["source"]["passes"] == (1 if lang in ("fr", "ar", "zh-CN") else 2), lang
        assert "nothing extracted" in format_summary(from_archive)
        texts = [r["text"] for r in index]
        norm = get_normalizer(lang)
        assert all(t == norm.normalize(t) and t.strip() == t for t in texts), lang  # normalised, idempotent
        if lang in ("ar", "fa"):
            assert all("\u0640" not in t and "،" not in t and "؟" not in t for t in texts)
            assert any(("ثلاثة" if lang == "ar" else "دوازده") in t for t in texts)  # the digits, spelt
        if lang == "zh-CN":
            assert all(not set(t) & set("，。？“”") for t in texts)
    assert not list(tmp_path.rglob("*.mp3")), "an archive build extracted audio"


@pytest.mark.parametrize("lang, raw, expected", [
    ("ar", "مرحبا بالعـــالم، كيف حالك؟", "مرحبا بالعالم كيف حالك"),  # tatweel dropped, Arabic punctuation a space
    ("ar", "لدي ٣ كتب.", "لدي ثلاثة كتب"),  # Arabic-Indic digits spelt
    ("ar", "كِتَابٌ جميل!", "كِتَابٌ جميل"),  # harakat (combining marks) kept
    ("fa", "من می\u200cروم؟", "من میروم"),  # the zero-width non-joiner is formatting: dropped
    ("fa", "۱۲ کتاب", "دوازده کتاب"),
    ("zh-CN", "“今天天气很好，我们去公园。”", "今天天气很好 我们去公园"),  # full-width marks
    ("de", "„Größe“ und 3 Äpfel!", "größe und drei äpfel"),
])
def test_the_normaliser_reads_latin_arabic_and_chinese_script(lang, raw, expected):
    assert get_normalizer(lang).normalize(raw) == expected
    assert get_normalizer(lang).version == "generic-3"


def test_the_archive_dry_run_reads_headers_streaming_and_counts_no_extraction(corpora, synth_root, tmp_path,
                                                                              monkeypatch):
    folder, _ = corpora["de"]
    bare = tmp_path / "bare"  # no clip_durations.tsv: every duration comes from an audio header
    shutil.copytree(folder, bare / TOP)
    (bare / TOP / "de" / "clip_durations.tsv").unlink()
    archive = tar_gz(bare / TOP, tmp_path / "bare.tar.gz", tsv_first=False)
    from_folder = dry_run(cfg(bare / TOP, "de", tmp_path / "o1"))
    from_archive = archive_build.dry_run(cfg(archive, "de", tmp_path / "o2"))
    assert from_archive["splits"] == from_folder["splits"] and from_archive["rejects"] == from_folder["rejects"]
    assert from_archive["splits"]["train"]["hours"] > 0
    # what the build needs: the shards and their metadata, plus one shard (group) staged; no extracted audio
    assert from_archive["needed_bytes"] == from_folder["needed_bytes"] + max(from_archive["shard_bytes"].values())
    assert not (tmp_path / "o2").exists()

    # the build runs in just the free space the check asks for, and its out folder never holds more
    need = archive_build.dry_run(cfg(archive, "de", tmp_path / "o3"))["needed_bytes"]
    monkeypatch.setattr(E, "free_bytes", lambda path: (need, Path(path)))
    peak = []
    finish = archive_build._Run.finish

    def measured(self, gi):
        finish(self, gi)
        peak.append(sum(p.stat().st_size for p in (tmp_path / "o3").rglob("*") if p.is_file()))

    monkeypatch.setattr(archive_build._Run, "finish", measured)
    archive_build.build(cfg(archive, "de", tmp_path / "o3"))
    assert max(peak) <= need
    monkeypatch.setattr(E, "free_bytes", lambda path: (need - 1, Path(path)))
    with pytest.raises(E.DiskSpaceError):
        archive_build.build(cfg(archive, "de", tmp_path / "o4"))


_KILLED = """
import os, sys
sys.path.insert(0, {root!r})
from pathlib import Path
from pipeline import archive_build as A
from pipeline.build import BuildConfig
real, seen = A._Run.handle, []
def dying(self, *args):
    real(self, *args)
    seen.append(1)
    if len(seen) == {die_at}:
        os._exit(137)
A._Run.handle = dying
A.build(BuildConfig(cv_root=Path({archive!r}), lang="fr", out=Path({out!r}), jobs=1, shard_size=8, progress=False))
"""


def test_a_killed_archive_build_resumes_from_its_staged_results(corpora, tmp_path, monkeypatch):
    folder, archive = corpora["fr"]
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-c", _KILLED.format(root=str(ROOT), archive=str(archive), out=str(out),
                                                                die_at=20)], capture_output=True, text=True)
    assert proc.returncode == 137, proc.stderr[-2000:]
    staged = list((out / ".parts" / "archive").glob("*.stage"))
    assert staged and not (out / "dataset.json").exists()
    whole = archive_build.build(cfg(archive, "fr", tmp_path / "whole"))
    decoded = []
    real = archive_build.extract_encoded
    monkeypatch.setattr(archive_build, "extract_encoded", lambda task: decoded.append(1) or real(task))
    summary = archive_build.build(BuildConfig(cv_root=archive, lang="fr", out=out, jobs=1, shard_size=8,
                                              progress=False))
    assert len(decoded) == whole["splits"]["train"]["utterances"] + sum(
        whole["splits"][s]["utterances"] for s in ("dev", "test")) - 20  # the 20 staged before the kill: not again
    assert read_index(out) == read_index(tmp_path / "whole")
    assert [s["sha256"] for s in summary["splits"]["train"]["shards"]] == \
        [s["sha256"] for s in whole["splits"]["train"]["shards"]]
    assert not (out / ".parts" / "archive").exists()


def test_sentence_domain_and_variant_filters_are_counted_in_the_dry_run_and_the_summary(corpora, tmp_path):
    folder, archive = corpora["fr"]
    runner = CliRunner()
    result = runner.invoke(app, ["shards", "--cv-archive", str(archive), "--lang", "fr", "--out", str(tmp_path / "o"),
                                 "--variant", "fr-CA", "--sentence-domain", "health,finance", "--dry-run",
                                 "--no-progress"])
    assert result.exit_code == 0, result.output
    rows = [r for s in ("train", "dev", "test") for r in read_rows(folder / "fr" / f"{s}.tsv")]
    domain = [r for r in rows if {"health", "finance"} & set(r["sentence_domain"].split(","))]
    both = [r for r in domain if r["variant"] == "fr-CA"]
    left = len(rows) - len(domain)
    assert f"--sentence-domain finance,health: {len(domain)} rows kept, {left} left out" in result.output
    assert f"--variant fr-CA: {len(both)} rows kept, {len(domain) - len(both)} left out" in result.output
    assert f"sentence_domain_filter {len(rows) - len(domain)}" in result.output
    summary = build(cfg(folder, "fr", tmp_path / "b", selection=Selection.parse(variant="fr-FR")))
    kept = {r["id"] for r in read_index(tmp_path / "b")}
    assert kept and all(r["variant"] == "fr-FR" for r in rows if r["path"][:-4] in kept)
    assert summary["source"]["filters"]["variant"]["left_out"] == summary["rejects"]["variant_filter"]
    assert "--variant fr-FR:" in format_summary(summary)
    result = runner.invoke(app, ["shards", "--cv-archive", str(archive), "--lang", "fr", "--out", str(tmp_path / "q"),
                                 "--drop-quality-tags", "short-audio", "--no-progress"])
    assert result.exit_code == 1 and "the release's TSVs have no quality_tags column" in result.output


def test_an_archive_of_another_language_or_a_broken_one_is_one_line(corpora, tmp_path):
    _, archive = corpora["de"]
    runner = CliRunner()
    result = runner.invoke(app, ["shards", "--cv-archive", str(archive), "--lang", "it", "--out", str(tmp_path / "o"),
                                 "--no-progress"])
    assert result.exit_code == 1 and "holds no Common Voice release of 'it' (it holds de)" in result.output
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    result = runner.invoke(app, ["shards", "--cv-archive", str(cut), "--lang", "de", "--out", str(tmp_path / "o"),
                                 "--no-progress"])
    assert result.exit_code == 1 and "ends early or is corrupt" in result.output and "Traceback" not in result.output
