"""asr-cli transcribe / asr.inference.transcribe: the shards' own features, the same text as eval, WAV and
MP3 alike, per-file errors, and one clear message for a file that is not a checkpoint."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from asr.inference.evaluate import UTTERANCES_FILE, EvalConfig, evaluate
from asr.inference.transcribe import FileFailure, Transcriber, Transcript, transcribe
from cli import app
from conftest import LANG, ROOT, as_stored
from pipeline.shardformat import FEATS_QDELTA, decode_features


def index_rows(shards_dir: Path) -> dict[str, dict]:
    return {r["id"]: r for r in pq.read_table(shards_dir / "index.parquet").to_pylist()}


def clip_path(broken_root: Path, row: dict) -> Path:
    return broken_root / LANG / "clips" / row["path"]


def stored_features(shards_dir: Path, row: dict) -> np.ndarray:
    with tarfile.open(shards_dir / row["shard"]) as tar:
        return decode_features({FEATS_QDELTA: tar.extractfile(f"{row['id']}.{FEATS_QDELTA}").read()})


def as_float_wav(mp3: Path, out: Path) -> Path:
    """The MP3's decoded samples, unchanged, in a float WAV file."""
    data, rate = sf.read(str(mp3), dtype="float32", always_2d=True)
    sf.write(out, data, rate, subtype="FLOAT")
    return out


def test_features_are_the_shards_features(tiny_ctc, shards_dir, broken_root):
    rows = index_rows(shards_dir)
    picks = ["common_voice_fr_stereo44"]  # 44.1 kHz stereo
    for rate in (48000, 32000):
        picks.append(next(i for i, r in sorted(rows.items()) if r["sample_rate"] == rate and r["channels"] == 1))
    transcriber = Transcriber(tiny_ctc, device="cpu")
    for clip in picks:
        feats, duration = transcriber.compute(clip_path(broken_root, rows[clip]))
        np.testing.assert_array_equal(as_stored(feats), stored_features(shards_dir, rows[clip]))
        assert duration == pytest.approx(rows[clip]["duration"], abs=1e-3)


def test_transcripts_equal_eval_hypotheses(chatty_ckpt, float16_shards, broken_root, tmp_path):
    """Same features, CMVN, decoding and normalisation as `asr-cli eval` (batches of one there)."""
    shards_dir = float16_shards
    evaluate(EvalConfig(chatty_ckpt, shards_dir, "dev", out=tmp_path, max_batch=1, workers=0, threads=1,
                        progress=False))
    hyps = {r["id"]: r["hypothesis"]
            for r in map(json.loads, (tmp_path / UTTERANCES_FILE).read_text(encoding="utf-8").splitlines())}
    rows = index_rows(shards_dir)
    paths = [clip_path(broken_root, rows[i]) for i in sorted(hyps)]
    results = list(transcribe(chatty_ckpt, paths, device="cpu"))
    assert all(isinstance(r, Transcript) for r in results)
    assert {r.id: r.text for r in results} == hyps
    texts = [r.text for r in results]
    assert all(texts) and len(set(texts)) == len(texts)  # something to compare, not empty strings


