"""Listen, Attend and Spell (asr/nets/las.py), its decoding (asr/decoding/las.py, asr/decoding/scorers.py) and
SentencePiece units (asr/tokens/subword.py).

Two corpora:
* a toy "acoustic" corpus built here in memory: every character of a sentence is a few
  frames of its own random prototype vector plus noise, with random durations, so the true
  alignment is known. Two kinds of sentences: random strings (no "e", no space: nothing to
  memorise, so the attention must find each character) and sentences of a few French words,
  where "a" and "e" share one prototype (acoustically identical): "la" / "le" can only be
  told apart by the speller's prior ("la" is twice as frequent in training) or by a language
  model. A tiny LAS learns both in 400 steps (~15 s on one core);
* the synthetic French corpus of conftest.py (espeak-ng speech, real log-Mel shards).
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import jiwer
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from asr.data.loader import Batch, LoaderConfig, ShardStream
from asr.decoding.decoder import DecodeOptions, greedy_texts
from asr.decoding.las import LASBeamSearch, LASGreedyDecoder
from asr.decoding.scorers import CTCPrefixScorer
from asr.nets.las import LASModel
from asr.nets.models import LAS_PRESETS, build_model, count_parameters, model_config
from asr.tokens.subword import UnigramTokenizer
from asr.tokens.tokenizer import CharTokenizer
from asr.tokens.units import BLANK, EOS, SPECIALS
from pipeline.shardformat import ShardSet

TOY_WORDS = ("la", "la", "le", "chat", "dort", "un", "chien", "mange")  # "la" twice as likely as "le"
TOY_VOCAB = sorted(set("".join(TOY_WORDS)) | {" "})
TOY_MELS = 20
TOY_STEPS = 400
# Attention on random strings, measured on the trained toy model (alignment_stats): the
# argmax frame never moved back (forward 1.0 with torch seeds 0 and 1) and followed the
# true character centres with correlation 0.999 (seed 0; 0.976 with seed 1). An untrained
# model attends to frame 0 throughout: correlation 0.
MIN_FORWARD = 0.95
MIN_CORRELATION = 0.95


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Two shared cores: one intra-op thread is ~10x faster than two fighting for them."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# --------------------------------------------------------------------------------------
# toy corpus
# --------------------------------------------------------------------------------------
def toy_prototypes() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1234)
    protos = {c: torch.randn(TOY_MELS, generator=g) for c in TOY_VOCAB}
    protos["e"] = protos["a"]  # acoustically identical
    return protos


def toy_batch(sentences: list[str], seed: int) -> tuple[Batch, list[list[tuple[int, int]]]]:
    """Features for `sentences` -> Batch (char ids) and each unit's (start, end) input frames."""
    tok = CharTokenizer(TOY_VOCAB)
    protos = toy_prototypes()
    g = torch.Generator().manual_seed(seed)
    feats, spans = [], []
    for s in sentences:
        frames, span, t = [], [], 0
        for c in s:
            d = int(torch.randint(8, 15, (1,), generator=g))
            frames.append(protos[c].expand(d, TOY_MELS) + 0.5 * torch.randn(d, TOY_MELS, generator=g))
            span.append((t, t + d))
            t += d
        feats.append(torch.cat(frames))
        spans.append(span)
    T, L = max(len(x) for x in feats), max(len(s) for s in sentences)
    x = torch.zeros(len(sentences), T, TOY_MELS)
    y = torch.zeros(len(sentences), L, dtype=torch.long)
    for i, (f, s) in enumerate(zip(feats, sentences)):
        x[i, : len(f)] = f
        y[i, : len(s)] = torch.tensor(tok.encode(s))
    return Batch(x, torch.tensor([len(f) for f in feats]), y, torch.tensor([len(s) for s in sentences]),
                 [str(i) for i in range(len(sentences))], list(sentences)), spans


def random_strings(n: int, seed: int) -> list[str]:
    """4-10 characters, no "e", no space, no character twice in a row."""
    alphabet = [c for c in TOY_VOCAB if c not in " e"]
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        length = int(torch.randint(4, 11, (1,), generator=g))
        s = [alphabet[int(torch.randint(len(alphabet), (1,), generator=g))]]
        while len(s) < length:
            c = alphabet[int(torch.randint(len(alphabet), (1,), generator=g))]
            if c != s[-1]:
                s.append(c)
        out.append("".join(s))
    return out


