"""Shared fixtures: corpora, shards and models the tests build themselves (no downloads).

Session-scoped and built once: a tiny synthetic corpus in Common Voice's layout, the same
corpus with hand-broken rows and files added, and its shards.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LANG = "fr"
TSV_HEADER = ["client_id", "path", "sentence_id", "sentence", "sentence_domain", "up_votes", "down_votes",
              "age", "gender", "accents", "variant", "locale", "segment"]


def tsv_row(path: str, sentence: str, client: str = "broken-speaker") -> str:
    fields = {"client_id": client, "path": path, "sentence": sentence, "up_votes": "2", "down_votes": "0",
              "locale": LANG}
    return "\t".join(fields.get(c, "") for c in TSV_HEADER)


def espeak_clip(text: str, rate: int, channels: int = 1) -> np.ndarray:
    """espeak-ng speech resampled to `rate`: float32 [n] or [n, channels]."""
    wav = subprocess.run(["espeak-ng", "-v", "fr", "--stdout", text], capture_output=True, check=True).stdout
    x, sr = sf.read(io.BytesIO(wav), dtype="float32")
    y = soxr.resample(x, sr, rate).astype(np.float32)
    if channels == 2:
        y = np.stack([y, 0.6 * y], axis=1)
    return y


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """A 40-clip synthetic corpus: <root>/fr/{clips,train.tsv,...}."""
    from synth import synthesize

    root = tmp_path_factory.mktemp("cv")
    synthesize(root / LANG, lang=LANG, num_clips=40, seed=11, jobs=2, progress=False)
    return root


# What the broken corpus adds: clip id -> (split, expected reject reason or None if kept).
BROKEN = {
    "common_voice_fr_broken_truncated": ("train", "truncated"),
    "common_voice_fr_broken_zero": ("train", "empty_file"),
    "common_voice_fr_broken_missing": ("train", "missing_file"),
    "common_voice_fr_broken_empty_text": ("train", "empty_text"),
    "common_voice_fr_broken_cyrillic": ("train", "unmappable_char"),
    "common_voice_fr_broken_garbage": ("train", "decode_error"),
    "common_voice_fr_broken_silent": ("train", "silent_audio"),
    "common_voice_fr_broken_long": ("train", "too_long"),
    "common_voice_fr_stereo44": ("train", None),
    "common_voice_fr_quoted": ("train", None),
    "common_voice_fr_dev_unseen_char": ("dev", None),
}
UNSEEN_CHAR = "ÿ"  # French letter the synthetic train text never uses (checked in the test)


@pytest.fixture(scope="session")
def broken_root(synth_root, tmp_path_factory) -> Path:
    """The synthetic corpus plus hand-broken files and rows (see BROKEN)."""
    root = tmp_path_factory.mktemp("cv-broken")
    shutil.copytree(synth_root / LANG, root / LANG)
    lang = root / LANG
    clips = lang / "clips"
    good = sorted(clips.glob("*.mp3"))[0].read_bytes()
    (clips / "common_voice_fr_broken_truncated.mp3").write_bytes(good[: len(good) // 2])
    (clips / "common_voice_fr_broken_zero.mp3").write_bytes(b"")
    (clips / "common_voice_fr_broken_garbage.mp3").write_bytes(np.random.default_rng(0).bytes(4000))
    sf.write(clips / "common_voice_fr_broken_silent.mp3", np.zeros(48000, np.float32), 48000, format="MP3")
    sf.write(clips / "common_voice_fr_broken_long.mp3", np.tile(espeak_clip("Un deux trois.", 16000), 20),
             16000, format="MP3")
    sf.write(clips / "common_voice_fr_stereo44.mp3", espeak_clip("Le chat dort sur la chaise.", 44100, 2),
             44100, format="MP3")
    sf.write(clips / "common_voice_fr_quoted.mp3", espeak_clip("Il a dit oui.", 48000), 48000, format="MP3")
    sf.write(clips / "common_voice_fr_dev_unseen_char.mp3", espeak_clip("L'Haÿ-les-Roses, dit-il enfin.", 48000), 48000,
             format="MP3")
    extra_train = [
        tsv_row("common_voice_fr_broken_truncated.mp3", "Une phrase coupée."),
        tsv_row("common_voice_fr_broken_zero.mp3", "Un fichier vide."),
        tsv_row("common_voice_fr_broken_missing.mp3", "Un fichier absent."),
        tsv_row("common_voice_fr_stereo44.mp3", "Le chat dort sur la chaise."),
        tsv_row("common_voice_fr_broken_empty_text.mp3", " … "),
        tsv_row("common_voice_fr_broken_cyrillic.mp3", "Привет, мир."),
        tsv_row("common_voice_fr_broken_garbage.mp3", "Du bruit."),
        tsv_row("common_voice_fr_broken_silent.mp3", "Le silence."),
        tsv_row("common_voice_fr_broken_long.mp3", "Un deux trois."),
        # CSV-style quoting in one row, an unbalanced raw quote in the next: neither may swallow a row
        tsv_row("common_voice_fr_quoted.mp3", '"Il a dit ""oui""."'),
    ]
    (clips / "common_voice_fr_broken_empty_text.mp3").write_bytes(good)
    (clips / "common_voice_fr_broken_cyrillic.mp3").write_bytes(good)
    with open(lang / "train.tsv", "a") as f:
        f.write("\n".join(extra_train) + "\n")
    with open(lang / "dev.tsv", "a") as f:
        # its own speaker: the broken train rows' would be left out of train as a dev speaker's
        f.write(tsv_row("common_voice_fr_dev_unseen_char.mp3", 'L\'Haÿ-les-Roses, dit-il "enfin.',
                        client="broken-dev-speaker") + "\n")
    return root


@pytest.fixture(scope="session")
def shards_dir(broken_root, tmp_path_factory) -> Path:
    """Shards of the broken corpus, 8 clips a shard, 2 jobs."""
    from pipeline.build import BuildConfig, build

    out = tmp_path_factory.mktemp("shards") / LANG
    build(BuildConfig(cv_root=broken_root, lang=LANG, out=out, jobs=2, shard_size=8, progress=False,
                      max_duration=15.0))
    return out


@pytest.fixture(scope="session")
def float16_shards(broken_root, tmp_path_factory) -> Path:
    """`shards_dir` stored in float16: the features exactly as transcribe computes them (qdelta
    rounds each value by up to 1/16, enough to change a letter of the untrained model's babble)."""
    from pipeline.build import BuildConfig, build

    out = tmp_path_factory.mktemp("shards-f16") / LANG
    build(BuildConfig(cv_root=broken_root, lang=LANG, out=out, jobs=2, shard_size=8, progress=False,
                      max_duration=15.0, codec="float16"))
    return out


@pytest.fixture(scope="session")
def tiny_ctc(shards_dir, tmp_path_factory) -> Path:
    """A tiny CTC model trained for a few steps on `shards_dir` (its checkpoint path)."""
    from asr.training.loop import TrainConfig, train

    out = tmp_path_factory.mktemp("run") / "tiny-ctc"
    train(TrainConfig(shards=str(shards_dir), out=str(out), preset="tiny", max_steps=30, warmup=5,
                      batch_frames=4000, eval_every=0, workers=0, progress=False, lr=3e-3))
    return out / "last.pt"


@pytest.fixture(scope="session")
def handful_shards(synth_root, tmp_path_factory) -> Path:
    """Shards of 6 train utterances (dev/test kept), for overfitting."""
    from pipeline.build import BuildConfig, build

    root = tmp_path_factory.mktemp("cv-handful")
    src, dst = synth_root / LANG, root / LANG
    dst.mkdir()
    (dst / "clips").symlink_to(src / "clips")
    for name in ("dev", "test", "validated"):
        shutil.copy(src / f"{name}.tsv", dst / f"{name}.tsv")
    lines = (src / "train.tsv").read_text().splitlines()
    (dst / "train.tsv").write_text("\n".join(lines[:7]) + "\n")
    out = tmp_path_factory.mktemp("shards-handful") / LANG
    build(BuildConfig(cv_root=root, lang=LANG, out=out, jobs=1, progress=False))
    return out


@pytest.fixture(scope="session")
def chatty_ckpt(tiny_ctc, tmp_path_factory) -> Path:
    """`tiny_ctc`'s checkpoint with freshly initialised (seeded) weights.

    The 30-step model says nothing yet (all blanks); an untrained one spells a long arbitrary
    string for any input, different for every clip.
    """
    import torch

    from asr.nets.models import build_model
    from asr.store import checkpoint

    ckpt = checkpoint.load(tiny_ctc)
    torch.manual_seed(0)
    ckpt["state_dict"] = build_model(ckpt["model"]).state_dict()
    path = tmp_path_factory.mktemp("chatty") / "chatty.pt"
    checkpoint.save(path, {k: v for k, v in ckpt.items() if k != "format"})
    return path


@pytest.fixture(scope="session")
def streaming_ckpt(shards_dir, tmp_path_factory) -> Path:
    """A conformer-tiny CTC model trained with --streaming for a few steps (chunk draws, causal
    conv), then given fresh seeded weights as `chatty_ckpt` is: it spells a long string for any
    input, so a wrong chunk, cache or frame changes its text."""
    import torch

    from asr.nets.models import build_model
    from asr.store import checkpoint
    from asr.training.loop import TrainConfig, train

    out = tmp_path_factory.mktemp("run") / "stream-ctc"
    train(TrainConfig(shards=str(shards_dir), out=str(out), preset="conformer-tiny", model_options={"streaming": True},
                      max_steps=8, warmup=2, batch_frames=4000, eval_every=0, workers=0, progress=False, lr=3e-3))
    ckpt = checkpoint.load(out / "last.pt")
    torch.manual_seed(0)
    weights = build_model(ckpt["model"]).state_dict()
    weights["head.weight"] *= 30  # a tiny Conformer's fresh outputs vary too little from frame to frame
    weights["encoder.front.proj.weight"] *= 3
    ckpt["state_dict"] = weights
    path = out / "chatty.pt"
    checkpoint.save(path, {k: v for k, v in ckpt.items() if k != "format"})
    return path


@pytest.fixture(scope="session")
def learnt(handful_shards, tmp_path_factory) -> dict:
    """ctc/small overfit on the 6 utterances of `handful_shards` (it spells them right), their
    clips and texts. Session-wide: test_api and test_longform both use it. One CTC frame per
    encoder frame (upsample 1): with small's upsample 2 these 90 steps do not yet spell the clips
    right; test_longform makes the upsample-2 twin of this model from its weights."""
    import pyarrow.parquet as pq

    from asr.data.specaug import SpecAugmentConfig
    from asr.training.loop import TrainConfig, train

    out = tmp_path_factory.mktemp("run-learnt") / "ctc"
    train(TrainConfig(shards=str(handful_shards), out=str(out), preset="small",
                      model_options={"dropout": 0.0, "upsample": 1}, dev_split="train", eval_utts=6, max_steps=90, warmup=20, lr=2e-3, min_lr_ratio=0.5,
                      batch_frames=10**5, eval_every=0, workers=0, threads=1, progress=False, weight_decay=0.0,
                      specaug=SpecAugmentConfig(freq_masks=0, time_masks=0)))
    rows = sorted((r for r in pq.read_table(handful_shards / "index.parquet").to_pylist() if r["split"] == "train"),
                  key=lambda r: r["id"])
    return {"ckpt": out / "last.pt", "rows": rows}


_DIE_AFTER_TAR = """
import os, sys
sys.path.insert(0, {root!r})
import pipeline.build as S
import pipeline.extract as E   # the shard writer is called from the extractor
from pathlib import Path
calls = 0
real = E.write_tar
def dying_write_tar(path, samples, *codec):
    global calls
    result = real(path, samples, *codec)
    calls += 1
    if calls == {die_at}:   # this tar is written but not yet renamed: die like kill -9
        os._exit(137)
    return result
E.write_tar = dying_write_tar
S.build(S.BuildConfig(cv_root=Path({cv!r}), lang="fr", out=Path({out!r}), jobs=1, shard_size=8,
                      progress=False, max_duration=15.0, speeds={speeds!r}))
"""


def build_killed_after_tar(cv: Path, out: Path, die_at: int, speeds: tuple = ()) -> subprocess.CompletedProcess:
    """A one-job `shards` build (shard size 8) in a child process that dies like kill -9 right
    after writing its `die_at`-th tar, before renaming it."""
    script = _DIE_AFTER_TAR.format(root=str(ROOT), cv=str(cv), out=str(out), die_at=die_at, speeds=tuple(speeds))
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)


@pytest.fixture(scope="session")
def lm(shards_dir, tmp_path_factory) -> Path:
    """A word 3-gram LM (ARPA) of `shards_dir`'s train sentences (test_serve and its browser tests)."""
    from asr.decoding.lm import build_lm_from_shards

    out = tmp_path_factory.mktemp("lm") / "lm-3gram.arpa"
    build_lm_from_shards(shards_dir, 3, out)
    return out


def as_stored(feats: np.ndarray, codec: str = "qdelta") -> np.ndarray:
    """What a reader gets back of `feats` stored under `codec` (qdelta: quantised to its step)."""
    from pipeline.shardformat import decode_features, encode_features

    return decode_features(dict([encode_features(feats, codec)]))


def one_line(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """The failure's last stderr line, after checking exit 1, no traceback and every fragment in it."""
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    for fragment in fragments:
        assert fragment in last, (fragment, last)
    return last


@contextlib.contextmanager
def serve_in_thread(app):
    """`app` served by uvicorn in a thread on a free loopback port: yields the port."""
    import threading
    import time

    import uvicorn

    sock = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
