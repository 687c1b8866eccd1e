"""Speed perturbation, offline: `asr-cli shards --speed 0.9,1.1` adds resampled copies of the
train split as their own shards, and everything else about the folder stays as it was."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import soxr
from typer.testing import CliRunner

from asr.data.loader import LoaderConfig, ShardStream
from asr.tokens.tokenizer import CharTokenizer
from cli import app
from conftest import LANG, ROOT, as_stored, build_killed_after_tar
from pipeline.audio import FeatureConfig, log_mel
from pipeline.build import BuildConfig, build, parse_speeds
from pipeline.shardformat import (ShardSet, dataset_path, decode_features, index_path, read_dataset, read_index,
                                  read_rejects, read_samples, write_tables)
from pipeline.verify import verify

SPEEDS = (0.9, 1.1)


def shard_hashes(shards: Path) -> dict[str, str]:
    return {str(p.relative_to(shards)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(shards.glob("*/*.tar"))}


def features_by_id(shards: Path) -> dict[str, np.ndarray]:
    out = {}
    for s in ShardSet.open(shards).dataset["splits"].values():
        for shard in s["shards"]:
            for sample in read_samples([str(shards / shard["path"])]):
                out[sample["__key__"]] = decode_features(sample)
    return out


@pytest.fixture(scope="module")
def speed_dir(broken_root, tmp_path_factory) -> Path:
    """The broken corpus's shards with 0.9 and 1.1 copies, built through the CLI (factors
    given unsorted), 2 jobs, 8 clips a shard: `shards_dir` plus the copies."""
    out = tmp_path_factory.mktemp("shards-speed") / LANG
    result = CliRunner().invoke(app, ["shards", "--cv-root", str(broken_root), "--lang", LANG, "--out", str(out),
                                      "--jobs", "2", "--shard-size", "8", "--max-duration", "15",
                                      "--speed", "1.1,0.9", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "speed copies (0.9, 1.1;" in result.output
    return out


def test_copies_are_their_own_train_shards_with_ids_and_speed_column(speed_dir, shards_dir):
    dataset, plain = read_dataset(speed_dir), read_dataset(shards_dir)
    assert dataset["speed_factors"] == [0.9, 1.1] and plain["speed_factors"] == []
    rows = read_index(speed_dir)
    originals = [r for r in rows if r["speed"] == 1.0]
    assert [r["id"] for r in originals] == [r["id"] for r in read_index(shards_dir)]
    train_ids = [r["id"] for r in originals if r["split"] == "train"]
    for speed, tag in ((0.9, "sp0p9"), (1.1, "sp1p1")):
        copies = [r for r in rows if r["speed"] == speed]
        assert sorted(r["id"] for r in copies) == sorted(f"{i}_{tag}" for i in train_ids)
        assert {r["split"] for r in copies} == {"train"}
        assert all(Path(r["shard"]).name.startswith(f"train-{tag}-") for r in copies)
    train = dataset["splits"]["train"]
    assert train["utterances"] == 3 * len(train_ids)
    assert train["speed_copies"]["utterances"] == 2 * len(train_ids)
    assert len(train["shards"]) == 3 * len(plain["splits"]["train"]["shards"])
    # the originals' tars, dev and test are byte for byte those of a build without --speed
    plain_hashes = shard_hashes(shards_dir)
    assert {k: v for k, v in shard_hashes(speed_dir).items() if "-sp" not in k} == plain_hashes
    for split in ("dev", "test"):
        assert dataset["splits"][split] == plain["splits"][split]


def test_copies_last_one_over_speed_and_differ_from_the_original(speed_dir):
    rows = {r["id"]: r for r in read_index(speed_dir)}
    feats = features_by_id(speed_dir)
    for r in [r for r in rows.values() if r["speed"] != 1.0]:
        orig = rows[r["id"].rsplit("_", 1)[0]]
        assert abs(r["duration"] - orig["duration"] / r["speed"]) < 0.002, r["id"]
        assert abs(r["frames"] - (orig["frames"] - 1) / r["speed"] - 1) <= 2, r["id"]
        assert feats[r["id"]].shape == (r["frames"], 80)
        n = min(r["frames"], orig["frames"])
        assert np.abs(feats[r["id"]][:n].astype(np.float32) - feats[orig["id"]][:n]).mean() > 0.1
        assert r["text"] == orig["text"] and r["path"] == orig["path"] and r["sample_rate"] == orig["sample_rate"]


def test_copy_features_are_the_clip_resampled_as_if_at_rate_times_speed(speed_dir, broken_root):
    """Tempo and pitch change together: the samples read at rate * speed, resampled to 16 kHz."""
    rows = {r["id"]: r for r in read_index(speed_dir)}
    feats = features_by_id(speed_dir)
    cfg = FeatureConfig()
    for cid in ("common_voice_fr_stereo44_sp0p9", "common_voice_fr_quoted_sp1p1"):
        row = rows[cid]
        data, rate = sf.read(str(broken_root / LANG / "clips" / row["path"]), dtype="float32", always_2d=True)
        wave = soxr.resample(data.mean(axis=1), rate * row["speed"], 16000, quality="HQ").astype(np.float32)
        np.testing.assert_array_equal(feats[cid], as_stored(log_mel(wave, cfg)))


def test_rejected_once_and_cmvn_of_the_originals(speed_dir, shards_dir):
    assert read_rejects(speed_dir) == read_rejects(shards_dir)
    dataset, plain = read_dataset(speed_dir), read_dataset(shards_dir)
    assert dataset["rejects"] == plain["rejects"] and dataset["rejects"]["too_long"] == 1
    assert dataset["cmvn"] == plain["cmvn"]
    assert dataset["splits"]["train"]["rejected"] == plain["splits"]["train"]["rejected"]


def test_verify_passes_and_catches_a_perturbed_dev_row(speed_dir, tmp_path):
    assert verify(speed_dir, progress=False) == []
    copy = tmp_path / "fr"
    shutil.copytree(speed_dir, copy)
    rows = read_index(copy)
    dev = next(r for r in rows if r["split"] == "dev")
    dev["speed"] = 0.9
    write_tables(copy, read_dataset(copy), rows, read_rejects(copy))
    assert verify(copy, progress=False) == [
        f"{dev['id']}: speed copy 0.9 in dev, but dataset.json lists speed copies [0.9, 1.1] of train only"]


def test_the_loader_streams_the_copies_like_any_train_shard(speed_dir):
    shards = ShardSet.open(speed_dir)
    cfg = LoaderConfig(batch_frames=4000, workers=0)
    ids = [i for b in ShardStream(shards.urls("train"), CharTokenizer(shards.vocab), shards.cmvn, cfg, False)
           for i in b.ids]
    assert sorted(ids) == sorted(r["id"] for r in read_index(speed_dir, split="train"))
    assert sum(i.endswith("_sp0p9") for i in ids) == sum(i.endswith("_sp1p1") for i in ids) == len(ids) // 3


def test_an_old_folder_without_the_speed_column_loads_verifies_and_resumes(shards_dir, broken_root, tmp_path):
    old = tmp_path / "fr"
    shutil.copytree(shards_dir, old)
    table = pq.read_table(index_path(old))
    pq.write_table(table.drop_columns(["speed"]), index_path(old), compression="zstd")
    dataset = read_dataset(old)
    del dataset["speed_factors"]
    dataset_path(old).write_text(json.dumps(dataset))
    for meta in (old / ".parts").glob("*.json"):  # .parts of a build before the speed column
        m = json.loads(meta.read_text())
        m.pop("speed", None)
        for r in m["rows"]:
            r.pop("speed")
        meta.write_text(json.dumps(m))
    assert "speed" not in pq.read_schema(index_path(old)).names
    assert read_index(old) == read_index(shards_dir)  # speed 1.0 filled in
    assert read_index(old, columns=["id", "speed"], split="dev")[0]["speed"] == 1.0
    assert verify(old, progress=False) == []
    shards = ShardSet.open(old)
    cfg = LoaderConfig(batch_frames=4000, workers=0)
    ids = [i for b in ShardStream(shards.urls("train"), CharTokenizer(shards.vocab), shards.cmvn, cfg, False)
           for i in b.ids]
    assert len(ids) == shards.split("train")["utterances"]
    # adding copies to it reuses every old shard and builds only the copies
    summary = build(BuildConfig(cv_root=broken_root, lang=LANG, out=old, jobs=1, shard_size=8, progress=False,
                                max_duration=15.0, speeds=SPEEDS))
    n_train = len(read_dataset(shards_dir)["splits"]["train"]["shards"])
    assert summary["run"]["shards_built"] == 3 * n_train  # a train shard is rebuilt with its copies
    assert {k: v for k, v in shard_hashes(old).items() if "-sp" not in k} == shard_hashes(shards_dir)
    assert verify(old, progress=False) == []


@pytest.mark.parametrize("die_at", [2, 4])  # inside a shard's group (after its original), between groups
def test_killed_speed_build_resumes_to_identical_shards(broken_root, speed_dir, tmp_path, die_at):
    out = tmp_path / "fr"
    proc = build_killed_after_tar(broken_root, out, die_at=die_at, speeds=SPEEDS)
    assert proc.returncode == 137, proc.stderr
    assert list(out.glob("*/*.tmp")) and not dataset_path(out).exists()
    finished = shard_hashes(out)
    assert len(finished) == die_at - 1

    summary = build(BuildConfig(cv_root=broken_root, lang=LANG, out=out, jobs=1, shard_size=8,
                                progress=False, max_duration=15.0, speeds=SPEEDS))
    assert summary["run"]["shards_reused"] == (3 if die_at == 4 else 0)  # a half-done group is redone
    assert shard_hashes(out) == shard_hashes(speed_dir)  # jobs=1 resumed == jobs=2 in one go
    assert read_index(out) == read_index(speed_dir)
    assert dataset_path(out).read_text().replace(str(out), "") == \
        dataset_path(speed_dir).read_text().replace(str(speed_dir), "")
    again = build(BuildConfig(cv_root=broken_root, lang=LANG, out=out, jobs=2, shard_size=8,
                              progress=False, max_duration=15.0, speeds=SPEEDS))
    assert again["run"]["shards_built"] == 0 and shard_hashes(out) == shard_hashes(speed_dir)


def test_a_build_without_speed_after_one_with_drops_the_copies(speed_dir, shards_dir, broken_root, tmp_path):
    out = tmp_path / "fr"
    shutil.copytree(speed_dir, out)
    summary = build(BuildConfig(cv_root=broken_root, lang=LANG, out=out, jobs=1, shard_size=8,
                                progress=False, max_duration=15.0))
    assert summary["run"]["shards_built"] == 0
    assert shard_hashes(out) == shard_hashes(shards_dir)
    assert read_index(out) == read_index(shards_dir) and verify(out, progress=False) == []


@pytest.mark.parametrize("value, message", [
    ("1.0", "--speed: 1.0 is the original audio, always kept; give only the perturbed factors"),
    ("0.9,1,1.1", "--speed: 1.0 is the original audio, always kept; give only the perturbed factors"),
    ("0.9,0.90", "--speed: 0.9 is given twice"),
    ("0.9,fast", "--speed: 'fast' is not a number; give factors like 0.9,1.1"),
    ("nan", "--speed: nan is out of range; factors must lie in [0.5, 2]"),
    ("0.2", "--speed: 0.2 is out of range; factors must lie in [0.5, 2]"),
    ("2.5", "--speed: 2.5 is out of range; factors must lie in [0.5, 2]"),
    ("0.91234", "--speed: 0.91234 has more than 4 decimals"),
])
def test_bad_speed_values_give_one_line(value, message, tmp_path):
    with pytest.raises(ValueError) as err:
        parse_speeds(value)
    assert str(err.value) == message
    result = CliRunner().invoke(app, ["shards", "--cv-root", str(tmp_path), "--out", str(tmp_path / "out"),
                                      "--speed", value, "--no-progress"])
    assert result.exit_code == 1 and result.output.strip() == message
    assert not (tmp_path / "out").exists()


def test_parse_speeds_sorts_and_accepts_nothing():
    assert parse_speeds("1.1, 0.9") == (0.9, 1.1)
    assert parse_speeds(None) == parse_speeds("") == ()
    assert parse_speeds("0.95") == (0.95,)


def test_log_mel_is_torchaudios_melspectrogram(broken_root):
    """The builder's faster log-Mel (power as re^2 + im^2, torch's float16 conversion) gives
    torchaudio.transforms.MelSpectrogram's values: float16 units apart at most one in 5,000."""
    import torch
    import torchaudio

    from pipeline.audio import load_audio

    cfg = FeatureConfig()
    mel = torchaudio.transforms.MelSpectrogram(16000, n_fft=512, win_length=400, hop_length=160, n_mels=80,
                                               f_max=8000.0, power=2.0, center=True, mel_scale="htk")
    paths = sorted((broken_root / LANG / "clips").glob("common_voice_fr_[0-9]*.mp3"))[:5]
    assert len(paths) == 5
    for path in paths:
        wave = load_audio(path, cfg)[0]
        ref = torch.log(mel(torch.from_numpy(wave)) + 1e-6).T.numpy().astype(np.float16)
        ours = log_mel(wave, cfg)
        assert ours.shape == ref.shape and ours.dtype == np.float16
        ulp = np.abs(np.spacing(ref.astype(np.float32).astype(np.float16)).astype(np.float32))
        assert (np.abs(ours.astype(np.float32) - ref.astype(np.float32)) <= ulp).all()
        assert (ours != ref).mean() < 2e-4