def toy_sentences(n: int, seed: int) -> list[str]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        k = int(torch.randint(2, 4, (1,), generator=g))
        out.append(" ".join(TOY_WORDS[int(torch.randint(len(TOY_WORDS), (1,), generator=g))] for _ in range(k)))
    return out


def train_direct(model: LASModel, batches, steps: int, lr: float) -> None:
    """A bare optimisation loop (asr/training/loop.py's loop is tested in test_train.py)."""
    opt = torch.optim.AdamW(model.parameters(), lr, weight_decay=0.0)
    decay = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0 - 0.9 * step / steps)
    model.train()
    for step in range(steps):
        batch = batches(step)
        loss = model(batch)["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        opt.zero_grad()
        decay.step()
    model.eval()


def toy_config(ctc_weight: float) -> SimpleNamespace:
    """The TrainConfig fields configure_training reads."""
    return SimpleNamespace(ctc_weight=ctc_weight, label_smoothing=0.0, sampling_rate=0.0)


def build_las(vocab_size: int, n_mels: int, options: dict) -> LASModel:
    return build_model({"kind": "las", "preset": "custom", "vocab_size": vocab_size, "n_mels": n_mels,
                        "options": options})


def las_greedy(model: LASModel, feats, lengths) -> list[list[int]]:
    return LASGreedyDecoder(model, DecodeOptions())(feats, lengths)


def las_greedy_with_attention(model: LASModel, feats, lengths):
    return LASGreedyDecoder(model, DecodeOptions()).with_attention(feats, lengths)


def las_beam(model: LASModel, feats, lengths, **options) -> list[list[int]]:
    return LASBeamSearch(model, DecodeOptions(**options))(feats, lengths)


def las_nbest(model: LASModel, feats, lengths, **options):
    return LASBeamSearch(model, DecodeOptions(**options)).nbest(feats, lengths)


@pytest.fixture(scope="module")
def toy_model() -> LASModel:
    """Tiny LAS (joint CTC 0.3) trained on fresh toy batches of 16 for TOY_STEPS steps:
    two batches of random strings, then one of word sentences."""
    torch.manual_seed(0)
    tok = CharTokenizer(TOY_VOCAB)
    model = build_model(model_config("las", "tiny", len(tok), TOY_MELS))
    model.configure_training(toy_config(0.3), tok)

    def batches(step: int) -> Batch:
        sentences = (toy_sentences if step % 3 == 0 else random_strings)(16, 1000 + step)
        return toy_batch(sentences, 5000 + step)[0]

    train_direct(model, batches, TOY_STEPS, 5e-3)
    return model


@pytest.fixture(scope="module")
def toy_test():
    return toy_batch(toy_sentences(24, 7), 8)


def toy_texts(ids: list[list[int]]) -> list[str]:
    tok = CharTokenizer(TOY_VOCAB)
    return [tok.decode(h) for h in ids]


def fold(text: str) -> str:
    return text.replace("e", "a")  # what the acoustics can tell


def test_toy_model_learns_the_acoustics(toy_model, toy_test):
    batch, _ = toy_test
    hyps = toy_texts(las_greedy(toy_model, batch.feats, batch.feat_lens))
    assert jiwer.cer([fold(t) for t in batch.texts], [fold(h) for h in hyps]) < 0.03, list(zip(batch.texts, hyps))


# --------------------------------------------------------------------------------------
# attention
# --------------------------------------------------------------------------------------
def alignment_stats(model: LASModel, batch: Batch, spans) -> dict:
    """How greedy alignments follow the true one, over utterances decoded to the right length.

    forward: fraction of steps whose argmax frame does not move back;
    correlation: mean over utterances of the correlation between the argmax frame and the
    centre of the unit's true frames (0 for a constant alignment);
    in_segment: fraction of steps whose argmax frame lies in the unit's frames +- 1
    encoder frame; used: utterances measured.
    """
    hyps, atts = las_greedy_with_attention(model, batch.feats, batch.feat_lens)
    forward, correlation, in_segment, used = [], [], [], 0
    r = model.time_reduction
    for h, att, span, n in zip(hyps, atts, spans, batch.target_lens.tolist()):
        if len(h) != n:
            continue
        used += 1
        frame = att[:n].argmax(-1).numpy()  # [n] encoder frames
        centre = frame * r + r // 2  # input frame at the middle of each encoder frame
        true_centre = np.array([(s + e) / 2 for s, e in span])
        forward += (frame[1:] >= frame[:-1]).tolist()
        correlation.append(0.0 if frame.std() == 0 else float(np.corrcoef(centre, true_centre)[0, 1]))
        in_segment += [s - r <= c < e + r for c, (s, e) in zip(centre, span)]
    return {"forward": float(np.mean(forward)), "correlation": float(np.mean(correlation)),
            "in_segment": float(np.mean(in_segment)), "used": used}


def test_attention_is_monotonic_and_follows_the_true_alignment(toy_model):
    batch, spans = toy_batch(random_strings(24, 7), 8)
    stats = alignment_stats(toy_model, batch, spans)
    assert stats["used"] >= len(batch) // 2, stats
    assert stats["forward"] >= MIN_FORWARD, stats
    assert stats["correlation"] >= MIN_CORRELATION, stats
    # the same measure fails on an untrained model: over the steps it decodes, its argmax
    # frames do not follow the true alignment
    torch.manual_seed(0)
    untrained = build_model(model_config("las", "tiny", len(TOY_VOCAB) + 2, TOY_MELS)).eval()
    _, atts = las_greedy_with_attention(untrained, batch.feats, batch.feat_lens)
    correlation = []
    for att, span in zip(atts, spans):
        k = min(len(att), len(span))
        frame = att[:k].argmax(-1).numpy()
        true_centre = np.array([(s + e) / 2 for s, e in span[:k]])
        correlation.append(0.0 if k < 2 or frame.std() == 0 else float(np.corrcoef(frame, true_centre)[0, 1]))
    assert float(np.mean(correlation)) < MIN_CORRELATION - 0.2, correlation


def test_attention_weights_are_normalised_and_masked(toy_model, toy_test):
    batch, _ = toy_test
    _, atts = las_greedy_with_attention(toy_model, batch.feats, batch.feat_lens)
    enc_lens = toy_model.encoder.output_lengths(batch.feat_lens)
    for att, n in zip(atts, enc_lens.tolist()):
        assert att.shape[1] == n
        assert torch.allclose(att.sum(-1), torch.ones(att.shape[0]), atol=1e-4)
    # padding frames never get weight: an utterance alone or padded in a batch aligns the same
    _, alone = las_greedy_with_attention(toy_model, batch.feats[:1, : batch.feat_lens[0]], batch.feat_lens[:1])
    assert int(batch.feat_lens[0]) < batch.feats.shape[1]  # it is padded in the batch
    assert torch.allclose(alone[0], atts[0], atol=1e-4)


# --------------------------------------------------------------------------------------
# beam search
# --------------------------------------------------------------------------------------
def test_beam_one_is_greedy(toy_model, toy_test):
    batch, _ = toy_test
    greedy = las_greedy(toy_model, batch.feats, batch.feat_lens)
    assert las_beam(toy_model, batch.feats, batch.feat_lens, beam=1, ctc_weight=0) == greedy
    assert any(len(h) > 0 for h in greedy)


@pytest.mark.parametrize("length_penalty", [1.0, 0.5])
def test_nbest_scores_are_sorted_and_length_normalised(toy_model, toy_test, length_penalty):
    batch, _ = toy_test
    feats, lens = batch.feats[:6], batch.feat_lens[:6]
    nbest = las_nbest(toy_model, feats, lens, beam=4, ctc_weight=0, length_penalty=length_penalty)
    for b, hyps in enumerate(nbest):
        assert len(hyps) == 4
        norms = [h.normalized for h in hyps]
        assert norms == sorted(norms, reverse=True)
        assert len({tuple(h.tokens) for h in hyps}) == 4
        forced = toy_model.token_logprobs(feats[b:b + 1].repeat(4, 1, 1), lens[b:b + 1].repeat(4),
                                          [h.tokens for h in hyps])
        for h, logps in zip(hyps, forced):
            assert len(h.token_logps) == len(h.tokens) + 1  # the units, then <eos>
            assert h.token_logps == pytest.approx(logps, abs=1e-4)  # teacher-forced recomputation
            assert h.score == pytest.approx(sum(logps), abs=1e-3)
            assert h.normalized == pytest.approx(sum(logps) / (len(h.tokens) + 1) ** length_penalty, abs=1e-4)


def test_joint_scores_add_ctc_sequence_probability(toy_model, toy_test):
    batch, _ = toy_test
    feats, lens, lam = batch.feats[:4], batch.feat_lens[:4], 0.3
    nbest = las_nbest(toy_model, feats, lens, beam=3, ctc_weight=lam)
    with torch.no_grad():
        enc, enc_lens = toy_model.encode(feats, lens)
        log_probs = toy_model.ctc_log_probs(enc)
    for b, hyps in enumerate(nbest):
        assert hyps
        for h in hyps:
            target = torch.tensor([h.tokens])
            ctc = -F.ctc_loss(log_probs[b:b + 1].transpose(0, 1), target, enc_lens[b:b + 1],
                              torch.tensor([len(h.tokens)]), blank=BLANK, reduction="sum")
            assert h.ctc_score == pytest.approx(float(ctc), abs=1e-3)
            assert h.score == pytest.approx((1 - lam) * h.att_score + lam * h.ctc_score, abs=1e-3)
    # ctc_weight None is the training weight
    assert las_beam(toy_model, feats, lens, beam=3) == [h[0].tokens for h in nbest]


def ctc_frames_needed(tokens: list[int]) -> int:
    return len(tokens) + sum(a == b for a, b in zip(tokens, tokens[1:]))


def test_joint_ctc_decoding_respects_the_ctc_length_limit(toy_model, toy_test):
    """A speller pushed to never say <eos> runs to max length; joint decoding cannot outgrow
    what CTC can align in T' frames (L + adjacent repeats <= T')."""
    batch, _ = toy_test
    feats, lens = batch.feats[:4, :40], batch.feat_lens[:4].clamp(max=40)  # 40 frames -> T' = 10
    runaway = build_las(toy_model.cfg.vocab_size, TOY_MELS, LAS_PRESETS["tiny"])
    runaway.load_state_dict(toy_model.state_dict())
    runaway.eval()
    with torch.no_grad():
        runaway.speller.out.bias[EOS] -= 30.0
    t_enc = runaway.encoder.output_lengths(lens).tolist()
    att_only = las_beam(runaway, feats, lens, beam=3, ctc_weight=0, max_len_ratio=3.0)
    assert all(ctc_frames_needed(h) > t for h, t in zip(att_only, t_enc))  # the check can fail
    joint = las_nbest(runaway, feats, lens, beam=3, ctc_weight=0.5, max_len_ratio=3.0)
    for hyps, t in zip(joint, t_enc):
        assert hyps
        assert all(ctc_frames_needed(h.tokens) <= t for h in hyps), ([h.tokens for h in hyps], t)


def test_ctc_prefix_scorer_matches_ctc_loss():
    torch.manual_seed(0)
    T, V = 12, 6
    log_probs = torch.randn(4, T, V).log_softmax(-1)
    lengths = torch.tensor([12, 9, 7, 12])
    seqs = [[2, 3, 3, 4], [5, 5, 5], [2], [2, 3, 2, 3, 2, 3, 2]]
    for n, seq in enumerate(seqs):
        expected = -float(F.ctc_loss(log_probs[n:n + 1].transpose(0, 1), torch.tensor([seq]), lengths[n:n + 1],
                                     torch.tensor([len(seq)]), blank=BLANK, reduction="sum"))
        scorer = CTCPrefixScorer(log_probs[n:n + 1], lengths[n:n + 1])
        prev = torch.tensor([EOS])
        for i, unit in enumerate(seq):
            cands = torch.tensor([[unit] + [c for c in range(2, V) if c != unit]])  # every unit but blank
            psi, r = scorer.score(cands, prev, i)
            # prefix scores of the extensions of one prefix: each at most the prefix's own
            assert float(torch.logsumexp(psi, -1)) <= float(psi_prev if i else 0.0) + 1e-4
            psi_prev = psi[0, 0]
            scorer.select(torch.tensor([0]), torch.tensor([0]), r)
            prev = torch.tensor([unit])
        whole = float(scorer.final())
        assert whole == pytest.approx(expected, abs=1e-4)
        assert whole <= float(psi_prev) + 1e-5  # the sequence is one of those its prefix starts
    # in 6 frames: "2 2 2" fits (2 _ 2 _ 2), so does "2 2 2 3"; "2 2 2 2" would need 7
    scorer, prev = CTCPrefixScorer(log_probs[:1], torch.tensor([6])), torch.tensor([EOS])
    for i in range(3):
        psi, r = scorer.score(torch.tensor([[2]]), prev, i)
        scorer.select(torch.tensor([0]), torch.tensor([0]), r)
        prev = torch.tensor([2])
    assert float(scorer.final()) > -1e3
    psi, _ = scorer.score(torch.tensor([[2, 3]]), prev, 3)
    assert float(psi[0, 0]) < -1e9 < float(psi[0, 1])


# --------------------------------------------------------------------------------------
# LM shallow fusion
# --------------------------------------------------------------------------------------
def test_lm_fusion_moves_the_best_hypothesis_to_the_lm_word(toy_model, tmp_path):
    from flashlight.lib.text.decoder.kenlm import KenLM
    from flashlight.lib.text.dictionary import Dictionary

    from asr.decoding.lm import build_arpa, read_arpa_unigrams

    arpa = tmp_path / "toy.arpa"
    build_arpa(["le chat dort", "le chien mange", "un chat dort", "le chat mange", "un chien dort"], 2, arpa)
    sentences = ["le chat dort", "le chien mange"]
    batch, _ = toy_batch(sentences, 99)
    plain = toy_texts(las_beam(toy_model, batch.feats, batch.feat_lens, beam=4, ctc_weight=0))
    # the acoustics cannot tell "le" from "la": the speller's prior picks "la"
    assert plain == ["la chat dort", "la chien mange"]
    lm_weight, bonus = 2.0, 0.5
    nbest = las_nbest(toy_model, batch.feats, batch.feat_lens, beam=4, ctc_weight=0, lm=arpa,
                      lm_weight=lm_weight, word_score=bonus)
    assert toy_texts([h[0].tokens for h in nbest]) == sentences
    # the fused score is the attention score plus the documented LM and bonus terms
    words = read_arpa_unigrams(arpa)
    lm = KenLM(str(arpa), Dictionary(words))
    for hyps in nbest:
        for h in hyps:
            text = toy_texts([h.tokens])[0]
            state, expected = lm.start(False), 0.0
            for w in text.split():
                state, s = lm.score(state, words.index(w) if w in words else words.index("<unk>"))
                expected += s
            expected += lm.finish(state)[1]
            assert h.lm_score == pytest.approx(expected, abs=1e-4), text
            assert h.words == len(text.split())
            assert h.score == pytest.approx(h.att_score + lm_weight * h.lm_score + bonus * h.words, abs=1e-3)
    # a larger LM weight never makes the LM's own score of the best hypothesis worse
    light = las_nbest(toy_model, batch.feats, batch.feat_lens, beam=4, ctc_weight=0, lm=arpa, lm_weight=0.01,
                      word_score=0.0)
    assert all(h[0].lm_score >= l[0].lm_score - 1e-6 for h, l in zip(nbest, light))


# --------------------------------------------------------------------------------------
# model pieces: CTC head, hooks, listener and attention variants
# --------------------------------------------------------------------------------------
def test_ctc_head_follows_the_ctc_weight_and_every_parameter_trains():
    batch, _ = toy_batch(["la chat", "un chien dort"], 3)
    tok = CharTokenizer(TOY_VOCAB)
    for w in (0.0, 0.5):
        torch.manual_seed(0)
        model = build_model(model_config("las", "tiny", len(tok), TOY_MELS))  # preset: ctc_weight 0.3
        model.configure_training(toy_config(w), tok)
        assert (model.ctc_head is None) == (w == 0)
        out = model(batch)
        assert ("ctc_loss" in out) == (w > 0)
        out["loss"].backward()
        unused = [n for n, p in model.named_parameters() if p.grad is None]
        assert not unused, unused  # DDP would hang or complain
        if w > 0:
            expected = w * out["ctc_loss"] + (1 - w) * out["att_loss"]
            assert float(out["loss"].detach()) == pytest.approx(float(expected), rel=1e-5)
        # the weights carry the head (or its absence), the training weight and the units
        fresh = build_model(model_config("las", "tiny", len(tok), TOY_MELS))
        fresh.load_state_dict(model.state_dict())
        assert (fresh.ctc_head is None) == (w == 0)
        assert fresh.ctc_weight == w and fresh.units == tok.units
    with pytest.raises(ValueError, match="CTC head"):
        fresh.ctc_head = None
        las_beam(fresh, batch.feats, batch.feat_lens, beam=2, ctc_weight=0.3)


def test_scheduled_sampling_ramp_and_label_smoothing():
    batch, _ = toy_batch(["la chat", "un chien dort"], 3)
    model = build_model(model_config("las", "tiny", len(TOY_VOCAB) + 2, TOY_MELS, {"ctc_weight": 0.0}))
    model.configure_training(SimpleNamespace(ctc_weight=0.0, label_smoothing=0.0, sampling_rate=0.4),
                             CharTokenizer(TOY_VOCAB))
    probs = []
    for step in (0, 50, 100, 200):
        model.on_step(step, 100)
        probs.append(model.sampling_prob)
    assert probs == pytest.approx([0.0, 0.2, 0.4, 0.4])
    # label smoothing 0 is plain cross-entropy over units and <eos>
    model.eval()
    with torch.no_grad():
        plain = float(model(batch)["loss"])
        enc, lens = model.encode(batch.feats, batch.feat_lens)
        logits = model._teacher_forced_logits(enc, lens, batch.targets, batch.target_lens)
    targets = [t[:n].tolist() + [EOS] for t, n in zip(batch.targets, batch.target_lens.tolist())]
    flat_logits = torch.cat([logits[b, : len(t)] for b, t in enumerate(targets)])
    assert plain == pytest.approx(float(F.cross_entropy(flat_logits, torch.tensor(sum(targets, [])))), rel=1e-5)
    model.train()
    model.label_smoothing = 0.2
    model.sampling_prob = 0.0
    smoothed = float(model(batch)["loss"].detach())
    assert smoothed > plain  # the uniform part costs more than the (untrained) targets save


@pytest.mark.parametrize("options", [
    {"listener": "pyramid", "rnn_layers": 3, "pyramid_layers": 2, "frame_stack": 2},
    {"listener": "pyramid", "rnn_layers": 2, "pyramid_layers": 2, "frame_stack": 1, "rnn": "lstm"},
    {"attention": "content", "att_norm": "sigmoid", "att_temperature": 2.0},
    {"att_cumulative": True, "att_init": "first", "decoder_layers": 2},
])
def test_listener_and_attention_options(options):
    batch, _ = toy_batch(["la chat dort", "un chien"], 5)
    model = build_las(len(TOY_VOCAB) + 2, TOY_MELS, {**LAS_PRESETS["tiny"], **options})
    enc, lens = model.encode(batch.feats, batch.feat_lens)
    assert enc.shape[1] == int(lens.max())
    assert lens.tolist() == model.encoder.output_lengths(batch.feat_lens).tolist()
    if options.get("listener") == "pyramid":
        r = options["frame_stack"] * 2 ** options["pyramid_layers"]
        assert model.time_reduction == r
        assert lens.tolist() == [math.ceil(n / r) for n in batch.feat_lens.tolist()]
    out = model(batch)
    out["loss"].backward()
    assert torch.isfinite(out["loss"])
    model.eval()
    _, atts = las_greedy_with_attention(model, batch.feats, batch.feat_lens)
    assert all(torch.allclose(a.sum(-1), torch.ones(a.shape[0]), atol=1e-4) for a in atts)


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="do not apply"):
        build_las(10, 80, {"rnn_hiden": 3})
    with pytest.raises(ValueError, match="attention"):
        build_las(10, 80, {"attention": "dot"})
    with pytest.raises(ValueError, match="pyramid_layers"):
        build_las(10, 80, {"listener": "pyramid", "rnn_layers": 1, "pyramid_layers": 2})


