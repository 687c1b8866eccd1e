"""CTC with SentencePiece pieces (`--tokens unigram:N`): training, greedy and beam (+ word LM)
decoding through eval, transcribe with word timestamps."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from asr.decoding.ctc import CTCBeamDecoder, CTCGreedyDecoder
from asr.decoding.lm import build_arpa, build_lm_from_shards, read_arpa_unigrams
from asr.decoding.options import DecodeOptions
from asr.decoding.timestamps import align_words
from asr.inference.evaluate import UTTERANCES_FILE, EvalConfig, evaluate
from asr.nets.models import build_model
from asr.store import checkpoint
from asr.tokens.subword import WORD_START, UnigramTokenizer
from asr.tokens.tokenizer import tokenizer_from_state
from asr.training.loop import TrainConfig, train
from cli import app

PIECES = 60


@pytest.fixture(scope="module")
def unigram_run(shards_dir, tmp_path_factory) -> dict:
    """A tiny unigram CTC model trained a few steps, an untrained copy that spells a lot (a
    few-step model says nothing yet), and a bigram LM of the train text."""
    out = tmp_path_factory.mktemp("unigram-ctc") / "run"
    summary = train(TrainConfig(shards=str(shards_dir), out=str(out), model="ctc", preset="tiny",
                                tokens=f"unigram:{PIECES}", max_steps=8, warmup=2, batch_frames=4000, eval_every=4,
                                eval_utts=20, workers=0, progress=False))
    ckpt = checkpoint.load(out / "last.pt")
    torch.manual_seed(1)
    ckpt["state_dict"] = build_model(ckpt["model"]).state_dict()
    chatty = out.parent / "chatty.pt"
    checkpoint.save(chatty, {k: v for k, v in ckpt.items() if k != "format"})
    lm = out.parent / "lm.arpa"
    build_lm_from_shards(shards_dir, 2, lm)
    return {"out": out, "summary": summary, "chatty": chatty, "lm": lm,
            "tokenizer": tokenizer_from_state(ckpt["tokenizer"])}


def test_unigram_ctc_trains(unigram_run):
    s, out = unigram_run["summary"], unigram_run["out"]
    assert s["step"] == 8 and s["skipped_batches"] == 0
    ckpt = checkpoint.load(out / "last.pt")
    tok = unigram_run["tokenizer"]
    assert ckpt["tokenizer"]["kind"] == "unigram" and ckpt["model"]["kind"] == "ctc"
    assert ckpt["model"]["vocab_size"] == len(tok) <= PIECES + 2
    assert ckpt["state_dict"]["head.weight"].shape[0] == len(tok)
    losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()
              if "loss" in json.loads(line)]
    assert losses and all(0 < x < 1e3 for x in losses)
    assert (out / "unigram" / "unigram.model").is_file()


def _eval(run: dict, shards_dir: Path, out: Path, **decode) -> dict[str, str]:
    evaluate(EvalConfig(run["chatty"], shards_dir, "dev", DecodeOptions(**decode), out=out, workers=0, threads=1,
                        progress=False))
    return {r["id"]: r["hypothesis"]
            for r in map(json.loads, (out / UTTERANCES_FILE).read_text(encoding="utf-8").splitlines())}


def test_eval_greedy_and_beam_give_words_not_pieces(unigram_run, shards_dir, tmp_path):
    tok = unigram_run["tokenizer"]
    pieces = set(tok.units[3:])
    greedy = _eval(unigram_run, shards_dir, tmp_path / "greedy")
    beam = _eval(unigram_run, shards_dir, tmp_path / "beam", beam=8)
    for hyps in (greedy, beam):
        assert all(hyps.values())  # an untrained model spells something for every clip
        for text in hyps.values():
            assert WORD_START not in text and "<" not in text and text == " ".join(text.split())
            # each word is pieces glued together: its first piece starts a word
            for word in text.split():
                assert tok.spell(word) is not None and set(tok.spell(word)) <= pieces

    lm_words = set(read_arpa_unigrams(unigram_run["lm"]))
    with_lm = _eval(unigram_run, shards_dir, tmp_path / "lm", beam=8, lm=unigram_run["lm"])
    assert any(with_lm.values())
    for text in with_lm.values():
        assert WORD_START not in text and set(text.split()) <= lm_words  # the lexicon bounds the words


def test_greedy_text_is_the_best_paths_pieces(unigram_run, shards_dir):
    tok = unigram_run["tokenizer"]
    ids = [tok.encode("le chat")[0], 0, *tok.encode("le chat")[1:], 0, 0]
    log_probs = torch.full((1, len(ids), len(tok)), -20.0)
    for t, i in enumerate(ids):
        log_probs[0, t, i] = 0.0
    assert CTCGreedyDecoder(tok).decode(log_probs, torch.tensor([len(ids)])) == ["le chat"]


def _spikes(tok, text: str, gap: int = 3) -> tuple[torch.Tensor, list[int]]:
    """Log-probs with each piece of `text` certain on one frame, `gap` blank frames between;
    returns them and the frames of the word-starting pieces."""
    ids = tok.encode(text)
    T = gap * len(ids) + gap
    lp = torch.full((T, len(tok)), -30.0)
    lp[:, 0] = 0.0
    starts = []
    for k, i in enumerate(ids):
        t = gap * k + 1
        lp[t, 0], lp[t, i] = -30.0, 0.0
        if tok.starts_word(i):
            starts.append(t)
    return lp.log_softmax(-1), starts


def test_beam_with_lm_spells_lm_words_in_pieces(tmp_path):
    texts = ["le chat dort sur la chaise", "le chien mange la soupe", "la chaise est rouge", "un chat noir dort"] * 5
    tok = UnigramTokenizer.train(texts, 30)
    lp, _ = _spikes(tok, "le chat dort")
    lengths = torch.tensor([lp.shape[0]])
    assert CTCBeamDecoder(tok, DecodeOptions(beam=10)).decode(lp[None], lengths) == ["le chat dort"]
    build_arpa(texts, 2, tmp_path / "lm.arpa")
    dec = CTCBeamDecoder(tok, DecodeOptions(beam=10, lm=tmp_path / "lm.arpa"))
    assert dec.lexicon_size == len(set(" ".join(texts).split()))
    assert dec.decode(lp[None], lengths) == ["le chat dort"]
    # "le chat" + "s": "chats" is no LM word, so the lexicon search cannot output it
    lp2, _ = _spikes(tok, "le chats dort")
    assert "chats" not in dec.decode(lp2[None], lengths.new_tensor([lp2.shape[0]]))[0].split()


def test_word_timestamps_start_at_word_pieces(unigram_run):
    tok = unigram_run["tokenizer"]
    text = "le chat dort sur la chaise"
    lp, starts = _spikes(tok, text)
    words = align_words(lp, text, tok, shift=0.04)
    assert [w.word for w in words] == text.split()
    assert [w.start for w in words] == [round(t * 0.04, 3) for t in starts]
    assert all(w.end > w.start for w in words) and all(a.end <= b.start for a, b in zip(words, words[1:]))


def test_transcribe_a_unigram_model(unigram_run, float16_shards, broken_root, tmp_path):
    shards_dir = float16_shards  # the features exactly as transcribe computes them
    greedy = _eval(unigram_run, shards_dir, tmp_path / "greedy")
    rows = {r["id"]: r for r in pq.read_table(shards_dir / "index.parquet").to_pylist()}
    ids = sorted(greedy)[:3]
    res = CliRunner().invoke(app, ["transcribe", "--checkpoint", str(unigram_run["chatty"]), "--json",
                                   *[str(broken_root / "fr" / "clips" / rows[i]["path"]) for i in ids]])
    assert res.exit_code == 0, res.output
    objects = [json.loads(line) for line in res.stdout.splitlines()]
    assert [o["text"] for o in objects] == [greedy[i] for i in ids]
    for o in objects:
        assert [w["word"] for w in o["words"]] == o["text"].split()
        times = [(w["start"], w["end"]) for w in o["words"]]
        assert all(s is not None and e > s for s, e in times)
        assert all(a[1] <= b[0] for a, b in zip(times, times[1:]))


def test_recognizer_with_lm_on_a_unigram_model(unigram_run, float16_shards, broken_root, tmp_path):
    from asr import Recognizer

    shards_dir = float16_shards  # the features exactly as transcribe computes them
    with_lm = _eval(unigram_run, shards_dir, tmp_path / "lm", lm=unigram_run["lm"])
    rows = {r["id"]: r for r in pq.read_table(shards_dir / "index.parquet").to_pylist()}
    rec = Recognizer.load(unigram_run["chatty"], lm=unigram_run["lm"], device="cpu")
    for uid in sorted(with_lm)[:2]:
        r = rec.transcribe(broken_root / "fr" / "clips" / rows[uid]["path"])
        assert r.text == with_lm[uid]
        assert [w.word for w in r.words] == r.text.split()
        aligned = rec.align(broken_root / "fr" / "clips" / rows[uid]["path"], rows[uid]["text"])
        assert [w.word for w in aligned] == rows[uid]["text"].split()