def test_wav_and_mp3_of_one_utterance_give_the_same_text(chatty_ckpt, shards_dir, broken_root, tmp_path):
    rows = index_rows(shards_dir)
    mp3 = clip_path(broken_root, rows["common_voice_fr_quoted"])
    wav = as_float_wav(mp3, tmp_path / "quoted.wav")
    result = CliRunner().invoke(app, ["transcribe", "--checkpoint", str(chatty_ckpt), str(mp3), str(wav),
                                      "--device", "cpu"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and lines[0] == lines[1] != ""


def test_json_lines(chatty_ckpt, shards_dir, broken_root, tmp_path):
    rows = index_rows(shards_dir)
    clips = ["common_voice_fr_stereo44", "common_voice_fr_quoted"]
    paths = [str(clip_path(broken_root, rows[c])) for c in clips]
    plain = CliRunner().invoke(app, ["transcribe", "--checkpoint", str(chatty_ckpt), *paths])
    as_json = CliRunner().invoke(app, ["transcribe", "--checkpoint", str(chatty_ckpt), *paths, "--json"])
    assert plain.exit_code == as_json.exit_code == 0, as_json.output
    objects = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [o["id"] for o in objects] == clips and [o["path"] for o in objects] == paths
    assert [o["text"] for o in objects] == plain.stdout.splitlines()
    for o, clip in zip(objects, clips):
        assert set(o) == {"id", "path", "text", "duration", "time", "words"}
        assert [w["word"] for w in o["words"]] == o["text"].split()
        assert o["duration"] == pytest.approx(rows[clip]["duration"], abs=1e-3)
        assert 0 < o["time"] < 60


def test_bad_files_are_reported_one_by_one(chatty_ckpt, shards_dir, broken_root, tmp_path):
    rows = index_rows(shards_dir)
    good = clip_path(broken_root, rows["common_voice_fr_quoted"])
    missing = tmp_path / "missing.wav"
    garbage = tmp_path / "garbage.mp3"
    garbage.write_bytes(np.random.default_rng(0).bytes(3000))
    empty = tmp_path / "empty.flac"
    empty.write_bytes(b"")
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(8000, np.float32), 16000)
    args = [str(good), str(missing), str(garbage), str(empty), str(silent), str(good)]
    result = CliRunner().invoke(app, ["transcribe", "--checkpoint", str(chatty_ckpt), *args])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    # one line per file: good, missing (""), garbage (""), empty (""), silent (""), good
    assert len(lines) == 6 and lines[0] == lines[5] != "" and lines[1:5] == ["", "", "", ""]
    assert f"{missing}: file not found" in result.stderr
    assert f"{garbage}: not a readable audio file" in result.stderr
    assert f"{empty}: empty file" in result.stderr
    assert "3 of 6 file(s) could not be transcribed" in result.stderr
    assert "Traceback" not in result.output

    failures = [r for r in transcribe(chatty_ckpt, [missing, good], device="cpu") if isinstance(r, FileFailure)]
    assert [f.path for f in failures] == [str(missing)]


def test_a_file_that_is_not_a_checkpoint_gives_one_clear_message(shards_dir, broken_root, tmp_path):
    audio = str(clip_path(broken_root, index_rows(shards_dir)["common_voice_fr_quoted"]))
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    cases = [(text, "is not a readable checkpoint"), (foreign, "is not a cv-asr checkpoint"),
             (tmp_path / "absent.pt", "does not exist")]
    for path, message in cases:
        result = CliRunner().invoke(app, ["transcribe", "--checkpoint", str(path), audio])
        assert result.exit_code == 1, result.output
        assert message in result.stderr and result.stdout == ""
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


def transcribe_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), "transcribe", "--device", "cpu", *args],
                          capture_output=True, text=True, timeout=300)


def test_one_line_per_file_in_order_whatever_fails(chatty_ckpt, shards_dir, broken_root, tmp_path):
    rows = index_rows(shards_dir)
    good = clip_path(broken_root, rows["common_voice_fr_quoted"])
    fake = tmp_path / "fake.mp3"
    fake.write_bytes(np.random.default_rng(3).bytes(5000))
    empty = tmp_path / "empty.mp3"
    empty.write_bytes(b"")
    wav = as_float_wav(clip_path(broken_root, rows["common_voice_fr_stereo44"]), tmp_path / "clip.wav")
    folder = tmp_path / "some_dir"
    folder.mkdir()
    files = [fake, good, empty, wav, folder]
    plain = transcribe_cli("--checkpoint", str(chatty_ckpt), *map(str, files))
    assert plain.returncode == 1, plain.stderr
    lines = plain.stdout.split("\n")
    assert lines[-1] == "" and len(lines[:-1]) == len(files), plain.stdout  # exactly one line per file
    assert lines[0] == lines[2] == lines[4] == "" and lines[1] != "" and lines[3] != "" and lines[1] != lines[3]
    ours = plain.stderr[plain.stderr.index("error: "):]  # libmpg123 may print notes about the fake MP3 first
    errors = ours.splitlines()
    assert f"error: {fake}: not a readable audio file" in errors[0]
    assert errors[1] == f"error: {empty}: empty file (0 bytes)"
    assert errors[2] == f"error: {folder}: is a directory, not an audio file"
    assert "not found" not in plain.stderr
    assert errors[3] == "3 of 5 file(s) could not be transcribed" and len(errors) == 4

    as_json = transcribe_cli("--checkpoint", str(chatty_ckpt), "--json", *map(str, files))
    assert as_json.returncode == 1 and as_json.stderr.endswith(ours)
    objects = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [o["path"] for o in objects] == list(map(str, files))
    assert [o.get("text") for o in objects] == [None, lines[1], None, lines[3], None]
    assert objects[0]["error"].startswith("not a readable audio file")
    assert [o.get("error") for o in objects[1:]] == [None, "empty file (0 bytes)", None,
                                                     "is a directory, not an audio file"]
    assert objects[0]["id"] == "fake" and set(objects[2]) == {"id", "path", "error"}

    alone = transcribe_cli("--checkpoint", str(chatty_ckpt), str(good), str(wav))
    assert alone.returncode == 0 and alone.stdout.split("\n") == [lines[1], lines[3], ""]
