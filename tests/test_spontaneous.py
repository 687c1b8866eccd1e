"""Common Voice Spontaneous Speech (sps-corpus-5.0-*-fr, built here from the synthetic clips): shards from
its folder and from its archive alike; train / dev / test follow the `split` column and `unassigned`
rows are counted, never trained on; no tag reaches a transcript the model learns (the raw one stays
the index's `sentence`); reported audios and dropped quality tags are rejects with their reason;
long answers are kept under --max-duration, the rest rejected as too_long; speakers stay apart."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from cli import app
from conftest import LANG, espeak_clip
from pipeline import archive_build
from pipeline.build import BuildConfig, build, dry_run, format_summary
from pipeline.cv import ReleaseError
from pipeline.estimate import format_dry_run
from pipeline.selection import Selection
from pipeline.shardformat import read_index, read_rejects
from pipeline.spontaneous import strip_tags

FOLDER = f"sps-corpus-5.0-2026-09-11-{LANG}"
COLUMNS = ["client_id", "audio_id", "audio_file", "duration_ms", "prompt_id", "prompt", "transcription", "votes", "age",
           "gender", "accents", "variant", "language", "prompt_upvotes", "prompt_reports", "is_edited", "split",
           "char_per_sec", "quality_tags"]
TAGS = ["[disfluency] {}", "{} [noise]", "{}", "euh [disfluency] {} [laugh]"]
QUALITY = ["", "short-audio", "speech-rate|transcription-length", "", "dataset-language-audio-mismatch"]
LONG = {"spontaneous-speech-fr-900.mp3": 30, "spontaneous-speech-fr-901.mp3": 75}  # seconds of two long answers


def rows(path: Path) -> list[dict]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [dict(zip(lines[0].split("\t"), line.split("\t"))) for line in lines[1:] if line.strip()]


def write(path: Path, header: list[str], records: list[dict]) -> None:
    path.write_text("".join("\t".join(str(r.get(c, "")) for c in header) + "\n"
                            for r in [dict(zip(header, header)), *records]), encoding="utf-8")


@pytest.fixture(scope="module")
def sps_root(synth_root, tmp_path_factory) -> Path:
    """<root>/sps-corpus-5.0-2026-09-11-fr/: the synthetic clips as answers, split as the synthetic
    release splits them (its extra validated clips unassigned), tags in the transcriptions, quality
    tags, one reported answer, two long answers (30 s and 75 s, train)."""
    src = synth_root / LANG
    root = tmp_path_factory.mktemp("sps")
    folder = root / FOLDER
    (folder / "audios").mkdir(parents=True)
    split_of = {r["path"]: s for s in ("train", "dev", "test") for r in rows(src / f"{s}.tsv")}
    durations = {r["clip"]: r["duration[ms]"] for r in rows(src / "clip_durations.tsv")}
    records = []
    for i, r in enumerate(rows(src / "validated.tsv")):
        name = f"spontaneous-speech-{LANG}-{i + 1}.mp3"
        shutil.copy(src / "clips" / r["path"], folder / "audios" / name)
        records.append({"client_id": r["client_id"], "audio_id": i + 1, "audio_file": name,
                        "duration_ms": durations[r["path"]], "prompt_id": i % 7, "prompt": "Que faites-vous le matin ?",
                        "transcription": TAGS[i % len(TAGS)].format(r["sentence"]), "votes": 2, "age": r["age"],
                        "gender": r["gender"], "language": "French", "split": split_of.get(r["path"], "unassigned"),
                        "quality_tags": QUALITY[i % len(QUALITY)]})
    speaker = next(r["client_id"] for r in records if r["split"] == "train")
    for name, seconds in LONG.items():
        voice = espeak_clip("Alors je vous raconte ma journée, c'est assez long.", 16000)
        sf.write(folder / "audios" / name, np.tile(voice, int(seconds * 16000 / len(voice)) + 1)[: seconds * 16000],
                 16000, format="MP3")
        records.append({"client_id": speaker, "audio_file": name, "duration_ms": seconds * 1000, "split": "train",
                        "transcription": "alors je vous raconte [disfluency] ma journée", "quality_tags": "long-audio"})
    reported = next(r for r in records if r["split"] == "train" and not r["quality_tags"])
    write(folder / f"ss-corpus-{LANG}.tsv", COLUMNS, records)
    write(folder / f"ss-reported-audios-{LANG}.tsv", ["client_id", "audio_id", "audio_file", "duration_ms", "prompt_id",
                                                      "prompt", "reason", "comment", "language"],
          [{**reported, "reason": "offensive_speech", "comment": ""}])
    (folder / "README.md").write_text("# Spontaneous Speech 5.0: French (test corpus)\n")
    return root


def sps_archive(folder: Path, dest: Path) -> Path:
    with tarfile.open(dest, "w:gz") as tar:
        for p in sorted(folder.rglob("*")):
            tar.add(p, arcname=f"{FOLDER}/{p.relative_to(folder).as_posix()}", recursive=False)
    return dest


def cfg(source: Path, out: Path, **kw) -> BuildConfig:
    return BuildConfig(cv_root=source, lang=LANG, out=out, jobs=2, shard_size=8, progress=False, **kw)


def test_strip_tags():
    assert strip_tags("euh [disfluency] je pense [noise] que oui [laugh]") == "euh je pense que oui"
    assert strip_tags("[noise]") == "" and strip_tags("un [ crochet seul") == "un [ crochet seul"


def test_spontaneous_speech_builds_by_its_split_column_from_the_folder_and_the_archive(sps_root, tmp_path):
    folder = sps_root / FOLDER
    tsv = {r["audio_file"][:-4].replace(".", "_"): r for r in rows(folder / f"ss-corpus-{LANG}.tsv")}
    summary = build(cfg(sps_root, tmp_path / "folder", max_duration=60.0))
    index, rejects = read_index(tmp_path / "folder"), read_rejects(tmp_path / "folder")
    assert len(index) + len(rejects) == len(tsv)  # rows = kept + rejected
    for r in index:  # train / dev / test as the split column says
        assert r["split"] == tsv[r["id"]]["split"]
        assert r["sentence"] == tsv[r["id"]]["transcription"]  # the raw transcript, tags and all
        assert "[" not in r["text"] and "]" not in r["text"]
        assert not {"disfluency", "noise", "laugh"} & set(r["text"].split())
    assert any("[disfluency]" in r["sentence"] for r in index)
    assert {r["split"] for r in index} == {"train", "dev", "test"}
    why = {r["id"]: (r["reason"], r["split"], r["detail"]) for r in rejects}
    unassigned = [i for i, r in tsv.items() if r["split"] == "unassigned"]
    assert unassigned and all(why[i][:2] == ("unassigned", "unassigned") for i in unassigned)
    assert not set(unassigned) & {r["id"] for r in index}
    assert f"unassigned: {len(unassigned)} rows in no split (no validated transcription): counted, not used" in \
        format_summary(summary)
    reported = [i for i, (reason, _, detail) in why.items() if reason == "reported"]
    assert len(reported) == 1 and "offensive_speech" in why[reported[0]][2]
    assert why["spontaneous-speech-fr-901"][0] == "too_long" and "spontaneous-speech-fr-900" in {r["id"] for r in index}
    assert summary["source"]["dataset"] == "spontaneous" and "dataset: Common Voice Spontaneous Speech" in \
        format_summary(summary)

    archived = archive_build.build(cfg(sps_archive(folder, tmp_path / f"{FOLDER}.tar.gz"), tmp_path / "archive",
                                       max_duration=60.0))
    assert read_index(tmp_path / "archive") == index
    for split in ("train", "dev", "test"):
        assert [s["sha256"] for s in archived["splits"][split]["shards"]] == \
            [s["sha256"] for s in summary["splits"][split]["shards"]]

    short = dry_run(cfg(sps_root, tmp_path / "default"))  # the default bound, 20 s: both long answers rejected
    assert short["rejects"]["too_long"] == 2 and summary["rejects"]["too_long"] == 1


def test_quality_tags_filter_and_speaker_separation(sps_root, tmp_path):
    folder = sps_root / FOLDER
    tsv = rows(folder / f"ss-corpus-{LANG}.tsv")
    dropping = Selection.parse(drop_quality_tags="short-audio,speech-rate")
    report = dry_run(cfg(sps_root, tmp_path / "o", selection=dropping))
    tagged = [r for r in tsv if {"short-audio", "speech-rate"} & set(r["quality_tags"].split("|"))
              and r["split"] != "unassigned"]
    assert report["rejects"]["quality_tag"] == len(tagged) > 0
    assert "--drop-quality-tags short-audio,speech-rate: " in format_dry_run(report)
    with pytest.raises(ReleaseError, match="no row carries speech-speed"):
        dry_run(cfg(sps_root, tmp_path / "o", selection=Selection.parse(drop_quality_tags="speech-speed")))

    # a dev speaker's answer in the train split leaves train, as in Scripted Speech
    leaky = tmp_path / "leaky" / FOLDER
    shutil.copytree(folder, leaky)
    dev_speaker = next(r["client_id"] for r in tsv if r["split"] == "dev")
    moved = next(r for r in tsv if r["split"] == "train" and r["quality_tags"] and r["audio_file"] not in LONG)
    changed = [{**r, "client_id": dev_speaker} if r is moved else r for r in tsv]
    write(leaky / f"ss-corpus-{LANG}.tsv", COLUMNS, changed)
    report = dry_run(cfg(leaky, tmp_path / "o"))  # --cv-root the sps-corpus folder itself
    assert report["rejects"]["speaker_in_eval_split"] == 1

    # without client_id the summary says what cannot be checked
    write(leaky / f"ss-corpus-{LANG}.tsv", [c for c in COLUMNS if c != "client_id"], tsv)
    text = format_dry_run(dry_run(cfg(leaky.parent, tmp_path / "o")))
    assert "WARNING: speaker separation cannot be checked: the TSVs have no client_id column" in text


def test_the_shards_command_reads_a_spontaneous_folder_and_refuses_train_set_validated(sps_root, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["shards", "--cv-root", str(sps_root), "--lang", LANG, "--out", str(tmp_path / "o"),
                                 "--max-duration", "60", "--dry-run", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "dataset: Common Voice Spontaneous Speech (transcript tags removed: every [...] span" in result.output
    assert "unassigned:" in result.output
    result = runner.invoke(app, ["shards", "--cv-root", str(sps_root), "--lang", LANG, "--out", str(tmp_path / "o"),
                                 "--train-set", "validated", "--no-progress"])
    assert result.exit_code == 1 and "--train-set validated is Scripted Speech's" in result.output