def test_presets():
    sizes = {name: count_parameters(build_model(model_config("las", name, 40, 80))) for name in LAS_PRESETS}
    ctc_small = count_parameters(build_model(model_config("ctc", "small", 40, 80)))
    assert {"tiny", "small", "lab"} <= set(sizes)
    assert sizes["tiny"] < 0.5e6
    assert ctc_small < sizes["small"] < 1.5 * ctc_small  # ctc/small's encoder plus a 1 x 256 speller
    assert sizes["lab"] > 5 * sizes["small"]


# --------------------------------------------------------------------------------------
# real speech: overfitting a handful of utterances
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def handful(handful_shards) -> tuple[Batch, CharTokenizer]:
    """The first 6 train utterances of the synthetic corpus, as one batch."""
    out = handful_shards
    shards = ShardSet.open(out)
    tok = CharTokenizer(shards.vocab)
    lcfg = LoaderConfig(batch_frames=10**6, workers=0)
    batch = next(iter(ShardStream(shards.urls("train"), tok, shards.cmvn, lcfg, train=False)))
    assert len(batch) == 6
    return batch, tok


def test_overfits_a_handful_of_utterances(handful):
    batch, tok = handful
    torch.manual_seed(0)
    model = build_model(model_config("las", "tiny", len(tok), 80, {"dropout": 0.0}))
    model.configure_training(SimpleNamespace(ctc_weight=0.3, label_smoothing=0.0, sampling_rate=0.0), tok)
    train_direct(model, lambda step: batch, 120, 5e-3)
    greedy = las_greedy(model, batch.feats, batch.feat_lens)
    assert jiwer.cer(batch.texts, [tok.decode(h) for h in greedy]) < 0.02
    joint = las_beam(model, batch.feats, batch.feat_lens, beam=4)  # training ctc weight 0.3
    assert jiwer.cer(batch.texts, [tok.decode(h) for h in joint]) < 0.02
    assert las_beam(model, batch.feats, batch.feat_lens, beam=1, ctc_weight=0) == greedy


