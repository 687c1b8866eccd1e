"""Honest training sets from validated.tsv (no dev/test speaker or sentence in train, the speaker
cap) and the disk before the build (--dry-run's estimate, the space check, bytes per hour)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from conftest import LANG, ROOT, one_line, tsv_row
from pipeline import estimate as E
from pipeline.build import BuildConfig, build, dry_run, format_summary
from pipeline.cv import SpeakerCap, open_release, read_tsv
from pipeline.estimate import DiskSpaceError, format_dry_run
from pipeline.shardformat import read_dataset, read_index, read_rejects

# What the hand-added validated rows of `leaky_root` test: clip -> reason it is left out of train (None: kept)
LEAKS = {
    "common_voice_fr_leak_dev_speaker": "speaker_in_eval_split",  # a dev speaker, a fresh sentence
    "common_voice_fr_leak_both": "speaker_in_eval_split",  # a dev speaker reading a dev sentence: speaker first
    "common_voice_fr_leak_sentence": "sentence_in_eval_split",  # a train speaker reading a dev sentence
    "common_voice_fr_leak_no_speaker": None,  # an empty client_id is no dev speaker
}


def rows(lang: Path, name: str) -> list[dict]:
    lines = (lang / name).read_text().splitlines()
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"))) for line in lines[1:] if line.strip()]


@pytest.fixture(scope="module")
def leaky_root(synth_root, tmp_path_factory) -> Path:
    """The synthetic release (whose validated.tsv already holds a clip of a dev/test speaker in no
    split) plus validated rows of a dev speaker, a dev sentence and an empty client_id, and a
    dev speaker's clip listed in train.tsv."""
    root = tmp_path_factory.mktemp("cv-leaky")
    shutil.copytree(synth_root / LANG, root / LANG)
    lang = root / LANG
    dev = rows(lang, "dev.tsv")
    train = rows(lang, "train.tsv")
    audio = sorted((lang / "clips").glob("*.mp3"))[0].read_bytes()
    added = {
        "common_voice_fr_leak_dev_speaker": (dev[0]["client_id"], "Une phrase que personne ne lit ailleurs."),
        "common_voice_fr_leak_both": (dev[0]["client_id"], dev[1]["sentence"]),
        "common_voice_fr_leak_sentence": (train[0]["client_id"], dev[0]["sentence"].upper()),
        "common_voice_fr_leak_no_speaker": ("", "Une autre phrase sans lecteur connu."),
    }
    with open(lang / "validated.tsv", "a") as f:
        for cid, (client, sentence) in added.items():
            (lang / "clips" / f"{cid}.mp3").write_bytes(audio)
            f.write(tsv_row(f"{cid}.mp3", sentence, client) + "\n")
    (lang / "clips" / "common_voice_fr_leak_in_train_tsv.mp3").write_bytes(audio)
    with open(lang / "train.tsv", "a") as f:  # the rule holds whichever TSV train is read from
        f.write(tsv_row("common_voice_fr_leak_in_train_tsv.mp3", "Encore une phrase nouvelle.",
                        dev[0]["client_id"]) + "\n")
    return root


def speakers(release, *splits) -> set[str]:
    return {c.meta["client_id"] for s in splits for c in release.clips[s]}


def test_no_dev_or_test_speaker_or_sentence_reaches_train(leaky_root):
    lang = leaky_root / LANG
    for train_set in ("validated", "train"):
        release = open_release(leaky_root, LANG, train_set)
        eval_speakers = speakers(release, "dev", "test") - {""}
        assert eval_speakers and not speakers(release, "train") & eval_speakers, train_set
        reasons = {p.id: p.reason for p in release.problems}
        if train_set == "train":
            assert reasons["common_voice_fr_leak_in_train_tsv"] == "speaker_in_eval_split"
        # rows = kept + rejected: every row of the TSV is a train clip, a dev/test clip (validated
        # lists them all) or a reject with its reason
        tsv = read_tsv(lang / ("validated.tsv" if train_set == "validated" else "train.tsv"), "train",
                       lang / "clips")[0]
        kept = {c.id for s in ("train", "dev", "test") for c in release.clips[s]}
        assert {c.id for c in tsv} <= kept | set(reasons)
        assert not {c.id for c in release.clips["train"]} & set(reasons)
    release = open_release(leaky_root, LANG, "validated")
    reasons = {p.id: p.reason for p in release.problems}
    train = {c.id for c in release.clips["train"]}
    for cid, reason in LEAKS.items():
        assert (reasons.get(cid), cid in train) == (reason, reason is None), cid
    # the synthetic corpus itself exercises the rule: a dev/test speaker's clip in no split
    synth_extra = [p for p in release.problems if p.reason == "speaker_in_eval_split" and "leak" not in p.id]
    assert synth_extra


