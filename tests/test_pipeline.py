"""The offline pipeline: Common Voice folder -> shards, index, rejects, dataset.json."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch
import torchaudio
import webdataset as wds

from conftest import BROKEN, LANG, ROOT, UNSEEN_CHAR, as_stored, build_killed_after_tar
from pipeline.audio import FeatureConfig, compute_features
from pipeline.cv import ReleaseError, open_release, read_tsv, unquote
from pipeline.build import BuildConfig, build
from pipeline.shardformat import CODEC_MEMBER, dataset_path, decode_features, read_dataset, read_index, read_rejects
from pipeline.verify import verify


def tar_samples(path: Path) -> dict[str, dict[str, bytes]]:
    """key -> {extension: content} of one shard, as webdataset itself reads it."""
    return {s["__key__"]: {k: v for k, v in s.items() if not k.startswith("__")}
            for s in wds.tarfile_samples(iter([{"url": str(path)}]))}


def tsv_ids(root: Path, split: str) -> list[str]:
    lines = (root / LANG / f"{split}.tsv").read_text().splitlines()
    col = lines[0].split("\t").index("path")
    return [Path(line.split("\t")[col]).stem for line in lines[1:] if line.strip()]


def shard_hashes(shards: Path) -> dict[str, str]:
    return {str(p.relative_to(shards)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(shards.glob("*/*.tar"))}


# --------------------------------------------------------------------------------------
# index and rejects
# --------------------------------------------------------------------------------------
def test_every_row_is_kept_or_rejected_with_its_reason(broken_root, shards_dir):
    index, rejects = read_index(shards_dir), read_rejects(shards_dir)
    kept = {(r["split"], r["id"]) for r in index}
    rejected = {(r["split"], r["id"]): r["reason"] for r in rejects}
    assert not kept & set(rejected), "a clip is both kept and rejected"
    for split in ("train", "dev", "test"):
        ids = tsv_ids(broken_root, split)
        accounted = {i for s, i in kept | set(rejected) if s == split}
        assert set(ids) == accounted, f"{split}: rows neither kept nor rejected: {set(ids) - accounted}"
    for clip, (split, reason) in BROKEN.items():
        if reason is None:
            assert (split, clip) in kept, f"{clip} should be kept"
        else:
            assert rejected.get((split, clip)) == reason, f"{clip}: {rejected.get((split, clip))} != {reason}"
    dataset = read_dataset(shards_dir)
    for split in ("train", "dev", "test"):
        assert dataset["splits"][split]["utterances"] == sum(1 for r in index if r["split"] == split)


def test_index_rows_describe_their_clips(shards_dir):
    rows = {r["id"]: r for r in read_index(shards_dir)}
    stereo = rows["common_voice_fr_stereo44"]
    assert stereo["sample_rate"] == 44100 and stereo["channels"] == 2
    assert stereo["text"] == "le chat dort sur la chaise"
    quoted = rows["common_voice_fr_quoted"]
    assert quoted["sentence"] == 'Il a dit "oui".' and quoted["text"] == "il a dit oui"
    unseen = rows["common_voice_fr_dev_unseen_char"]
    assert unseen["text"] == "l'haÿ-les-roses dit-il enfin"
    rates = {r["sample_rate"] for r in rows.values()}
    assert 48000 in rates and len(rates) >= 3
    for r in rows.values():
        assert r["frames"] == FeatureConfig().num_frames(round(r["duration"] * 16000))
        assert 0.5 <= r["duration"] <= 15.0
        assert r["client_id"] and r["shard"].startswith(r["split"] + "/")


def test_vocabulary_comes_from_train_and_unseen_dev_chars_are_kept(shards_dir):
    dataset = read_dataset(shards_dir)
    index = read_index(shards_dir)
    train_chars = sorted({c for r in index if r["split"] == "train" for c in r["text"]})
    assert dataset["vocab"] == train_chars
    assert UNSEEN_CHAR not in dataset["vocab"]
    assert dataset["splits"]["dev"]["chars_unseen_in_train"].get(UNSEEN_CHAR) == 1
    assert {" ", "'", "-", "é"} <= set(dataset["vocab"])
    assert dataset["normalizer"]["version"] == "fr-1"


def test_cmvn_matches_train_features(shards_dir):
    dataset = read_dataset(shards_dir)
    feats = []
    for shard in dataset["splits"]["train"]["shards"]:
        for parts in tar_samples(shards_dir / shard["path"]).values():
            feats.append(decode_features(parts).astype(np.float64))
    allf = np.concatenate(feats)
    assert dataset["cmvn"]["frames"] == allf.shape[0]
    # the statistics are of the features as stored (what the loader normalises), to dataset.json's 6 decimals
    np.testing.assert_allclose(dataset["cmvn"]["mean"], allf.mean(0), atol=2e-6)
    np.testing.assert_allclose(dataset["cmvn"]["std"], allf.std(0), atol=2e-6, rtol=1e-6)


def test_shards_hold_what_the_index_says(shards_dir):
    dataset = read_dataset(shards_dir)
    by_id = {r["id"]: r for r in read_index(shards_dir)}
    seen = set()
    for split, info in dataset["splits"].items():
        for shard in info["shards"]:
            path = shards_dir / shard["path"]
            assert hashlib.sha256(path.read_bytes()).hexdigest() == shard["sha256"]
            samples = tar_samples(path)
            assert len(samples) == shard["utterances"]
            for key, parts in samples.items():
                assert set(parts) == {CODEC_MEMBER[dataset["feature_codec"]], "json"}
                feats = decode_features(parts)
                meta = json.loads(parts["json"])
                row = by_id[key]
                assert feats.dtype == np.float32 and feats.shape == (row["frames"], 80)
                assert meta["text"] == row["text"] and meta["split"] == split == row["split"]
                assert row["shard"] == shard["path"]
                seen.add(key)
    assert seen == set(by_id)


def test_train_is_shuffled_and_shards_follow_the_plan(shards_dir, broken_root):
    index = read_index(shards_dir)
    train_ids = [r["id"] for r in index if r["split"] == "train"]
    tsv_order = [i for i in tsv_ids(broken_root, "train") if i in set(train_ids)]
    assert sorted(train_ids) == sorted(tsv_order) and train_ids != tsv_order
    dataset = read_dataset(shards_dir)
    assert all(s["utterances"] <= 8 for s in dataset["splits"]["train"]["shards"])


# --------------------------------------------------------------------------------------
# features
# --------------------------------------------------------------------------------------
def direct_log_mel(path: Path) -> np.ndarray:
    """The documented recipe written out independently of pipeline.audio."""
    x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    x = x.mean(axis=1)
    y = soxr.resample(x, sr, 16000, quality="HQ").astype(np.float32)
    mel = torchaudio.transforms.MelSpectrogram(16000, n_fft=512, win_length=400, hop_length=160, n_mels=80,
                                               f_min=0.0, f_max=8000.0, power=2.0, mel_scale="htk")
    return torch.log(mel(torch.from_numpy(y)) + 1e-6).T.numpy()


@pytest.mark.parametrize("clip", ["common_voice_fr_stereo44", "common_voice_fr_quoted"])
def test_stored_features_equal_a_direct_computation(shards_dir, broken_root, clip):
    row = next(r for r in read_index(shards_dir) if r["id"] == clip)
    stored = decode_features(tar_samples(shards_dir / row["shard"])[clip])
    path = broken_root / LANG / "clips" / row["path"]
    direct = direct_log_mel(path)
    assert stored.shape == direct.shape
    np.testing.assert_allclose(stored, direct, atol=0.07, rtol=2e-3)  # qdelta's 1/16 included
    again, info = compute_features(path)
    # the transcribe path computes the very features the shards store (before their rounding)
    np.testing.assert_array_equal(as_stored(again), stored)


# --------------------------------------------------------------------------------------
# resume, determinism, verify
# --------------------------------------------------------------------------------------
def test_killed_build_resumes_to_identical_shards(broken_root, shards_dir, tmp_path):
    out = tmp_path / "fr"
    proc = build_killed_after_tar(broken_root, out, die_at=3)  # the third shard's tar written, not renamed
    assert proc.returncode == 137, proc.stderr
    assert list(out.glob("*/*.tmp")), "the kill should leave a half-finished shard behind"
    assert not dataset_path(out).exists()
    finished = set(shard_hashes(out))
    assert 0 < len(finished) < len(shard_hashes(shards_dir))

    summary = build(BuildConfig(cv_root=broken_root, lang=LANG, out=out, jobs=1, shard_size=8,
                                progress=False, max_duration=15.0))
    assert summary["run"]["shards_reused"] == len(finished)
    assert shard_hashes(out) == shard_hashes(shards_dir)  # jobs=1 resumed == jobs=2 in one go
    assert not list(out.glob("*/*.tmp"))
    assert read_index(out) == read_index(shards_dir)
    assert dataset_path(out).read_text().replace(str(out), "") == \
        dataset_path(shards_dir).read_text().replace(str(shards_dir), "")

    again = build(BuildConfig(cv_root=broken_root, lang=LANG, out=out, jobs=2, shard_size=8,
                              progress=False, max_duration=15.0))
    assert again["run"]["shards_built"] == 0
    forced = build(BuildConfig(cv_root=broken_root, lang=LANG, out=out, jobs=2, shard_size=8,
                               progress=False, max_duration=15.0, force=True))
    assert forced["run"]["shards_reused"] == 0 and shard_hashes(out) == shard_hashes(shards_dir)


def test_verify_passes_then_catches_corruption(shards_dir, tmp_path):
    assert verify(shards_dir, progress=False) == []
    copy = tmp_path / "fr"
    shutil.copytree(shards_dir, copy)
    victim = sorted(copy.glob("train/*.tar"))[0]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    problems = verify(copy, progress=False)
    assert any(victim.name in p and "sha256" in p for p in problems)

    (sorted(copy.glob("dev/*.tar"))[0]).unlink()
    (copy / "test" / "stray.tar").write_bytes(b"x")
    problems = verify(copy, progress=False)
    assert any("missing" in p for p in problems) and any("stray.tar" in p for p in problems)

    from typer.testing import CliRunner

    from cli import app

    result = CliRunner().invoke(app, ["shards", "verify", str(copy), "--no-progress"])
    assert result.exit_code != 0 and "problem" in result.output
    result = CliRunner().invoke(app, ["shards", "verify", str(shards_dir), "--no-progress"])
    assert result.exit_code == 0, result.output


# --------------------------------------------------------------------------------------
# reading releases
# --------------------------------------------------------------------------------------
def test_missing_release_gives_one_clear_error(tmp_path):
    from typer.testing import CliRunner

    from cli import app

    with pytest.raises(ReleaseError, match="make demo"):
        open_release(tmp_path / "nowhere", "fr")
    (tmp_path / "cv" / "fr" / "clips").mkdir(parents=True)
    with pytest.raises(ReleaseError, match="train.tsv"):
        open_release(tmp_path / "cv", "fr")
    result = CliRunner().invoke(app, ["shards", "--cv-root", str(tmp_path / "cv"), "--lang", "de",
                                      "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert "no folder" in result.output and "clips/" in result.output and "Traceback" not in result.output


def test_tsv_quoting_and_columns(tmp_path):
    assert unquote('"He said ""yes""."') == 'He said "yes".'
    assert unquote('"Oui", dit-il, "non"') == '"Oui", dit-il, "non"'  # raw field: left alone
    assert unquote('Il dit "bonjour') == 'Il dit "bonjour'
    # an old release: `accent` instead of `accents`, no variant/segment, columns in another order
    lines = ["path\tclient_id\tsentence\tup_votes\tdown_votes\tage\tgender\taccent",
             'a.mp3\tc1\tIl dit "bonjour\t2\t0\t\tmale\tfrance',
             'b.mp3\tc2\t"Elle a dit ""non"", puis ""oui""."\t2\t0\t\t\t',
             "c.mp3\tc3\tTrop\tde\tchamps\tici\t\t\t\t",
             "d.mp3\tc4\tNormal."]
    tsv = tmp_path / "train.tsv"
    tsv.write_text("\n".join(lines) + "\n")
    clips, problems, header = read_tsv(tsv, "train", tmp_path)
    assert [c.id for c in clips] == ["a", "b", "d"]
    assert clips[0].sentence == 'Il dit "bonjour' and clips[0].meta["accent"] == "france"
    assert clips[1].sentence == 'Elle a dit "non", puis "oui".'
    assert clips[2].sentence == "Normal." and clips[2].meta["gender"] == ""
    assert [(p.id, p.reason) for p in problems] == [("c", "malformed_row")]


def test_validated_train_set_excludes_dev_and_test(broken_root):
    release = open_release(broken_root, LANG, train_set="validated")
    train = {c.id for c in release.clips["train"]}
    eval_ids = {c.id for s in ("dev", "test") for c in release.clips[s]}
    assert not train & eval_ids
    standard = {c.id for c in open_release(broken_root, LANG).clips["train"]}
    assert len(train - standard) > 0, "validated should add clips that are in no split"
    from pipeline.text import get_normalizer

    norm = get_normalizer(LANG)
    eval_sentences = {norm.normalize(c.sentence) for s in ("dev", "test") for c in release.clips[s]}
    assert not {norm.normalize(c.sentence) for c in release.clips["train"]} & eval_sentences
    eval_speakers = {c.meta["client_id"] for s in ("dev", "test") for c in release.clips[s]}
    assert not {c.meta["client_id"] for c in release.clips["train"]} & eval_speakers
    left_out = {p.id for p in release.problems if p.reason in ("sentence_in_eval_split", "speaker_in_eval_split")}
    validated_only = set(tsv_ids(broken_root, "validated")) - standard - eval_ids
    assert validated_only <= train | left_out and left_out


def test_validated_rejected_sentences_do_not_match_each_other(tmp_path):
    """Two sentences the normaliser rejects are not "the same sentence" (both normalise to None)."""
    lang = tmp_path / "fr"
    (lang / "clips").mkdir(parents=True)
    header = "\t".join(["client_id", "path", "sentence"])
    (lang / "train.tsv").write_text(header + "\n")
    (lang / "dev.tsv").write_text(header + "\nc1\td.mp3\tМир\n")
    (lang / "test.tsv").write_text(header + "\nc2\tt.mp3\tBonjour.\n")
    (lang / "validated.tsv").write_text(header + "\nc3\tv1.mp3\tПривет\nc4\tv2.mp3\tbonjour !\n"
                                        "c1\td.mp3\tМир\n")
    release = open_release(tmp_path, "fr", train_set="validated")
    assert [c.id for c in release.clips["train"]] == ["v1"]
    assert [(p.id, p.reason) for p in release.problems] == [("v2", "sentence_in_eval_split")]


# --------------------------------------------------------------------------------------
# TSV paths confined to clips/, an empty train split
# --------------------------------------------------------------------------------------
def tiny_release(synth_root: Path, dst: Path, train_rows: int = 3) -> Path:
    """A copy of the synthetic release with `train_rows` train rows and 1 dev / 1 test row: <dst>/fr."""
    src, lang = synth_root / LANG, dst / LANG
    (lang / "clips").mkdir(parents=True)
    for split, n in (("train", train_rows), ("dev", 1), ("test", 1), ("validated", 0)):
        lines = (src / f"{split}.tsv").read_text().splitlines()
        col = lines[0].split("\t").index("path")
        (lang / f"{split}.tsv").write_text("\n".join(lines[: 1 + n]) + "\n")
        for line in lines[1 : 1 + n]:
            name = line.split("\t")[col]
            shutil.copy(src / "clips" / name, lang / "clips" / name)
    return lang


def shards_cli(cv_root: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), "shards", "--cv-root", str(cv_root), "--lang",
                           LANG, "--out", str(out), "--jobs", "1", "--no-progress"],
                          capture_output=True, text=True, timeout=300)


def test_tsv_paths_outside_clips_are_rejected_unread(synth_root, tmp_path):
    from conftest import tsv_row

    lang = tiny_release(synth_root, tmp_path / "cv")
    clips = lang / "clips"
    good = sorted(clips.glob("*.mp3"))[0].read_bytes()
    garbage = np.random.default_rng(1).bytes(4000)
    # real files where the hostile paths point: a good MP3 would be kept and garbage would be a
    # decode_error if either were opened
    (lang / "outside.mp3").write_bytes(good)
    far = tmp_path / "far" / "x.mp3"
    far.parent.mkdir()
    far.write_bytes(good)
    (tmp_path / "far" / "g.mp3").write_bytes(garbage)
    (clips / "link.mp3").symlink_to(far)  # a symlink inside clips/ pointing out
    (clips / "sub").mkdir()
    shutil.copy(sorted(clips.glob("*.mp3"))[0], clips / "sub" / "nested_ok.mp3")
    hostile = {
        "outside": "../outside.mp3",
        "x": os.path.relpath(far, clips),  # ../../far/x.mp3 ...
        "g": str(tmp_path / "far" / "g.mp3"),  # absolute
        "passwd": "/etc/passwd",
        "link": "link.mp3",
    }
    assert hostile["x"].startswith("../")
    with open(lang / "train.tsv", "a") as f:
        for path in hostile.values():
            f.write(tsv_row(path, "Une phrase venue d'ailleurs.") + "\n")
        f.write(tsv_row("sub/../sub/nested_ok.mp3", "Une phrase dans un sous-dossier.") + "\n")  # stays inside
    out = tmp_path / "shards"
    proc = shards_cli(tmp_path / "cv", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rejects = {r["id"]: r for r in read_rejects(out)}
    index = {r["id"]: r for r in read_index(out)}
    lines = {i: n for n, i in enumerate(hostile, start=5)}  # header + 3 train rows, then the hostile rows
    for cid, path in hostile.items():
        assert cid not in index, f"{path} was decoded into the shards"
        assert rejects[cid]["reason"] == "path_outside_clips", (path, rejects[cid])
        assert rejects[cid]["detail"].startswith(f"train.tsv:{lines[cid]}: {path!r}")
    assert "nested_ok" in index and len(index) == 3 + 1 + 1 + 1
    assert read_dataset(out)["rejects"] == {"path_outside_clips": len(hostile)}


def test_a_release_without_train_clips_fails_naming_the_tsv(synth_root, tmp_path):
    lang = tiny_release(synth_root, tmp_path / "cv", train_rows=0)
    proc = shards_cli(tmp_path / "cv", tmp_path / "shards")
    assert proc.returncode == 1, proc.stdout
    assert f"{lang / 'train.tsv'} lists no usable training clip" in proc.stderr
    assert "Traceback" not in proc.stderr and "vocabulary" not in proc.stdout
    assert not dataset_path(tmp_path / "shards").exists()

    # every train row rejected while decoding: the build says so instead of "vocabulary: 0 characters"
    lang = tiny_release(synth_root, tmp_path / "cv2", train_rows=2)
    for mp3 in (lang / "clips").glob("*.mp3"):
        if mp3.name in (lang / "train.tsv").read_text():
            mp3.write_bytes(b"")
    proc = shards_cli(tmp_path / "cv2", tmp_path / "shards2")
    assert proc.returncode == 1, proc.stdout
    assert f"no clip of {lang / 'train'}.tsv could be used" in proc.stderr and "'empty_file': 2" in proc.stderr
    assert "Traceback" not in proc.stderr