# --------------------------------------------------------------------------------------
# SentencePiece units
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def corpus_texts(shards_dir) -> list[str]:
    import pyarrow.parquet as pq

    rows = pq.read_table(shards_dir / "index.parquet", columns=["split", "text"]).to_pylist()
    return [r["text"] for r in rows if r["split"] == "train"]


def test_unigram_tokenizer(corpus_texts, tmp_path):
    tok = UnigramTokenizer.train(corpus_texts, 60, tmp_path / "unigram")
    assert (tmp_path / "unigram" / "unigram.model").is_file()
    assert tok.units[:2] == list(SPECIALS) and len(tok) == len(tok.units) <= 62
    assert tok.units[2] == "<unk>"
    for text in corpus_texts:
        ids = tok.encode(text)
        assert ids and min(ids) >= 3 and max(ids) < len(tok)
        assert tok.decode(ids) == text
        assert tok.decode(ids + [EOS, BLANK]) == text  # specials never decode to text
    assert len(tok.encode(corpus_texts[0])) < len(corpus_texts[0])  # pieces, not characters
    again = UnigramTokenizer.from_state(tok.state_dict())
    assert again.units == tok.units
    assert [again.encode(t) for t in corpus_texts] == [tok.encode(t) for t in corpus_texts]
    assert "ÿ" not in "".join(corpus_texts) and tok.decode(tok.encode("le ÿ chat")) == "le  chat"
    with pytest.raises(ValueError, match="no training text"):
        UnigramTokenizer.train(["", " "], 20)