def test_validated_build_keeps_speakers_apart_and_reports_the_hours(leaky_root, tmp_path):
    out = tmp_path / "shards"
    summary = build(BuildConfig(cv_root=leaky_root, lang=LANG, out=out, jobs=1, shard_size=8, progress=False,
                                train_set="validated", max_duration=15.0))
    index, rejects = read_index(out), read_rejects(out)
    eval_speakers = {r["client_id"] for r in index if r["split"] != "train"}
    assert not {r["client_id"] for r in index if r["split"] == "train"} & eval_speakers
    validated = {c.id for c in read_tsv(leaky_root / LANG / "validated.tsv", "train", leaky_root / LANG / "clips")[0]}
    accounted = {r["id"] for r in index} | {r["id"] for r in rejects}
    assert validated <= accounted and len(index) + len(rejects) == len(accounted)  # nobody twice
    selection = read_dataset(out)["train_selection"]
    left = selection["left_out"]
    by_reason = Counter(r["reason"] for r in rejects if r["split"] == "train")
    assert left["speaker_in_eval_split"]["clips"] == by_reason["speaker_in_eval_split"] >= 3
    assert left["sentence_in_eval_split"]["clips"] == by_reason["sentence_in_eval_split"] >= 1
    assert 0 < left["speaker_in_eval_split"]["hours"] < 0.01
    official = {c.id for c in read_tsv(leaky_root / LANG / "train.tsv", "train", leaky_root / LANG / "clips")[0]}
    gained = sum(r["duration"] for r in index if r["split"] == "train" and r["id"] not in official) / 3600
    assert gained > 0 and selection["hours_gained_over_train_tsv"] == pytest.approx(gained, abs=1e-4)
    text = format_summary(summary)
    assert "left out of train: speaker_in_eval_split" in text and "more than the clips train.tsv lists" in text


# --------------------------------------------------------------------------------------
# --max-per-speaker
# --------------------------------------------------------------------------------------
def cap_release(tmp_path: Path, reverse: bool = False) -> Path:
    """No audio needed to cap: speaker `a` reads 6 train clips (sentence A four times, then B and
    C), `b` 2; dev speaker `d` reads 6 dev clips. clip_durations.tsv gives each 60 s."""
    lang = tmp_path / "fr"
    (lang / "clips").mkdir(parents=True)
    header = "client_id\tpath\tsentence"
    train = [("a", f"a{i}", "Phrase alpha.") for i in range(4)] + [("a", "a4", "Phrase beta."),
                                                                   ("a", "a5", "Phrase gamma."),
                                                                   ("b", "b0", "Phrase alpha."),
                                                                   ("b", "b1", "Phrase delta.")]
    dev = [("d", f"d{i}", f"Phrase de dev {i}.") for i in "abcdef"]
    for name, items in (("train", train), ("dev", dev), ("test", [("t", "t0", "Phrase de test.")])):
        items = items[::-1] if reverse else items
        (lang / f"{name}.tsv").write_text(header + "\n" + "".join(f"{c}\t{p}.mp3\t{s}\n" for c, p, s in items))
    for _, p, _ in train + dev + [("t", "t0", "")]:
        (lang / "clips" / f"{p}.mp3").write_bytes(b"not decoded")
    (lang / "clip_durations.tsv").write_text("clip\tduration[ms]\n" + "".join(
        f"{p}.mp3\t60000\n" for _, p, _ in train + dev))
    return tmp_path


def kept(release, split: str = "train") -> list[str]:
    return sorted(c.id for c in release.clips[split])


def test_speaker_cap_is_deterministic_sentence_diverse_and_train_only(tmp_path):
    root = cap_release(tmp_path / "fwd")
    release = open_release(root, "fr", "train", SpeakerCap.parse("3"))
    train = kept(release)
    # a keeps one reading of alpha (which b reads too: alpha is the most copied) and beta and gamma
    assert [c for c in train if c.startswith("a")][1:] == ["a4", "a5"] and len(train) == 3 + 2
    capped = [p for p in release.problems if p.reason == "speaker_cap"]
    assert len(capped) == 3 and all("--max-per-speaker 3 clips" in p.detail for p in capped)
    assert kept(release, "dev") == [f"d{i}" for i in "abcdef"]  # dev and test are never capped
    assert kept(open_release(cap_release(tmp_path / "rev", reverse=True), "fr", "train", SpeakerCap(clips=3))) == train
    # hours: 2.5 min of audio at 60 s a clip is two clips
    release = open_release(root, "fr", "train", SpeakerCap.parse("2.5m"))
    assert Counter(c.meta["client_id"] for c in release.clips["train"]) == {"a": 2, "b": 2}
    assert SpeakerCap.parse("2h") == SpeakerCap(seconds=7200) and SpeakerCap.parse("90m").seconds == 5400
    assert SpeakerCap.parse(None) is None and SpeakerCap.parse(" ") is None


@pytest.mark.parametrize("value", ["0", "-3", "2x", "1.5", "h", "0h", "nanh"])
def test_bad_speaker_caps_are_one_line_errors(value):
    with pytest.raises(ValueError, match="--max-per-speaker") as e:
        SpeakerCap.parse(value)
    assert "\n" not in str(e.value)


