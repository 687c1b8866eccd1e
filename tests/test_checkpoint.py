"""Checkpoints cannot carry code: a crafted pickle, a foreign file or an old pickled cv-asr
checkpoint is refused with one line naming the file, and nothing in it runs; a checkpoint
(safetensors + JSON) round-trips weights, tokenizer, metadata and the resume state exactly."""

from __future__ import annotations

import json
import os
import pickle
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from asr.nets.models import build_model, load_model, model_config
from asr.store import checkpoint
from asr.store.checkpoint import CheckpointError
from asr.tokens.subword import UnigramTokenizer
from asr.tokens.tokenizer import tokenizer_from_state
from conftest import LANG, ROOT
from pipeline.shardformat import ShardSet

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


class Payload:
    """Unpickling this runs `touch <marker>` (what an attacker's checkpoint would do)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def malicious_files(tmp_path: Path) -> tuple[Path, list[Path]]:
    """The marker file their payload would create, and two crafted checkpoints: a raw pickle and
    torch.save's zip (both with a cv-asr-looking dict around the payload)."""
    marker = tmp_path / "pwned"
    raw = tmp_path / "raw-pickle.pt"
    raw.write_bytes(pickle.dumps({"format": "cv-asr-checkpoint-2", "state_dict": Payload(marker)}))
    zipped = tmp_path / "torch-save.pt"
    torch.save({"weights": torch.zeros(2), "x": Payload(marker)}, zipped)
    return marker, [raw, zipped]


def test_the_crafted_files_really_run_code_when_unpickled(tmp_path):
    """The control: pickle / torch.load(weights_only=False) of these files creates the marker,
    so the tests below would see it if anything unpickled them."""
    marker, files = malicious_files(tmp_path)
    for path in files:
        assert not marker.exists()
        code = (f"import pickle, torch; p = {str(path)!r}\n"
                "try: torch.load(p, weights_only=False)\n"
                "except Exception: pickle.load(open(p, 'rb'))")
        subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, timeout=120)
        assert marker.exists(), path
        marker.unlink()


def test_load_model_refuses_a_malicious_pickle_and_runs_nothing(tmp_path):
    marker, files = malicious_files(tmp_path)
    for path in files:
        with pytest.raises(CheckpointError) as err:
            load_model(path)
        message = str(err.value)
        assert str(path) in message and "\n" not in message
        assert "is not a cv-asr checkpoint" in message and "can run code when loaded" in message
        with pytest.raises(CheckpointError):
            checkpoint.load(path, train_state=True)
        assert not marker.exists()


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *map(str, args)], capture_output=True, text=True,
                          env=ENV, timeout=300)


def test_transcribe_and_eval_refuse_a_malicious_pickle_as_real_processes(shards_dir, broken_root, tmp_path):
    marker, files = malicious_files(tmp_path)
    clip = sorted((broken_root / LANG / "clips").glob("*.mp3"))[0]
    for path in files:
        for args in (["transcribe", "--checkpoint", path, "--device", "cpu", clip],
                     ["eval", "--checkpoint", path, "--shards", shards_dir, "--split", "dev", "--out",
                      tmp_path / "eval", "--device", "cpu", "--workers", 0, "--no-progress"]):
            proc = cli(*args)
            assert proc.returncode == 1, proc.stdout + proc.stderr
            lines = proc.stderr.strip().splitlines()
            assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
            assert str(path) in lines[0] and "is not a cv-asr checkpoint" in lines[0]
            assert not marker.exists()
    assert not (tmp_path / "eval").exists()


def test_foreign_files_get_one_line_naming_them(tmp_path):
    from safetensors.torch import save_file

    binary = tmp_path / "random.bin"
    binary.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    text = tmp_path / "notes.pt"
    text.write_text("hello, this is not a model\n")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(3)}, str(other), metadata={"format": "pt"})
    old = tmp_path / "old.pt"  # what cv-asr wrote before: a pickled dict tagged with the old format
    torch.save({"format": "cv-asr-checkpoint-1", "state_dict": {"w": torch.zeros(3)}, "lang": "fr"}, old)
    cases = [(binary, "is not a readable checkpoint"), (text, "is not a readable checkpoint"),
             (empty, "is not a readable checkpoint"), (other, "is not a cv-asr checkpoint"),
             (tmp_path / "absent.pt", "does not exist"),
             (old, "was made by an earlier cv-asr in a format that can carry code (a pickle) and will not be "
                   "loaded: retrain")]
    for path, expected in cases:
        with pytest.raises(CheckpointError) as err:
            load_model(path)
        assert expected in str(err.value) and str(path) in str(err.value), str(err.value)
        assert "\n" not in str(err.value)


