"""--init-from (asr/training/finetune.py): a new run from a trained checkpoint's network. Shared units keep
their trained rows exactly, the others their fresh initialisation, every other tensor is the
parent's; --freeze-encoder-steps freezes; refused combinations say so in one line; a fine-tuned
checkpoint is a checkpoint like any other (eval, transcribe, export)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from asr.nets.models import build_model, model_config
from asr.store import checkpoint
from asr.tokens.subword import UnigramTokenizer
from asr.tokens.tokenizer import CharTokenizer
from asr.training import finetune
from asr.training.loop import TrainConfig, train, train_local
from conftest import LANG, ROOT, one_line

NEW_CHARS = ["ø", "þ"]  # letters the French corpus never has: the child's new units


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def child_shards(shards: Path, out: Path, **changes) -> Path:
    """A copy of `shards` as another language's: a vocabulary with some of the parent's letters
    left out, two new ones, in another order (so rows must be mapped, not copied by position);
    `changes` overrides other dataset.json fields."""
    shutil.copytree(shards, out)
    dataset = json.loads((out / "dataset.json").read_text())
    vocab = [c for c in dataset["vocab"] if c not in "xyzk"]
    dataset.update(vocab=NEW_CHARS[:1] + vocab[::-1] + NEW_CHARS[1:], lang="xx", **changes)
    (out / "dataset.json").write_text(json.dumps(dataset))
    return out


@pytest.fixture(scope="module")
def child(shards_dir, tmp_path_factory) -> Path:
    return child_shards(shards_dir, tmp_path_factory.mktemp("child") / "xx")


def small_run(shards: Path, out: Path, **options) -> TrainConfig:
    defaults = dict(batch_frames=4000, eval_every=0, eval_utts=4, workers=0, progress=False)
    return TrainConfig(shards=str(shards), out=str(out), **{**defaults, **options})


def encoder_tensors(state: dict) -> dict:
    return {k: v for k, v in state.items() if k.startswith("encoder.")}


# --------------------------------------------------------------------------------------
# the rows: shared units copied exactly, the others fresh, every other tensor the parent's
# --------------------------------------------------------------------------------------
def _tokenizers(tokens: str, parent_vocab: list[str], texts: list[str], tmp_path: Path):
    parent = CharTokenizer(parent_vocab)
    if tokens == "char":
        child = CharTokenizer(NEW_CHARS[:1] + [c for c in parent_vocab if c not in "xyz"][::-1] + NEW_CHARS[1:])
    else:  # sub-word pieces of the child's text: single-letter pieces are shared with the parent's letters
        child = UnigramTokenizer.train(texts, 40, tmp_path)
    return parent, child


@pytest.mark.parametrize("kind, preset, tokens", [
    ("ctc", "tiny", "char"), ("ctc", "conformer-tiny", "char"), ("las", "tiny", "char"), ("ctc", "tiny", "unigram"),
])
def test_shared_rows_are_copied_and_new_rows_keep_their_fresh_init(kind, preset, tokens, tmp_path):
    vocab = list(" abcdefghijklmnopqrstuvwxyzéè'")
    texts = ["le chat dort sur la chaise", "un deux trois", "il a dit oui", "les roses du jardin"] * 5
    parent_tok, child_tok = _tokenizers(tokens, vocab, texts, tmp_path)
    torch.manual_seed(1)
    parent_conf = model_config(kind, preset, len(parent_tok), 80, {"upsample": 2} if kind == "ctc" else {})
    from asr.store.payload import Checkpoint, ModelCard

    card = ModelCard(model=parent_conf, tokenizer=parent_tok.state_dict(), features={}, cmvn={}, lang="fr")
    parent = Checkpoint(card=card, weights=build_model(parent_conf).state_dict())
    mconf = finetune.child_model_config(parent_conf, len(child_tok), 0.3)
    torch.manual_seed(0)
    fresh = build_model(mconf).state_dict()
    torch.manual_seed(0)
    model = build_model(mconf)
    report = finetune.init_weights(model, parent, child_tok, "parent.pt")
    got, trained = model.state_dict(), parent.weights

    pairs = finetune.shared_units(parent_tok, child_tok)
    shared_child = {c for c, _ in pairs}
    assert report["rows_kept"] == len(pairs) and report["rows_new"] == len(child_tok) - len(pairs)
    assert len(pairs) > 2 + (10 if tokens == "char" else 3)  # the specials and many letters
    if tokens == "char":
        assert report["rows_new"] == len(NEW_CHARS)
    units = model.unit_tensors()
    assert units  # CTC's head (two frames a row block here); LAS's embedding, output layer and CTC head
    for name, blocks in units.items():
        vc, vp = got[name].shape[0] // blocks, trained[name].shape[0] // blocks
        for u in range(blocks):
            for c, p in pairs:
                assert torch.equal(got[name][u * vc + c], trained[name][u * vp + p]), (name, c)
            for c in set(range(vc)) - shared_child:
                assert torch.equal(got[name][u * vc + c], fresh[name][u * vc + c]), (name, c)
                assert not torch.equal(got[name][u * vc + c], trained[name][u * vp + min(c, vp - 1)])
    for name, tensor in got.items():
        if name not in units and not name.endswith("_extra_state"):
            assert torch.equal(tensor, trained[name]), name  # the encoder (and LAS's attention, LSTM) at step 0
    assert encoder_tensors(got)


# --------------------------------------------------------------------------------------
# a real run: the log line, summary.json, the checkpoint is like any other
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def finetuned(tiny_ctc, child, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("ft") / "run"
    done = cli("train", "--shards", child, "--init-from", tiny_ctc, "--out", out, "--max-steps", 4, "--eval-utts", 4,
               "--batch-frames", 4000, "--workers", 0, "--no-progress")
    assert done.returncode == 0, done.stderr[-3000:]
    return {"out": out, "stdout": done.stdout}


def test_a_finetuning_run_logs_and_records_the_rows_it_kept(finetuned, tiny_ctc, child):
    parent = checkpoint.load(tiny_ctc, train_state=False)
    vocab = json.loads((child / "dataset.json").read_text())["vocab"]
    kept = 2 + len(vocab) - len(NEW_CHARS)  # the specials and every letter the parent knew
    assert f"init from {tiny_ctc}: {kept} of {kept + 2} output rows kept (shared units), 2 new" in finetuned["stdout"]
    assert "note: the parent was trained on fr text" in finetuned["stdout"]  # another language: a note, no refusal
    summary = json.loads((finetuned["out"] / "summary.json").read_text())
    assert summary["init_from"]["checkpoint"] == str(tiny_ctc)
    assert (summary["init_from"]["rows_kept"], summary["init_from"]["rows_new"]) == (kept, 2)
    ckpt = checkpoint.load(finetuned["out"] / "last.pt")
    assert ckpt["model"]["options"] == parent["model"]["options"] and ckpt["model"]["preset"] == "tiny"
    assert ckpt["tokenizer"]["vocab"] == vocab and ckpt["lang"] == "xx"
    cfg = ckpt["train_config"]  # the fine-tuning schedule, a fresh step count
    assert (cfg["lr"], cfg["warmup"]) == (pytest.approx(3e-4), 125) and ckpt["position"]["step"] == 4
    assert ckpt["init_from"]["rows_kept"] == kept


def test_a_finetuned_checkpoint_evaluates_transcribes_and_exports(finetuned, child, synth_root, tmp_path):
    from asr.inference.evaluate import EvalConfig, evaluate

    ckpt = finetuned["out"] / "last.pt"
    summary = evaluate(EvalConfig(ckpt, child, "dev", out=tmp_path / "eval", workers=0, threads=1, progress=False))
    assert summary["utterances"] > 0 and 0.0 <= summary["cer"]
    clip = sorted((synth_root / LANG / "clips").glob("*.mp3"))[0]
    done = cli("transcribe", "--checkpoint", ckpt, "--device", "cpu", clip)
    assert done.returncode == 0 and len(done.stdout.splitlines()) == 1, done.stderr[-2000:]
    done = cli("export", "--checkpoint", ckpt, "--out", tmp_path / "model.onnx")
    assert done.returncode == 0 and "checked against PyTorch" in done.stdout, done.stderr[-2000:]


# --------------------------------------------------------------------------------------
# refusals: one line each
# --------------------------------------------------------------------------------------
def test_refused_combinations_say_so_in_one_line(tiny_ctc, child, shards_dir, tmp_path):
    base = ("train", "--shards", child, "--out", tmp_path / "run", "--max-steps", 2, "--workers", 0, "--no-progress")
    other_mels = child_shards(shards_dir, tmp_path / "mels",
                              features={**json.loads((shards_dir / "dataset.json").read_text())["features"],
                                        "n_mels": 40})
    one_line(cli(*base[:2], other_mels, *base[3:], "--init-from", tiny_ctc), "features differ", "n_mels 40, not 80")
    one_line(cli(*base, "--init-from", tiny_ctc, "--resume"), "--init-from starts a new run", "--resume")
    one_line(cli(*base, "--init-from", tiny_ctc, "--preset", "small", "--rnn-hidden", "32"),
             "the network is the parent's (ctc/tiny)", "--preset small, --rnn-hidden 32")
    one_line(cli(*base, "--freeze-encoder-steps", 3), "--freeze-encoder-steps needs --init-from")
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"\x08\x07")  # the suffix is enough: an exported model is never trained
    one_line(cli(*base, "--init-from", onnx), "ONNX model is for inference only, not trainable")
    pickled = tmp_path / "old.pt"
    torch.save({"state_dict": {}}, pickled)
    one_line(cli(*base, "--init-from", pickled), "pickled PyTorch file", "is not loaded")
    assert not (tmp_path / "run" / "last.pt").exists()  # nothing trained


def test_the_same_network_options_as_the_parents_are_accepted(tiny_ctc, child, tmp_path):
    parent = checkpoint.load(tiny_ctc, train_state=False)
    cfg = small_run(child, tmp_path / "r", init_from=str(tiny_ctc), preset="tiny", max_steps=1,
                    model_options={"rnn_hidden": parent["model"]["options"]["rnn_hidden"]})
    assert train(cfg)["init_from"]["rows_new"] == 2


# --------------------------------------------------------------------------------------
# --freeze-encoder-steps
# --------------------------------------------------------------------------------------
def test_the_frozen_encoder_stays_the_parents_then_trains(tiny_ctc, child, tmp_path):
    parent = checkpoint.load(tiny_ctc, train_state=False)
    cfg = small_run(child, tmp_path / "run", init_from=str(tiny_ctc), freeze_encoder_steps=3, max_steps=6,
                    steps_this_run=3, lr=3e-3, warmup=0)
    train(cfg)
    at3 = checkpoint.load(tmp_path / "run" / "last.pt", train_state=False)
    assert at3["position"]["step"] == 3
    for name, t in encoder_tensors(parent["state_dict"]).items():
        assert torch.equal(at3["state_dict"][name], t), name  # no update, no weight decay
    assert not torch.equal(at3["state_dict"]["head.bias"][:4], parent["state_dict"]["head.bias"][:4])
    # resumed with --resume alone: still the fine-tuning run it was, unfrozen from step 3
    summary = train(small_run(child, tmp_path / "run", resume=True, max_steps=6))
    end = checkpoint.load(tmp_path / "run" / "last.pt", train_state=False)
    assert summary["step"] == 6 and summary["init_from"]["freeze_encoder_steps"] == 3
    assert end["train_config"]["lr"] == 3e-3 and end["train_config"]["init_from"] == str(tiny_ctc)
    changed = [n for n, t in encoder_tensors(parent["state_dict"]).items() if not torch.equal(end["state_dict"][n], t)]
    assert len(changed) == len(encoder_tensors(parent["state_dict"]))


def test_freezing_works_with_two_processes(tiny_ctc, child, tmp_path):
    """DDP registers the parameters that take a gradient when it is built: it is built again at
    the unfreezing (gloo, two processes)."""
    parent = checkpoint.load(tiny_ctc, train_state=False)
    cfg = small_run(child, tmp_path / "run", init_from=str(tiny_ctc), freeze_encoder_steps=2, max_steps=4, lr=3e-3,
                    warmup=0, batch_frames=2000, max_frames=2000)
    summary = train_local(cfg, 2)
    assert summary["step"] == 4 and summary["skipped_batches"] == 0
    end = checkpoint.load(tmp_path / "run" / "last.pt", train_state=False)
    assert all(not torch.equal(end["state_dict"][n], t) for n, t in encoder_tensors(parent["state_dict"]).items())


# --------------------------------------------------------------------------------------
# LAS and sub-word units, end to end
# --------------------------------------------------------------------------------------
def test_las_and_unigram_children_train_from_a_parent(shards_dir, child, tmp_path):
    las_parent = tmp_path / "las"
    train(small_run(shards_dir, las_parent, model="las", preset="tiny", max_steps=2))
    summary = train(small_run(child, tmp_path / "las-child", init_from=str(las_parent / "last.pt"), max_steps=2,
                              freeze_encoder_steps=1))
    assert summary["init_from"]["rows_new"] == 2 and summary["step"] == 2
    ckpt = checkpoint.load(tmp_path / "las-child" / "last.pt", train_state=False)
    assert ckpt["model"]["kind"] == "las" and ckpt["model"]["preset"] == "tiny"
    summary = train(small_run(child, tmp_path / "uni-child", init_from=str(las_parent / "last.pt"), max_steps=1,
                              tokens="unigram:60"))
    report = summary["init_from"]
    assert report["units"] == "unigram" and report["parent_kind"] == "char"
    assert 3 < report["rows_kept"] < report["rows_total"]  # the specials and the one-letter pieces