def test_bad_speaker_cap_on_the_command_line(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "cli.py"), "shards", "--cv-root", str(tmp_path), "--out",
                           str(tmp_path / "out"), "--max-per-speaker", "2x", "--dry-run"],
                          capture_output=True, text=True, timeout=120)
    one_line(proc, "--max-per-speaker", "'2x'", "2h")


# --------------------------------------------------------------------------------------
# the disk: dry run, space check, bytes per hour
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("speeds,cap", [((), None), ((0.9, 1.1), "5")])
def test_dry_run_counts_the_builds_clips_and_estimates_its_bytes(leaky_root, tmp_path, speeds, cap):
    cfg = BuildConfig(cv_root=leaky_root, lang=LANG, out=tmp_path / "shards", jobs=2, shard_size=8, progress=False,
                      train_set="validated", max_duration=15.0, speeds=speeds,
                      max_per_speaker=SpeakerCap.parse(cap))
    report = dry_run(cfg)
    assert not cfg.out.exists()
    summary = build(cfg)
    index = read_index(cfg.out)
    for split, s in report["splits"].items():
        built = summary["splits"][split]
        originals = [r for r in index if r["split"] == split and r["speed"] == 1.0]
        assert (s["clips"], s["utterances"], s["speakers"], s["rejected"]) == \
            (len(originals), built["utterances"], built["speakers"], built["rejected"]), split
        assert s["hours"] == pytest.approx(built["hours"] - built["speed_copies"]["hours"], rel=0.02)
        assert s["bytes"] == pytest.approx(built["bytes"], rel=0.05), split
        assert built["bytes"] == sum(sh["bytes"] for sh in built["shards"])
        assert built["bytes_per_hour"] == round(built["bytes"] / built["hours"])
    shards = sum(s["bytes"] for s in summary["splits"].values())
    assert report["bytes"] - report["metadata_bytes"] == pytest.approx(shards, rel=0.05)
    on_disk = sum(p.stat().st_size for p in cfg.out.rglob("*") if p.is_file())
    assert shards < on_disk <= 1.05 * report["bytes"]  # the metadata estimate covers .parts and the tables
    if cap:
        assert report["rejects"]["speaker_cap"] == summary["rejects"]["speaker_cap"] > 0
        assert max(Counter(r["client_id"] for r in index if r["split"] == "train" and r["speed"] == 1.0).values()) <= 5
    text = format_dry_run(report)
    assert "the build fits" in text and f"free at {report['free_at']}" in text
    assert "MB/h" in format_summary(summary)


def test_dry_run_writes_nothing(leaky_root, tmp_path):
    out = tmp_path / "new" / "shards"
    proc = subprocess.run([sys.executable, str(ROOT / "cli.py"), "shards", "--cv-root", str(leaky_root), "--lang",
                           LANG, "--out", str(out), "--train-set", "validated", "--dry-run", "--speed", "0.9"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not (tmp_path / "new").exists() and list(tmp_path.iterdir()) == []
    assert "speed copies (0.9)" in proc.stdout and f"free at {tmp_path}" in proc.stdout
    assert "left out of train: speaker_in_eval_split" in proc.stdout


def test_a_build_that_would_not_fit_stops_before_writing(leaky_root, tmp_path, monkeypatch):
    out = tmp_path / "shards"
    cfg = BuildConfig(cv_root=leaky_root, lang=LANG, out=out, jobs=1, shard_size=8, progress=False)
    monkeypatch.setattr(E, "free_bytes", lambda path: (500, tmp_path))
    with pytest.raises(DiskSpaceError) as e:
        build(cfg)
    assert "\n" not in str(e.value) and "500 B free" in str(e.value) and "--no-space-check" in str(e.value)
    assert not out.exists() and list(tmp_path.iterdir()) == []
    monkeypatch.setattr(E, "free_bytes", lambda path: (10**9, tmp_path))
    build(cfg)
    # a resumed build needs nothing more for the shards it has
    monkeypatch.setattr(E, "free_bytes", lambda path: (500, tmp_path))
    assert build(cfg)["run"]["shards_built"] == 0


_LOW_DISK = """
import sys
sys.path.insert(0, {root!r})
import pipeline.estimate as E
E.free_bytes = lambda path: (500, path)
sys.argv = ["asr-cli", "shards", "--cv-root", {cv!r}, "--out", {out!r}, "--jobs", "1", "--no-progress"] + {extra!r}
from cli import app
app()
"""


def test_the_space_check_on_the_command_line(leaky_root, tmp_path):
    def run(*extra):
        script = _LOW_DISK.format(root=str(ROOT), cv=str(leaky_root), out=str(tmp_path / "out"), extra=list(extra))
        return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)

    one_line(run(), "needs about", "500 B free", "--no-space-check")
    assert not (tmp_path / "out").exists()
    proc = run("--no-space-check", "--max-duration", "15")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert read_index(tmp_path / "out")