def deep_equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and sorted(map(str, a)) == sorted(map(str, b)) and all(deep_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(deep_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and a != a:
        return isinstance(b, float) and b != b
    return type(a) is type(b) and a == b


def test_a_checkpoint_round_trips_weights_tokenizer_metadata_and_train_state(shards_dir, tmp_path):
    texts = [r["text"] for r in ShardSet.open(shards_dir).read_index(columns=["text"], split="train")]
    tok = UnigramTokenizer.train(texts, 50)
    model = build_model(model_config("las", "tiny", len(tok), 80))
    model.units = list(tok.units)  # the LAS model's extra state (a uint8 tensor) is saved with its weights
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.98))
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    opt.step()
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5)
    random.seed(3)
    np.random.seed(3)
    payload = {"model": model_config("las", "tiny", len(tok), 80), "state_dict": model.state_dict(),
               "tokenizer": tok.state_dict(), "features": {"n_mels": 80, "hop_ms": 10.0},
               "normalizer": {"version": 2, "lang": "fr"}, "cmvn": {"mean": [0.5] * 80, "std": [2.0] * 80},
               "lang": "fr", "position": {"step": 7, "epoch": 1, "step_in_epoch": 2, "skipped": 0},
               "best_cer": float("inf"), "train_seconds": 1.25, "train_config": {"shards": "s", "tokens": "unigram:50"},
               "metrics": {"cer": 0.125, "wer": float("nan")}, "optimizer": opt.state_dict(),
               "scheduler": sched.state_dict(), "scaler": {}, "rng": [checkpoint.rng_state()]}
    path = tmp_path / "ckpt.pt"
    checkpoint.save(path, payload)
    assert path.read_bytes()[8:9] == b"{"  # a safetensors header, not a pickle

    loaded = checkpoint.load(path, train_state=True)
    for key, value in payload.items():
        assert deep_equal(value, loaded[key]), key
    assert "optimizer" not in checkpoint.load(path, train_state=False)  # what load_model reads

    # the restored objects behave the same: the tokenizer, the optimizer, the RNGs
    tok2 = tokenizer_from_state(loaded["tokenizer"])
    assert tok2.kind == "unigram" and tok2.units == tok.units and tok2.encode(texts[0]) == tok.encode(texts[0])
    expected = (random.random(), np.random.rand(3), torch.rand(3))
    random.seed(99), np.random.seed(99), torch.manual_seed(99)
    checkpoint.set_rng_state(loaded["rng"][0])
    got = (random.random(), np.random.rand(3), torch.rand(3))
    assert expected[0] == got[0] and np.array_equal(expected[1], got[1]) and torch.equal(expected[2], got[2])
    model2 = build_model(loaded["model"])
    model2.load_state_dict(loaded["state_dict"])
    opt2 = torch.optim.AdamW(model2.parameters(), lr=1e-3)
    opt2.load_state_dict(loaded["optimizer"])
    assert deep_equal(opt2.state_dict(), opt.state_dict())


def test_load_model_reads_a_trained_checkpoint(tiny_ctc):
    model, tok, typed = load_model(tiny_ctc)
    ckpt = typed.to_payload()  # the file's keys, as the typed Checkpoint reads and writes them
    assert tiny_ctc.read_bytes()[8:9] == b"{"
    for key in ("model", "lang", "features", "cmvn", "normalizer", "metrics", "position", "train_config",
                "tokenizer", "state_dict"):
        assert key in ckpt, key
    assert ckpt["position"]["step"] == 30 and ckpt["lang"] == LANG and tok.kind == "char"
    assert typed.step == 30 and typed.card.lang == LANG and typed.card.kind == "ctc"
    assert all(torch.equal(v, ckpt["state_dict"][k]) for k, v in model.state_dict().items())
    assert "optimizer" not in ckpt and "rng" not in ckpt and typed.train_state is None
    resume = checkpoint.load(tiny_ctc)
    assert {"optimizer", "scheduler", "scaler", "rng"} <= set(resume)
    assert isinstance(resume["rng"][0]["numpy"][1], np.ndarray) and resume["rng"][0]["numpy"][1].dtype == np.uint32


def test_a_header_length_whose_first_byte_is_a_pickle_opcode_still_loads(tiny_ctc, tmp_path):
    """A safetensors file starts with its header's length, little-endian: for one length in 256
    the first byte is 0x80, a pickle's first opcode (a LAS run's averaging checkpoint had a
    9,856-byte header and was refused as a pickle). Such a file loads; a real pickle does not."""
    ckpt = checkpoint.load(tiny_ctc)
    path = tmp_path / "x80.pt"
    for pad in range(300):  # the payload's free-text config field moves the header length a byte at a time
        checkpoint.save(path, {**ckpt, "train_config": {**ckpt["train_config"], "note": "x" * pad}})
        if path.read_bytes()[:1] == b"\x80":
            break
    head = path.read_bytes()
    assert head[:1] == b"\x80" and head[8:9] == b"{", "no padding gave a header length of 0x..80"
    loaded = checkpoint.load(path)
    assert all(torch.equal(v, ckpt["state_dict"][k]) for k, v in loaded["state_dict"].items())
    assert load_model(path)[2].to_payload()["position"] == ckpt["position"]
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps({"state_dict": {}}))
    with pytest.raises(CheckpointError, match="it is a pickle"):
        checkpoint.load(raw)