def test_ctc_model_trains_on_unigram_units(shards_dir, corpus_texts):
    tok = UnigramTokenizer.train(corpus_texts, 60)
    shards = ShardSet.open(shards_dir)
    batch = next(iter(ShardStream(shards.urls("train"), tok, shards.cmvn, LoaderConfig(batch_frames=8000, workers=0),
                                  train=False)))
    model = build_model(model_config("ctc", "tiny", len(tok), 80))
    out = model(batch)
    assert torch.isfinite(out["loss"]) and int(out["tokens"]) == int(batch.target_lens.sum())
    out["loss"].backward()
    hyps = greedy_texts(model, tok, batch.feats, batch.feat_lens)
    assert len(hyps) == len(batch) and all(isinstance(h, str) for h in hyps)


def test_cli_trains_las_with_unigram_units_and_the_checkpoint_decodes(shards_dir, tmp_path):
    from typer.testing import CliRunner

    from asr.apps.plot import plot_attention
    from asr.decoding.lm import build_lm_from_shards
    from asr.nets.models import load_model
    from cli import app

    out = tmp_path / "las-unigram"
    result = CliRunner().invoke(app, [
        "train", "--shards", str(shards_dir), "--model", "las", "--preset", "tiny", "--tokens", "unigram:50",
        "--ctc-weight", "0", "--label-smoothing", "0.1", "--sampling-rate", "0.2", "--attention", "location",
        "--decoder-hidden", "48", "--max-steps", "2", "--eval-every", "0", "--eval-utts", "4", "--workers", "0",
        "--threads", "1", "--no-progress", "--batch-frames", "6000", "--out", str(out)])
    assert result.exit_code == 0, result.output
    model, tok, ckpt = load_model(out / "last.pt")
    assert model.kind == "las" and tok.kind == "unigram" and ckpt.card.model["options"]["decoder_hidden"] == 48
    assert model.ctc_head is None and model.ctc_weight == 0.0
    assert model.units == tok.units  # saved with the weights: LM fusion needs no tokenizer
    assert ckpt.train_config["sampling_rate"] == 0.2
    shards = ShardSet.open(shards_dir)
    batch = next(iter(ShardStream(shards.urls("dev"), tok, shards.cmvn, LoaderConfig(batch_frames=4000, workers=0),
                                  train=False)))
    greedy = las_greedy(model, batch.feats, batch.feat_lens)
    assert las_beam(model, batch.feats, batch.feat_lens, beam=1, ctc_weight=None) == greedy
    build_lm_from_shards(shards_dir, order=2, out=tmp_path / "lm.arpa")
    fused = las_beam(model, batch.feats, batch.feat_lens, beam=3, lm=tmp_path / "lm.arpa", lm_weight=1.0,
                      word_score=1.0)
    assert len(fused) == len(batch) and all(isinstance(tok.decode(h), str) for h in fused)
    png = plot_attention(out / "last.pt", shards_dir, "dev", tmp_path / "att.png", n=2)
    assert png.stat().st_size > 10_000