def test_the_demo_report_says_train_counts_speed_copies():
    from asr.apps.demo import format_report

    counts = {"train": 30, "dev": 10, "test": 10}
    report = {
        "model": "ctc", "stages": {}, "eval": {}, "transcripts": [], "checkpoint": "x.pt", "tensorboard": "tb",
        "corpus": {"path": "c", "clips": counts, "hours": {k: 0.01 for k in counts},
                   "speakers": counts, "reused": True, "seconds": 0},
        "shards": {"path": "s", "utterances": {"train": 90, "dev": 10, "test": 10}, "speed_copies": 60,
                   "hours": {"train": 0.03, "dev": 0.01, "test": 0.01}, "rejects": {}, "realtime_factor": None},
        "train": {"curve": {"train_loss": [], "dev": [], "audio_seconds_per_second": None}, "step": 1,
                  "seconds": 1, "stopped_by": "steps"},
    }
    line = next(x for x in format_report(report).splitlines() if x.startswith("shards"))
    assert line == ("shards     s: train 90 utt / 0.03 h, dev 10 utt / 0.01 h, test 10 utt / 0.01 h "
                    "(train counts 60 speed-perturbed copies) (reused)")
    report["shards"]["speed_copies"] = 0
    assert "speed" not in format_report(report)


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_make_shards_passes_speed():
    def recipe(*args):
        # --no-print-directory: under `make test` this make is nested and would print "Leaving directory"
        out = subprocess.run(["make", "--no-print-directory", "-n", "shards", "LANG=fr", *args], cwd=ROOT,
                             capture_output=True, text=True)
        return [line for line in out.stdout.splitlines() if "asr-cli shards" in line][-1]
    assert recipe("SPEED=0.9,1.1").endswith("asr-cli shards --cv-root data/cv --lang fr --out shards/fr --jobs 0 "
                                            "--speed 0.9,1.1")
    assert "--speed" not in recipe()


