"""Decoding an attention model (asr/nets/las.py): greedy and joint CTC/attention beam search.

    LASGreedyDecoder   the most likely unit at each step (and the attention weights, for plots)
    LASBeamSearch      beam search with the CTC prefix score and a word LM (asr/decoding/scorers.py)
    LASBatch           either, as the strategy asr/decoding/decoder.py registers for kind "las"

Each takes the model and a DecodeOptions (asr/decoding/decoder.py: every default is there).

Both batched over utterances (and beams). A hypothesis y1..yL (then <eos>) scores

    score = sum_i (1 - lam) log p_att(y_i | y_<i)  + lam * log p_ctc_prefix(y_1..L <eos>)
            + lm_weight * sum_words log10 P_lm(word | history)  + word_score * words

where lam is the CTC weight (joint decoding: the CTC prefix score of Watanabe et al. 2017,
added step by step as the difference of prefix scores, so the sum telescopes to the full
sequence probability once <eos> is emitted) and the word n-gram LM (an ARPA file, read by
flashlight's KenLM) scores a word when the unit after it starts a new word (the space for
characters, a "▁" piece for SentencePiece units) or at <eos> (which also adds </s>); as in
asr/decoding/ctc.py the LM term is log10, so lm_weight = ln 10 weighs it as much as the
acoustics.
Hypotheses are ranked by the length-normalised score

    normalised = score / (L + 1) ** length_penalty        (L + 1 counts the <eos>)

End-of-sentence rules, shared by greedy and beam search: at most
`max_len = max(min_len, ceil(max_len_ratio * T'))` units (T' the utterance's encoder frames;
`max_len_ratio` None: MAX_UNITS_PER_INPUT_FRAME x the listener's time reduction, i.e. 25
units per second of audio) after which <eos> is forced; no <eos> before `min_len` units; and in the
beam, <eos> is only accepted when its step score is within `eos_threshold` (natural log) of
the best candidate's. Each beam keeps `beam` hypotheses; one that emits <eos> leaves the
beam (which refills from the others' expansions), and an utterance is done once it holds
`beam` finished hypotheses or has no live one. `pre_beam` units per hypothesis (the
best by attention score, plus <eos>) are scored by CTC and the LM. With beam 1, no CTC and
no LM the beam search returns exactly the greedy hypothesis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from asr.decoding.options import DecodeOptions
from asr.decoding.scorers import IMPOSSIBLE, CTCPrefixScorer, WordFusion, WordLM
from asr.decoding.strategy import BatchStrategy, Decoded
from asr.tokens.units import BLANK, EOS, SOS

MAX_UNITS_PER_INPUT_FRAME = 0.25  # default max length: 25 units per second of 10 ms frames
PRE_BEAM_FACTOR = 1.5  # pre_beam None: this many candidates per hypothesis and beam slot


def max_lengths(model, enc_lens: torch.Tensor, max_len_ratio: float | None, min_len: int) -> torch.Tensor:
    """Longest hypothesis (units) per utterance: max(min_len, ceil(ratio * T'))."""
    ratio = MAX_UNITS_PER_INPUT_FRAME * model.time_reduction if max_len_ratio is None else max_len_ratio
    return torch.clamp(torch.ceil(enc_lens.float() * ratio).long(), min=max(min_len, 1))


class LASGreedyDecoder:
    """Attention-only greedy decoding: `decoder(feats [B, T, F], lengths [B])` -> unit ids per
    utterance (no <eos>). Uses options.min_len and options.max_len_ratio."""

    def __init__(self, model, options: DecodeOptions):
        self.model, self.options = model, options

    def __call__(self, feats: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
        return self.with_attention(feats, lengths)[0]

    @torch.no_grad()
    def with_attention(self, feats: torch.Tensor, lengths: torch.Tensor
                       ) -> tuple[list[list[int]], list[torch.Tensor]]:
        """Greedy decoding and its alignments: ids per utterance, attention [L+1, T'_b] each
        (one row per emitted unit, the last for <eos> when it was emitted)."""
        model, min_len = self.model, self.options.min_len
        enc, enc_lens = model.encode(feats, lengths)
        B = enc.shape[0]
        memory = model.speller.memory(enc, enc_lens)
        state = model.speller.initial_state(memory)
        maxlen = max_lengths(model, enc_lens, self.options.max_len_ratio, min_len)
        prev = torch.full((B,), SOS, dtype=torch.long, device=enc.device)
        alive = torch.ones(B, dtype=torch.bool, device=enc.device)
        tokens, atts = [], []
        for i in range(int(maxlen.max()) + 1):
            logits, state = model.speller.step(prev, state, memory)
            atts.append(state.att)
            if i < min_len:
                logits[:, EOS] = float("-inf")
            best = logits.argmax(-1)
            best = torch.where(i >= maxlen, torch.full_like(best, EOS), best)
            best = torch.where(alive, best, torch.full_like(best, EOS))
            tokens.append(best)
            alive = alive & (best != EOS)
            prev = best
            if not bool(alive.any()):
                break
        tok = torch.stack(tokens, 1).cpu()  # [B, steps]
        att = torch.stack(atts, 1).float().cpu()  # [B, steps, T']
        hyps, alignments = [], []
        for b in range(B):
            seq = tok[b].tolist()
            n = seq.index(EOS) if EOS in seq else len(seq)
            hyps.append(seq[:n])
            alignments.append(att[b, : min(n + 1, len(seq)), : int(enc_lens[b])])
        return hyps, alignments


@dataclass
class Hypothesis:
    """One finished hypothesis of the beam search (scores as in the module docstring)."""

    tokens: list[int]  # unit ids, without <eos>
    score: float  # the total score
    normalized: float  # score / (len(tokens) + 1) ** length_penalty: the ranking key
    att_score: float  # sum of attention log-probs, <eos> included (unweighted)
    ctc_score: float  # CTC log-probability of the sequence (0.0 when not used)
    lm_score: float  # sum of the LM's log10 word probabilities, </s> included (0.0 when no LM)
    words: int  # words counted for the word score
    token_logps: list[float]  # attention log-prob of every unit then of <eos>


class LASBeamSearch:
    """Batched joint CTC/attention beam search with optional word LM shallow fusion.

    options (a DecodeOptions): beam (None: options.las_beam), ctc_weight (None: the model's
    training weight, 0: attention only), lm (ARPA file) with lm_weight and word_score (the
    word score goes with the LM: no LM, no word score), length_penalty, eos_threshold,
    min_len, max_len_ratio, pre_beam. units: the tokenizer's unit strings (LM fusion needs
    them; default the ones saved with the model's weights).
    `decoder(feats [B, T, F], lengths [B])` -> best unit ids per utterance; `nbest(...)`
    the hypotheses with their scores.
    """

    def __init__(self, model, options: DecodeOptions, units: list[str] | None = None):
        self.model, self.options = model, options
        self.beam = options.search_beam("las")
        if self.beam < 1:
            raise ValueError("beam must be >= 1")
        lam = model.ctc_weight if options.ctc_weight is None else float(options.ctc_weight)
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"ctc_weight must be in [0, 1], got {lam}")
        if lam > 0 and model.ctc_head is None:
            raise ValueError(f"ctc_weight {lam} needs a CTC head, but this model was trained with ctc_weight 0")
        self.ctc_weight = lam
        self.fusion, self.lm_weight, self.word_score = None, 0.0, 0.0
        if options.lm is not None:
            units = list(units) if units is not None else model.units
            if units is None:
                raise ValueError("LM fusion needs the unit strings: pass units= (the tokenizer's)")
            self.fusion = WordFusion(WordLM(Path(options.lm)), units)
            self.lm_weight, self.word_score = options.lm_weight, options.word_score

    def __call__(self, feats: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
        """Best hypothesis per utterance (unit ids, no <eos>)."""
        return [hyps[0].tokens if hyps else [] for hyps in self.nbest(feats, lengths, nbest=1)]

    @torch.no_grad()
    def nbest(self, feats: torch.Tensor, lengths: torch.Tensor, nbest: int | None = None) -> list[list[Hypothesis]]:
        """feats [B, T, F], lengths [B] -> per utterance, its finished hypotheses sorted by
        normalised score (best first), at most `nbest` (default the beam)."""
        was = self.model.training
        self.model.eval()
        try:
            return self._search(feats, lengths, nbest or self.beam)
        finally:
            self.model.train(was)

    def _search(self, feats: torch.Tensor, lengths: torch.Tensor, nbest: int) -> list[list[Hypothesis]]:
        model, K, lam, fusion, o = self.model, self.beam, self.ctc_weight, self.fusion, self.options
        lm_weight, word_score, length_penalty, min_len = self.lm_weight, self.word_score, o.length_penalty, o.min_len
        enc, enc_lens = model.encode(feats, lengths)
        B, device = enc.shape[0], enc.device
        N, V = B * K, model.cfg.vocab_size
        Cn = min(V - 2, o.pre_beam or max(K, math.ceil(PRE_BEAM_FACTOR * K)))  # units but blank, <eos>
        C = Cn + 1  # + the <eos> column
        memory = model.speller.memory(enc, enc_lens).repeat(K)
        state = model.speller.initial_state(memory)
        maxlen = max_lengths(model, enc_lens, o.max_len_ratio, min_len)
        maxlen_rows = maxlen.repeat_interleave(K)
        steps = int(maxlen.max())
        ctc = None
        if lam > 0:
            ctc = CTCPrefixScorer(model.ctc_log_probs(enc).repeat_interleave(K, dim=0), enc_lens.repeat_interleave(K))
            ctc_prev = torch.zeros(N, device=device)
        if fusion is not None:
            fusion.reset(N)
        score = torch.full((B, K), float("-inf"), device=device)
        score[:, 0] = 0.0
        score = score.reshape(N)
        prev = torch.full((N,), SOS, dtype=torch.long, device=device)
        hist = torch.zeros(N, steps + 1, dtype=torch.long, device=device)
        att_hist = torch.zeros(N, steps + 1, device=device)
        lm_sum = torch.zeros(N, device=device)
        words = torch.zeros(N, device=device)
        base = (torch.arange(B, device=device) * K)[:, None]
        finished: list[list[Hypothesis]] = [[] for _ in range(B)]
        done = [False] * B

        for i in range(steps + 1):
            logits, new_state = model.speller.step(prev, state, memory)
            att_logp = F.log_softmax(logits, dim=-1)  # [N, V]
            pick = att_logp.clone()
            pick[:, BLANK] = float("-inf")
            pick[:, EOS] = float("-inf")
            top = pick.topk(Cn, dim=-1).indices  # [N, Cn]
            ids = torch.cat([top, top.new_full((N, 1), EOS)], dim=1)  # [N, C]
            a = att_logp.gather(1, ids)
            step = (1 - lam) * a
            if ctc is not None:
                psi, r_new = ctc.score(top, prev, i)  # [N, Cn]
                psi = torch.cat([psi, ctc.final()[:, None]], dim=1)  # <eos>: the whole sequence
                step = step + lam * (psi - ctc_prev[:, None])
                step = step.masked_fill(psi <= IMPOSSIBLE, float("-inf"))
            if fusion is not None:
                lm_delta, word_inc = fusion.candidates(ids, torch.isfinite(score))
                step = step + lm_weight * lm_delta + word_score * word_inc
            forced = i >= maxlen_rows
            best_step = step.max(dim=-1).values
            eos_ok = (i >= min_len) & (step[:, -1] >= best_step - o.eos_threshold)
            step[:, -1] = torch.where(eos_ok | forced, step[:, -1], torch.full_like(best_step, float("-inf")))
            step[:, :-1] = step[:, :-1].masked_fill(forced[:, None], float("-inf"))

            total = score[:, None] + step  # [N, C]
            vals, flat = total.reshape(B, K * C).topk(K, dim=-1)  # [B, K]
            src = (base + flat // C).reshape(N)  # parent row of each new row
            col = (flat % C).reshape(N)
            vals = vals.reshape(N)
            tok = ids[src, col]
            tok_logp = a[src, col]
            is_eos = tok == EOS
            alive = torch.isfinite(vals)
            hist = hist[src]
            hist[:, i] = tok
            att_hist = att_hist[src]
            att_hist[:, i] = tok_logp
            lm_sum = lm_sum[src]
            words = words[src]
            if fusion is not None:
                lm_sum = lm_sum + lm_delta[src, col]
                words = words + word_inc[src, col]
            ctc_now = psi[src, col] if ctc is not None else None

            ended = (is_eos & alive).nonzero().flatten().tolist()
            if ended:
                h_cpu, a_cpu, v_cpu = hist[ended, : i + 1].cpu(), att_hist[ended, : i + 1].cpu(), vals[ended].cpu()
                l_cpu, w_cpu = lm_sum[ended].cpu(), words[ended].cpu()
                c_cpu = ctc_now[ended].cpu() if ctc is not None else None
                for j, n in enumerate(ended):
                    b = n // K
                    if done[b]:
                        continue
                    logps = a_cpu[j].tolist()
                    total_score = float(v_cpu[j])
                    finished[b].append(Hypothesis(
                        tokens=h_cpu[j, :i].tolist(), score=total_score,
                        normalized=total_score / (i + 1) ** length_penalty, att_score=float(sum(logps)),
                        ctc_score=float(c_cpu[j]) if c_cpu is not None else 0.0, lm_score=float(l_cpu[j]),
                        words=int(w_cpu[j]), token_logps=logps))

            score = vals.masked_fill(is_eos | ~alive, float("-inf"))
            state = new_state.select(src)
            prev = tok.masked_fill(is_eos, SOS)
            if ctc is not None:
                ctc.select(src, col.clamp(max=Cn - 1), r_new)
                ctc_prev = ctc_now.masked_fill(~torch.isfinite(score), 0.0)
            if fusion is not None:
                fusion.select(src.tolist(), tok.tolist())
            live = torch.isfinite(score).reshape(B, K).any(-1).tolist()
            for b in range(B):
                if not done[b] and (len(finished[b]) >= K or not live[b]):
                    done[b] = True
                    score[b * K:(b + 1) * K] = float("-inf")
            if all(done):
                break
        return [sorted(f, key=lambda h: -h.normalized)[:nbest] for f in finished]



# --------------------------------------------------------------------------------------
# the strategies asr/decoding/decoder.py registers for model kind "las"
# --------------------------------------------------------------------------------------
class LASBatch(BatchStrategy):
    """A LAS search (greedy or beam) -> texts; the CTC head's log-probs for the word times
    when asked and the model has one (trained with ctc_weight > 0)."""

    def __init__(self, model, tokenizer, options: DecodeOptions, search):
        super().__init__(model, tokenizer, options)
        self.search = search

    def __call__(self, feats: torch.Tensor, lengths: torch.Tensor, align: bool = False) -> Decoded:
        texts = [self.tokenizer.decode(ids) for ids in self.search(feats, lengths)]
        if not align or self.model.ctc_head is None:
            return Decoded(texts)
        enc, out_lens = self.model.encode(feats, lengths)
        return Decoded(texts, self.model.ctc_log_probs(enc), out_lens)

    def describe(self) -> dict:
        return {"ctc_weight": getattr(self.search, "ctc_weight", None)}


def greedy_batch(model, tokenizer, options: DecodeOptions) -> LASBatch:
    return LASBatch(model, tokenizer, options, LASGreedyDecoder(model, options))


def beam_batch(model, tokenizer, options: DecodeOptions) -> LASBatch:
    return LASBatch(model, tokenizer, options, LASBeamSearch(model, options, tokenizer.units))