def test_cli_refuses_las_options_for_ctc(tmp_path):
    from typer.testing import CliRunner

    from cli import app

    result = CliRunner().invoke(app, ["train", "--shards", str(tmp_path), "--model", "ctc", "--listener", "pyramid"])
    assert result.exit_code != 0
    assert "--listener applies to --model las only" in result.output


def test_torchrun_two_cpu_ranks_train_las_in_step(shards_dir, tmp_path):
    """DDP (gloo) fails on parameters without gradients: the joint model has none, and the
    ranks' weights (the units / ctc weight extra state included) stay identical."""
    import json
    import os
    import subprocess
    import sys

    from conftest import ROOT

    out = tmp_path / "ddp-las"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone",
           str(ROOT / "cli.py"), "train", "--shards", str(shards_dir), "--out", str(out), "--model", "las",
           "--preset", "tiny", "--ctc-weight", "0.3", "--sampling-rate", "0.5", "--max-steps", "4", "--warmup", "2",
           "--batch-frames", "2500", "--eval-every", "0", "--eval-utts", "4", "--workers", "0", "--no-progress",
           "--device", "cpu"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    reports = [json.loads((out / "ranks" / f"rank-{r}.json").read_text()) for r in range(2)]
    assert reports[0]["batches"] == reports[1]["batches"] == 4
    assert reports[0]["parameters_sha256"] == reports[1]["parameters_sha256"]