def test_saving_an_arbitrary_object_is_refused(tmp_path):
    with pytest.raises(TypeError, match="plain data and tensors only"):
        checkpoint.save(tmp_path / "x.pt", {"lang": "fr", "metrics": {"f": lambda: 1}})
    assert not (tmp_path / "x.pt").exists() and list(tmp_path.iterdir()) == []


def test_no_loader_in_the_code_unpickles():
    """Nothing under asr/, pipeline/, commands/ or cli.py loads a pickle that could run code."""
    sources = [*(p for pkg in ("asr", "pipeline", "commands") for p in sorted((ROOT / pkg).rglob("*.py"))), ROOT / "cli.py"]
    offenders = []
    for src in sources:
        for n, line in enumerate(src.read_text().splitlines(), 1):
            if ("weights_only=False" in line or re.search(r"\bpickle\.loads?\(", line)
                    or re.search(r"\btorch\.load\((?!.*weights_only=True)", line)
                    or "allow_pickle=True" in line):
                offenders.append(f"{src.relative_to(ROOT)}:{n}: {line.strip()}")
    assert offenders == []


def test_checkpoint_upgrade_converts_an_old_checkpoint_and_runs_nothing(tiny_ctc, tmp_path):
    payload = checkpoint.load(tiny_ctc)
    del payload["format"]
    old = tmp_path / "old.pt"  # exactly what the earlier cv-asr's checkpoint.save wrote
    torch.save({"format": checkpoint.OLD_FORMAT, **payload}, old)
    with pytest.raises(CheckpointError, match="earlier cv-asr"):
        load_model(old)
    proc = cli("checkpoint", "upgrade", old, "--out", tmp_path / "new.pt")
    assert proc.returncode == 0 and proc.stdout.strip() == f"wrote {tmp_path / 'new.pt'}", proc.stderr
    upgraded = checkpoint.load(tmp_path / "new.pt")
    for key, value in payload.items():
        assert deep_equal(value, upgraded[key]), key
    assert load_model(tmp_path / "new.pt")[2].to_payload()["position"] == payload["position"]

    # a crafted file that claims to be an old cv-asr checkpoint: refused by the restricted unpickler
    marker = tmp_path / "pwned"
    crafted = tmp_path / "crafted.pt"
    torch.save({"format": checkpoint.OLD_FORMAT, "lang": "fr", "x": Payload(marker)}, crafted)
    proc = cli("checkpoint", "upgrade", crafted)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert f"{crafted} holds more than tensors and plain data, not converted" in proc.stderr
    assert not marker.exists() and not (tmp_path / "crafted.safe.pt").exists()
    proc = cli("checkpoint", "upgrade", tmp_path / "new.pt")  # already new: nothing to do
    assert proc.returncode == 1 and "is not a checkpoint of an earlier cv-asr (nothing to upgrade)" in proc.stderr


def test_a_checkpoint_written_before_the_third_pass_loads_and_gives_its_outputs():
    """tests/data/e1b88aa-conformer-tiny.pt was written by cv-asr at e1b88aa (before asr/ became
    folders and checkpoints became typed): it loads through open_model, its card is checked,
    and its log-probs on a seeded input are those that version computed (the .json beside it)."""
    from asr.inference.loading import open_model

    data = ROOT / "tests" / "data"
    want = json.loads((data / "e1b88aa-conformer-tiny.json").read_text())
    loaded = open_model(data / "e1b88aa-conformer-tiny.pt")
    assert loaded.kind == "ctc" and loaded.step == want["step"] and len(loaded.tokenizer) == want["units"]
    assert loaded.mean[0] == pytest.approx(want["cmvn_mean_0"]) and loaded.card.preset == "conformer-tiny"
    feats = torch.randn(2, 120, 80, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        lp, n = loaded.model.log_probs(feats, torch.tensor([120, 77]))
    assert n.tolist() == want["lengths"]
    assert [lp[i, :int(n[i])].argmax(-1).tolist() for i in range(2)] == want["argmax"]
    assert [float(lp[i, :int(n[i])].sum()) for i in range(2)] == pytest.approx(want["log_probs_sum"], rel=1e-5)