def test_the_feature_bar_counts_source_clips_as_they_are_decoded(broken_root, tmp_path, monkeypatch):
    """The bar of a build with speed copies counts each source clip once, when it is decoded
    (with its copies): not the copies before they are made (it once opened at 62 %)."""
    import tqdm

    bars = []

    class Recording(tqdm.tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{**kwargs, "disable": True})
            self.total, self.n, self.steps = kwargs["total"], kwargs.get("initial", 0), []
            bars.append(self)

        def update(self, n=1):
            self.steps.append(n)
            self.n += n

    monkeypatch.setattr(tqdm, "tqdm", Recording)
    out = tmp_path / "sp"
    summary = build(BuildConfig(cv_root=broken_root, lang=LANG, out=out, jobs=1, shard_size=8, progress=True,
                                max_duration=15.0, speeds=SPEEDS))
    bar = bars[-1]
    index = pq.read_table(out / "index.parquet").to_pylist()
    sources = sum(1 for r in index if r["speed"] == 1.0) + sum(summary["rejects"].values())
    assert bar.total == sources and bar.n == sources
    text_rejects = sum(v for k, v in summary["rejects"].items() if k in ("empty_text", "unmappable_char"))
    assert bar.steps[0] == text_rejects  # before decoding: only the transcripts rejected outright
    assert set(bar.steps[1:]) == {1}  # then one per decoded clip