def test_training_loop_trains_a_las_model_and_logs_both_losses(shards_dir, tmp_path):
    """asr/training/loop.py with model=las: the joint weight reaches the model, both losses are logged,
    and the checkpoint decodes through the evaluation path."""
    import json

    from asr.inference.evaluate import EvalConfig, evaluate
    from asr.training.loop import TrainConfig, train

    out = tmp_path / "las"
    summary = train(TrainConfig(shards=str(shards_dir), out=str(out), model="las", preset="tiny", max_steps=6,
                                warmup=2, batch_frames=2500, eval_every=0, eval_utts=4, log_every=2, workers=0,
                                progress=False, ctc_weight=0.4))
    assert summary["step"] == 6
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    records = [r for r in records if "loss" in r]  # the train records (the final dev one has dev_*)
    assert [r["step"] for r in records] == [2, 4, 6]
    for r in records:
        assert {"att_loss", "ctc_loss"} <= r.keys()
        assert r["loss"] == pytest.approx(0.4 * r["ctc_loss"] + 0.6 * r["att_loss"], rel=1e-4)
    result = evaluate(EvalConfig(checkpoint=out / "last.pt", shards=shards_dir, split="dev",
                                 decode=DecodeOptions(), out=tmp_path / "eval", device="cpu", progress=False))
    assert result["mode"] == "greedy" and result["utterances"] > 0
    assert 0.0 < result["cer"]  # six steps: far from perfect, but every utterance was decoded
