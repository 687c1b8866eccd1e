"""Issue 25, items 5-16: crashes that lost every file after them, silent wrong results, the
server. Each bad input ends in a one-line error or a recorded reject with its reason."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.decoding.lm import MAX_WORD_CHARS, LMFileError, build_lm_from_shards, check_arpa
from conftest import LANG, ROOT, TSV_HEADER, one_line, serve_in_thread, tsv_row
from pipeline.build import BuildConfig, build
from pipeline.cv import ReleaseError, open_release
from pipeline.shardformat import read_index, read_rejects
from pipeline.text import get_normalizer

ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def cli(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *map(str, args)], capture_output=True, text=True,
                          env=ENV, cwd=ROOT, timeout=timeout)


def small_release(synth_root: Path, dest: Path, rows: dict[str, str] | None = None, train: int = 4) -> Path:
    """<dest>/fr: `train` train clips, 2 dev, 2 test of the synthetic corpus (copied), and
    `rows` (TSV path field -> sentence) added to train.tsv (their files the caller's)."""
    src, lang = synth_root / LANG, dest / LANG
    (lang / "clips").mkdir(parents=True)
    for split, n in (("train", train), ("dev", 2), ("test", 2)):
        lines = (src / f"{split}.tsv").read_text().splitlines()
        col = lines[0].split("\t").index("path")
        kept = lines[1:n + 1]
        for row in kept:
            shutil.copy2(src / "clips" / row.split("\t")[col], lang / "clips")
        if split == "train":
            kept += [tsv_row(path, sentence) for path, sentence in (rows or {}).items()]
        (lang / f"{split}.tsv").write_text("\n".join([lines[0], *kept]) + "\n")
    (lang / "validated.tsv").write_text("\t".join(TSV_HEADER) + "\n")
    return dest


def a_clip(synth_root: Path, i: int = 0) -> Path:
    return sorted((synth_root / LANG / "clips").glob("*.mp3"))[-1 - i]


# --------------------------------------------------------------------------------------
# item 5: an LM the decoder cannot load is refused, not a segfault
# --------------------------------------------------------------------------------------
def long_word_arpa(lm: Path, out: Path) -> Path:
    """`lm` with one more unigram: a word of 100,000 characters."""
    lines = lm.read_text(encoding="utf-8").splitlines()
    i = next(n for n, line in enumerate(lines) if line.startswith("ngram 1="))
    lines[i] = f"ngram 1={int(lines[i].split('=')[1]) + 1}"
    j = lines.index("\\1-grams:")
    lines.insert(j + 1, f"-5.0\t{'a' * 100_000}\t0.0")
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def test_an_lm_with_a_huge_word_is_refused_by_transcribe_in_one_line(lm, tiny_ctc, synth_root, tmp_path):
    bad = long_word_arpa(lm, tmp_path / "long.arpa")
    with pytest.raises(LMFileError, match=f"a word of 100000 characters"):
        check_arpa(bad)
    proc = cli("transcribe", "--checkpoint", tiny_ctc, "--lm", bad, a_clip(synth_root))
    assert proc.returncode != 139, "the decoder crashed"
    one_line(proc, str(bad), "a word of 100000 characters")


def test_lm_build_leaves_out_a_huge_word_and_refuses_an_order_above_six(shards_dir, tmp_path):
    extra = tmp_path / "extra.txt"
    extra.write_text("le chat dort\n" + "b" * 100_000 + " mange\n" + "il a " + "9" * 5000 + " ans\n",
                     encoding="utf-8")
    stats = build_lm_from_shards(shards_dir, 2, tmp_path / "lm.arpa", extra_text=extra)
    assert stats["extra_sentences"] == 1 and stats["extra_rejected"] == 2  # the long word, the digits
    assert max(len(w) for w in check_arpa(tmp_path / "lm.arpa")) <= MAX_WORD_CHARS
    proc = cli("lm", "build", "--shards", shards_dir, "--order", 9, "--out", tmp_path / "nine.arpa")
    one_line(proc, "--order 9", "1- to 6-gram")
    assert not (tmp_path / "nine.arpa").exists()


# --------------------------------------------------------------------------------------
# item 16: --extra-text that is not UTF-8
# --------------------------------------------------------------------------------------
def test_an_extra_text_that_is_not_utf8_is_named(shards_dir, tmp_path):
    extra = tmp_path / "latin1.txt"
    extra.write_bytes("le chat\nça va très bien\n".encode("latin-1"))
    proc = cli("lm", "build", "--shards", shards_dir, "--order", 2, "--extra-text", extra,
               "--out", tmp_path / "lm.arpa")
    one_line(proc, f"extra text file {extra} is not UTF-8 at byte 8 (line 2)")


# --------------------------------------------------------------------------------------
# items 6, 11: number spelling
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("lang, digits", [("fr", 5000), ("en", 400), ("ja", 400), ("ar", 400), ("de", 5000)])
def test_a_long_run_of_digits_is_a_digits_reject(lang, digits):
    assert get_normalizer(lang).analyse("il y a " + "7" * digits + " ans") == ("", "digits")


def test_spelt_numbers_have_no_capitals_in_the_generic_normaliser():
    norm = get_normalizer("de")
    text, reason = norm.analyse("Es sind 2000000 Menschen.")
    assert reason is None and text == text.lower() and "millionen" in text
    assert norm.version == "generic-3" and get_normalizer("fr").version == "fr-1"


def test_lm_build_extra_text_with_5000_digits_has_no_traceback(shards_dir, tmp_path):
    extra = tmp_path / "digits.txt"
    extra.write_text("il a " + "3" * 5000 + " ans\nle chien court\n", encoding="utf-8")
    proc = cli("lm", "build", "--shards", shards_dir, "--order", 2, "--extra-text", extra,
               "--out", tmp_path / "lm.arpa")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "1 extra lines rejected" in proc.stdout


# --------------------------------------------------------------------------------------
# item 8: a column named twice
# --------------------------------------------------------------------------------------
def test_a_tsv_header_naming_a_column_twice_is_refused(synth_root, tmp_path):
    root = small_release(synth_root, tmp_path / "cv")
    tsv = root / LANG / "train.tsv"
    lines = tsv.read_text().splitlines()
    tsv.write_text("\n".join([lines[0] + "\tsentence", *[line + "\tautre" for line in lines[1:]]]) + "\n")
    with pytest.raises(ReleaseError, match="names column sentence more than once"):
        open_release(root, LANG)
    proc = cli("shards", "--cv-root", root, "--lang", LANG, "--out", tmp_path / "out", "--no-progress")
    one_line(proc, f"{tsv}: the header names column sentence more than once")


# --------------------------------------------------------------------------------------
# item 13: ids of distinct files are distinct
# --------------------------------------------------------------------------------------
def test_colliding_ids_of_distinct_files_are_kept_apart_and_a_true_duplicate_says_so(synth_root, tmp_path):
    rows = {"a.b.c.mp3": "Le premier.", "a_b_c.mp3": "Le second.", "sub/x.mp3": "Le troisième.",
            "x.mp3": "Le quatrième."}
    root = small_release(synth_root, tmp_path / "cv", rows)
    clips = root / LANG / "clips"
    (clips / "sub").mkdir()
    for i, name in enumerate(rows):
        shutil.copy2(a_clip(synth_root, i), clips / name)
    tsv = root / LANG / "train.tsv"
    tsv.write_text(tsv.read_text() + tsv_row("x.mp3", "Le quatrième.") + "\n")  # the same file again
    release = open_release(root, LANG)
    ids = {c.path.relative_to(clips).as_posix(): c.id for c in release.clips["train"]}
    assert ids["a_b_c.mp3"] == "a_b_c" and ids["x.mp3"] == "x"  # the file named as its id keeps it
    assert ids["a.b.c.mp3"].startswith("a_b_c_") and ids["sub/x.mp3"].startswith("x_")
    assert len(set(ids.values())) == len(ids)
    dups = [p for p in release.problems if p.reason == "duplicate_row"]
    assert [(p.id, p.detail) for p in dups] == [("x", "the clip appears twice in its TSV")]
    assert open_release(root, LANG).clips["train"][0].id == release.clips["train"][0].id  # stable


# --------------------------------------------------------------------------------------
# item 12: a rebuild sees clips that came back or were replaced
# --------------------------------------------------------------------------------------
def test_a_rebuild_retries_a_clip_that_came_back_and_rebuilds_a_replaced_one(synth_root, tmp_path):
    root = small_release(synth_root, tmp_path / "cv", {"late.mp3": "Il arrive en retard."})
    clips = root / LANG / "clips"
    out = tmp_path / "shards"
    cfg = BuildConfig(cv_root=root, lang=LANG, out=out, jobs=1, shard_size=2, progress=False)
    build(cfg)
    assert {r["id"]: r["reason"] for r in read_rejects(out)}["late"] == "missing_file"
    shutil.copy2(a_clip(synth_root, 5), clips / "late.mp3")
    summary = build(cfg)
    assert "late" in {r["id"] for r in read_index(out)} and summary["run"]["shards_built"] == 1
    before = {r["id"]: r["frames"] for r in read_index(out)}
    shutil.copy2(a_clip(synth_root, 7), clips / "late.mp3")  # another clip under the same name
    summary = build(cfg)
    assert summary["run"]["shards_built"] == 1
    assert {r["id"]: r["frames"] for r in read_index(out)}["late"] != before["late"]


# --------------------------------------------------------------------------------------
# item 9: --resume with other options or other shards
# --------------------------------------------------------------------------------------
def test_resume_with_another_preset_or_other_shards_is_refused(shards_dir, handful_shards, tiny_ctc, tmp_path):
    from asr.training.loop import TrainConfig, train

    run = tmp_path / "run"
    run.mkdir()
    shutil.copy2(tiny_ctc, run / "last.pt")
    common = dict(out=str(run), max_steps=40, warmup=5, batch_frames=4000, eval_every=0, workers=0, progress=False,
                  resume=True)
    with pytest.raises(ValueError, match="--preset conformer-tiny, not tiny"):
        train(TrainConfig(shards=str(shards_dir), preset="conformer-tiny", **common))
    with pytest.raises(ValueError, match="--rnn-hidden 32, not"):
        train(TrainConfig(shards=str(shards_dir), preset="tiny", model_options={"rnn_hidden": 32}, **common))
    with pytest.raises(ValueError, match="the shards' cmvn"):
        train(TrainConfig(shards=str(handful_shards), preset="tiny", **common))
    assert (run / "last.pt").read_bytes() == tiny_ctc.read_bytes()


def test_resume_differences_names_language_and_vocabulary():
    from asr.store.checkpoint import resume_differences

    state = {"train_config": {"model": "ctc", "preset": "tiny", "tokens": "char", "model_options": {}},
             "lang": "fr", "features": {"n_mels": 80}, "cmvn": {"mean": [0]}, "tokenizer": {"kind": "char",
                                                                                         "vocab": ["a"]}}
    same = {"lang": "fr", "features": {"n_mels": 80}, "cmvn": {"mean": [0]}, "vocab": ["a"]}
    options = {"model": "ctc", "preset": "tiny", "tokens": "char", "model_options": {}}
    assert resume_differences(state, options, same) == []
    other = dict(same, lang="de", vocab=["a", "b"])
    assert resume_differences(state, dict(options, model="las"), other) == [
        "--model las, not ctc", "the shards' lang de, not fr", "the shards' vocab"]


# --------------------------------------------------------------------------------------
# item 10: arrays in memory
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rec(chatty_ckpt):
    from asr.inference.api import Recognizer

    return Recognizer.load(chatty_ckpt, device="cpu")


def test_int16_and_channels_first_arrays_read_as_a_file_would(rec, synth_root, tmp_path):
    wav = tmp_path / "a.wav"
    x, sr = sf.read(a_clip(synth_root), dtype="float32")
    sf.write(wav, x, sr, subtype="PCM_16")
    pcm, _ = sf.read(wav, dtype="int16")  # [n]
    from_file = rec.transcribe(wav)
    assert from_file.text
    as_int = rec.transcribe(pcm, sample_rate=sr)
    assert (as_int.text, as_int.duration) == (from_file.text, from_file.duration)
    first = rec.transcribe(pcm[None, :], sample_rate=sr)  # [1, n]
    assert (first.text, first.duration) == (from_file.text, from_file.duration)
    stereo = np.stack([pcm, pcm])  # [2, n] and [n, 2]
    assert rec.transcribe(stereo, sample_rate=sr).text == rec.transcribe(stereo.T, sample_rate=sr).text


def test_an_ambiguous_or_non_numeric_array_is_a_failure(rec):
    from asr.inference.api import TranscriptionError

    for bad, fragment in ((np.zeros((40, 40), np.float32), "cannot tell samples from channels"),
                          (np.array(["a", "b"]), "not audio"), (np.ones(100, np.float32), "too short")):
        with pytest.raises(TranscriptionError, match=fragment):
            rec.transcribe(bad, sample_rate=16000)


# --------------------------------------------------------------------------------------
# items 7, 14: tiny and header-inflated files in transcribe
# --------------------------------------------------------------------------------------
def test_a_one_hz_header_fails_at_once_and_the_next_file_is_transcribed(tiny_ctc, synth_root, tmp_path):
    one_hz = tmp_path / "one_hz.wav"
    sf.write(one_hz, np.random.default_rng(0).uniform(-0.5, 0.5, 13 * 3600).astype(np.float32), 1)
    assert sf.info(str(one_hz)).duration == 13 * 3600
    started = time.perf_counter()
    proc = cli("transcribe", "--checkpoint", tiny_ctc, one_hz, a_clip(synth_root), "--format", "json", timeout=120)
    assert time.perf_counter() - started < 60
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert "sample rate 1 Hz is not audio" in results[0]["error"] and "error" not in results[1]
    one_line(proc, "1 of 2 file(s) could not be transcribed")


# --------------------------------------------------------------------------------------
# item 15 (and 3, 7 through the server)
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def app(chatty_ckpt):
    from asr.apps.serve import ServeConfig, create_app

    return create_app(ServeConfig(chatty_ckpt, body_timeout=1.0))


@pytest.fixture(scope="module")
def live(app):
    with serve_in_thread(app) as port:
        yield port


def wav_bytes(x: np.ndarray, rate: int = 16000, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, rate, format="WAV", subtype=subtype)
    return buf.getvalue()


def test_the_server_answers_bad_audio_and_names_with_a_4xx(app):
    from fastapi.testclient import TestClient

    huge = wav_bytes((np.sin(np.arange(32000) / 5) * 1e20).astype(np.float32), subtype="FLOAT")
    with TestClient(app) as c:
        for name, data, code, fragment in (("one.wav", wav_bytes(np.array([0.5])), 422, "too short"),
                                           ("huge.wav", huge, 422, "overflow")):
            r = c.post("/transcribe", files={"file": (name, data)})
            assert r.status_code == code and fragment in r.json()["error"], (name, r.status_code, r.text)
        # a NUL in the file name, sent raw (httpx would escape it)
        body = (b'--b\r\nContent-Disposition: form-data; name="file"; filename="a\x00b.wav"\r\n\r\n'
                + wav_bytes(np.ones(8000) * 0.1) + b"\r\n--b--\r\n")
        r = c.post("/transcribe", content=body, headers={"content-type": "multipart/form-data; boundary=b"})
        assert r.status_code == 400 and "control character" in r.json()["error"], r.text
        assert c.get("/docs").status_code == 404 and c.get("/redoc").status_code == 404
        assert c.get("/openapi.json").status_code == 200


def test_a_short_sent_body_is_cut_off_with_408(live):
    with socket.create_connection(("127.0.0.1", live), timeout=10) as s:
        s.sendall(b"POST /transcribe HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                  b"Content-Length: 100000\r\n\r\n--b\r\nContent-Disposition: form-data; name=\"file\"; "
                  b"filename=\"a.wav\"\r\n\r\nRIFF")
        started = time.perf_counter()
        answer = b""
        while chunk := s.recv(4096):  # head and body may come in separate segments
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408") and b"did not arrive within 1 s" in answer
    assert time.perf_counter() - started < 8


def test_health_and_the_page_answer_at_once_while_uploads_wait(live, app, synth_root):
    import httpx

    clip = wav_bytes((0.1 * np.sin(np.arange(16000) / 7)).astype(np.float32))  # 1 s: quick to decode
    replica = app.state.pool.get()  # every replica busy: uploads queue up
    results = []
    threads = [threading.Thread(target=lambda: results.append(httpx.post(
        f"http://127.0.0.1:{live}/transcribe", files={"file": ("a.wav", clip)}, timeout=120).status_code))
        for _ in range(60)]
    try:
        for t in threads:
            t.start()
        time.sleep(1.5)
        for path in ("/health", "/", "/model"):
            started = time.perf_counter()
            assert httpx.get(f"http://127.0.0.1:{live}{path}", timeout=10).status_code == 200
            assert time.perf_counter() - started < 1.0, path
    finally:
        app.state.pool.put(replica)
    for t in threads:
        t.join(120)
    assert results.count(200) == 60
