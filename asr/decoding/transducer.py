"""Decoding a transducer (asr/nets/transducer.py): greedy, and beam search with an optional word LM.

    GreedySearch   N independent rows (a batch's utterances, or one live stream) frame by frame:
                   the joiner's best unit; a unit (not blank) feeds the prediction network and
                   the same frame is asked again, up to `max_symbols` units a frame; blank goes
                   on to the next frame
    BeamSearch     beam search on one utterance, frame by frame: every hypothesis on the frame
                   either ends it (blank: on to the next frame) or takes one of its `pre_beam` best
                   units and stays for another round, up to `max_symbols` rounds; on the last round
                   a unit ends the frame too (as icefall's modified beam search, which is the
                   max_symbols 1 case). The `beam` best go on; hypotheses with the same units
                   merge (their probabilities add). Characters at 25 frames a second need more
                   than one unit on some frames: on the test's 6 learnt clips, one unit a frame
                   (modified beam search) gave 12.8 % CER where greedy gave 0 (it drops letters
                   of fast words and the last ones). With a word LM (shallow fusion) a hypothesis
                   scores

        acoustic log P + lm_weight * sum_words log10 P_lm(word | history) + word_score * words

                   each word scored by the LM (asr/decoding/scorers.py's WordLM) when the unit
                   after it starts a new word (a space, or a "▁" piece), the last one and </s>
                   at the end. A word off the LM's lexicon pays the weighted <unk> score on the
                   unit that leaves it (no LM word starts so), not only when it ends: charged
                   at the end, a misspelling came too late for a beam of 4 (test CER 13.5 % with
                   the LM against 12.4 % without, demo conformer-small at 2,300 steps). Only
                   lexicon words allowed (the CTC beam's way) dropped whole words instead: a
                   beam stuck in a word the audio did not finish (dev CER 14.8 %, 2,941 of its
                   3,803 character errors deletions); docs/RESULTS.md part 13

and, at the end, the strategies asr/decoding/decoder.py registers for kind "rnnt" (batch and
live; both record, per unit, the frame it was emitted at: the words' times).

A model gives `frames(feats, lengths)` -> e [B, T', J], `decoder_start(n)`, `decoder_step(state,
units [N])` -> (state, p [N, J]) and `joint(e [N, J], p [N, J])` -> log-probs [N, V] (the torch
model and its ONNX export alike). <eos> is never emitted (its log-prob is masked).

A live segment's search carries the prediction network's state over from the segment before
(the stream is one utterance to the network; a segment is the search's unit): greedy streams
give the whole recording's greedy text whatever the endpoints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from asr.decoding.options import DecodeOptions
from asr.decoding.scorers import WordFusion, WordLM
from asr.decoding.strategy import BatchStrategy, Decoded, Emitted, StreamStrategy, tidy
from asr.decoding.timestamps import Word, emitted_words
from asr.tokens.units import BLANK, EOS

PRE_BEAM_FACTOR = 1.5  # units per hypothesis expanded (pre_beam None), x beam


def masked_joint(model, e: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """The joiner's log-probs [N, V] with <eos> impossible."""
    logp = model.joint(e, p)
    logp[:, EOS] = float("-inf")
    return logp


class GreedySearch:
    """Greedy decoding of N rows: `advance(e [N, T, J], lengths [N])` takes the next T frames of
    each row (its first lengths[n] valid) and returns the unit of each frame [N, T] (the last
    one emitted there, BLANK where none); `emitted[n]` grows with row n's units."""

    def __init__(self, model, n: int, max_symbols: int):
        self.model, self.max_symbols = model, max(1, max_symbols)
        device = next(iter(model.parameters()), torch.zeros(0)).device
        start = torch.full((n,), BLANK, dtype=torch.long, device=device)
        self.state, self.pred = model.decoder_step(model.decoder_start(n), start)
        self.emitted = [Emitted() for _ in range(n)]
        self.frame = 0  # frames given so far

    def advance(self, e: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        n, t_max = e.shape[:2]
        units = torch.full((n, t_max), BLANK, dtype=torch.long)
        for t in range(t_max):
            active = t < lengths
            for _ in range(self.max_symbols):
                if not bool(active.any()):
                    break
                logp, best = masked_joint(self.model, e[:, t], self.pred).max(dim=-1)
                emit = active & (best != BLANK)
                rows = emit.nonzero()[:, 0]
                if not len(rows):
                    break
                state, pred = self.model.decoder_step(self.state[rows], best[rows])
                self.state[rows], self.pred[rows] = state.to(self.state.dtype), pred.to(self.pred.dtype)
                for r, u, lp in zip(rows.tolist(), best[rows].tolist(), logp[rows].tolist()):
                    self.emitted[r].units.append(u)
                    self.emitted[r].frames.append(self.frame + t)
                    self.emitted[r].probs.append(math.exp(lp))
                units[rows.cpu(), t] = best[rows].cpu()
                active = emit
        self.frame += t_max
        return units


@dataclass
class Hyp:
    """A beam hypothesis: its emissions, acoustic log P, weighted LM and word terms, the LM's
    state and the word under way, the prediction network's state and output p [J]."""

    emitted: Emitted
    ac: float
    lm: float
    lm_state: object
    partial: str
    state: torch.Tensor
    pred: torch.Tensor

    @property
    def score(self) -> float:
        return self.ac + self.lm


class BeamSearch:
    """Beam search of one utterance (see the module docstring), fed frames as they come:
    `begin()`, `advance(e [T, J])` -> the best hypothesis' unit at each frame (BLANK where it
    emitted none), `best(final)` -> its Emitted (final: with the LM's end-of-sentence terms)."""

    def __init__(self, model, beam: int, lm: WordLM | None, units: list[str], options: DecodeOptions):
        self.model, self.beam, self.lm = model, beam, lm
        self.max_symbols = max(1, options.max_symbols)
        words = WordFusion(None, units)  # which units start a word, and the text each adds
        self.boundary, self.text = words.boundary, words.text
        self.lm_weight, self.word_score = options.lm_weight, options.word_score
        self.pre_beam = options.pre_beam or max(1, round(PRE_BEAM_FACTOR * beam))
        # the lexicon: every prefix of an LM word (None: no LM); a word that leaves it pays the
        # weighted <unk> unigram at once, not only when it ends
        self.prefixes = None if lm is None else \
            {w[:i] for w in lm.index if w and not w.startswith("<") for i in range(len(w) + 1)}
        self.oov_charge = 0.0 if lm is None else self.lm_weight * lm.unk_log10
        self.start: Hyp | None = None
        self.begin()

    def begin(self) -> None:
        """A new segment: one empty hypothesis, the prediction network where the best one was."""
        if self.start is None:
            device = next(iter(self.model.parameters()), torch.zeros(0)).device
            units = torch.full((1,), BLANK, dtype=torch.long, device=device)
            state, pred = self.model.decoder_step(self.model.decoder_start(1), units)
            self.start = Hyp(Emitted(), 0.0, 0.0, None, "", state[0], pred[0])
        lm_state = self.lm.start() if self.lm is not None else None
        self.hyps = [Hyp(Emitted(), 0.0, 0.0, lm_state, "", self.start.state, self.start.pred)]
        self.frame = 0

    def reset(self) -> None:
        self.start = None
        self.begin()

    def advance(self, e: torch.Tensor) -> list[int]:
        return [self._frame(e[t]) for t in range(e.shape[0])]

    def _frame(self, e: torch.Tensor) -> int:
        """One frame: up to max_symbols rounds of expansions of the hypotheses still on it."""
        done: dict[tuple, Hyp] = {}  # hypotheses through this frame, by their units
        on = self.hyps
        for round_ in range(self.max_symbols):
            last = round_ == self.max_symbols - 1
            logp = masked_joint(self.model, e[None].expand(len(on), -1), torch.stack([h.pred for h in on])).cpu()
            for h, lp in zip(on, logp[:, BLANK].tolist()):
                _merge(done, Hyp(h.emitted, h.ac + lp, h.lm, h.lm_state, h.partial, h.state, h.pred))
            cands = self._expansions(on, logp)  # (score, hyp, unit, log-prob), best first
            floor = sorted((h.score for h in done.values()), reverse=True)[self.beam - 1] \
                if len(done) >= self.beam else float("-inf")
            cands = [c for c in cands if c[0] > floor][: self.beam]
            if not cands:
                break
            moved = self._extend(cands)
            if last:  # one more unit on the last round's frame, then on to the next (modified beam search)
                for h in moved:
                    _merge(done, h)
            on = moved
        self.hyps = sorted(done.values(), key=lambda h: h.score, reverse=True)[: self.beam]
        self.frame += 1
        top = self.hyps[0].emitted
        return top.units[-1] if top.frames and top.frames[-1] == self.frame - 1 else BLANK

    def _expansions(self, on: list[Hyp], logp: torch.Tensor) -> list[tuple]:
        """Each hypothesis' `pre_beam` best units (no blank), scored with the LM terms."""
        k = min(self.pre_beam, logp.shape[1] - EOS - 1)
        top_lp, top_units = logp[:, EOS + 1:].topk(k, dim=-1)
        cands = []
        for h, lps, units in zip(on, top_lp.tolist(), (top_units + EOS + 1).tolist()):
            word = self._word_terms(h) if h.partial else None  # (LM state after the word, its terms)
            for lp, u in zip(lps, units):
                terms = word[1] if word is not None and self.boundary[u] else 0.0
                cands.append((h.score + lp + terms + self._leaves_lexicon(h.partial, u), h, u, lp))
        cands.sort(key=lambda c: c[0], reverse=True)
        return cands

    def _leaves_lexicon(self, partial: str, u: int) -> float:
        """The weighted <unk> cost, charged on the unit whose text makes the word under way no
        LM word's prefix (0 for the units after it, and without an LM)."""
        if self.prefixes is None:
            return 0.0
        if self.boundary[u]:  # a new word starts with this unit's text
            return 0.0 if self.text[u] in self.prefixes else self.oov_charge
        if partial not in self.prefixes:  # charged already
            return 0.0
        return 0.0 if partial + self.text[u] in self.prefixes else self.oov_charge

    def _word_terms(self, h: Hyp) -> tuple[object, float]:
        """The word under way completed: the LM's state after it and its weighted terms (for
        a word off the lexicon, less the charge paid when it left it: the LM's <unk> score
        takes its place)."""
        if self.lm is None:
            return None, 0.0
        state, lp = self.lm.score(h.lm_state, h.partial)
        refund = -self.oov_charge if h.partial not in self.prefixes else 0.0
        return state, self.lm_weight * lp + self.word_score + refund

    def _extend(self, cands: list[tuple]) -> list[Hyp]:
        """The hypotheses `cands` make: each parent's units + one, the prediction network stepped."""
        states, units = torch.stack([c[1].state for c in cands]), torch.tensor([c[2] for c in cands])
        states, preds = self.model.decoder_step(states, units.to(states.device))
        out = []
        for (score, h, u, lp), state, pred in zip(cands, states, preds):
            lm_state, partial = h.lm_state, h.partial + self.text[u]
            if self.boundary[u]:
                lm_state = self._word_terms(h)[0] if h.partial else h.lm_state
                partial = self.text[u]
            e = h.emitted
            out.append(Hyp(Emitted(e.units + [u], e.frames + [self.frame], e.probs + [math.exp(lp)]), h.ac + lp,
                           score - h.ac - lp, lm_state, partial, state, pred))
        return out

    def best(self, final: bool = False) -> Emitted:
        """The best hypothesis (final: its last word and </s> scored by the LM); the next segment
        starts from its prediction network state."""
        def total(h: Hyp) -> float:
            if not final or self.lm is None:
                return h.score
            state, terms = self._word_terms(h) if h.partial else (h.lm_state, 0.0)
            return h.score + terms + self.lm_weight * self.lm.finish(state)
        top = max(self.hyps, key=total)
        if final:
            self.start = top
        return top.emitted


def _merge(hyps: dict[tuple, Hyp], h: Hyp) -> None:
    """Add `h`; a hypothesis with the same units by another path adds its probability."""
    key = tuple(h.emitted.units)
    other = hyps.get(key)
    if other is None:
        hyps[key] = h
        return
    best = h if h.score > other.score else other
    hyps[key] = Hyp(best.emitted, float(torch.logaddexp(torch.tensor(h.ac), torch.tensor(other.ac))), best.lm,
                    best.lm_state, best.partial, best.state, best.pred)


# --------------------------------------------------------------------------------------
# the strategies asr/decoding/decoder.py registers for model kind "rnnt"
# --------------------------------------------------------------------------------------
def _text(tokenizer, units: list[int]) -> str:
    return tidy(tokenizer.decode(units))


class TransducerBatch(BatchStrategy):
    """The encoder on the padded batch, then greedy (all rows at once) or a beam search per
    utterance; each hypothesis carries its emissions (the word times)."""

    def __init__(self, model, tokenizer, options: DecodeOptions, beam: int | None):
        super().__init__(model, tokenizer, options)
        self.beam = beam
        if beam is not None:
            lm = WordLM(Path(options.lm)) if options.lm is not None else None
            self.search = BeamSearch(model, beam, lm, list(tokenizer.units), options)

    def __call__(self, feats: torch.Tensor, lengths: torch.Tensor, align: bool = False) -> Decoded:
        e, out_lens = self.model.frames(feats, lengths)  # [B, T', J], [B]
        if self.beam is None:
            search = GreedySearch(self.model, e.shape[0], self.options.max_symbols)
            search.advance(e, out_lens)
            emitted = search.emitted
        else:
            emitted = []
            for b, n in enumerate(out_lens.tolist()):
                self.search.reset()  # each utterance from the start
                self.search.advance(e[b, :n])
                emitted.append(self.search.best(final=True))
        return Decoded([_text(self.tokenizer, h.units) for h in emitted], emissions=emitted)


def greedy_batch(model, tokenizer, options: DecodeOptions) -> TransducerBatch:
    return TransducerBatch(model, tokenizer, options, None)


def beam_batch(model, tokenizer, options: DecodeOptions) -> TransducerBatch:
    return TransducerBatch(model, tokenizer, options, options.search_beam("rnnt"))


class TransducerStream(StreamStrategy):
    """A live segment's greedy or beam search, fed the stream's encoder frames e [n, J]
    (asr/inference/streaming.py); its words are timed by their emissions."""

    def __init__(self, model, tokenizer, options: DecodeOptions, beam: int | None):
        self.model, self.tokenizer, self.options = model, tokenizer, options
        self.search = None
        if beam is not None:
            lm = WordLM(Path(options.lm)) if options.lm is not None else None
            self.search = BeamSearch(model, beam, lm, list(tokenizer.units), options)
        self.greedy: GreedySearch | None = None
        self.begin()

    def begin(self) -> None:
        if self.search is not None:
            self.search.begin()
            return
        if self.greedy is None:
            self.greedy = GreedySearch(self.model, 1, self.options.max_symbols)
        self.greedy.emitted, self.greedy.frame = [Emitted()], 0  # the network's state goes on

    def reset(self) -> None:
        """A new stream: the prediction network from the start."""
        self.greedy = None
        if self.search is not None:
            self.search.reset()
        self.begin()

    def step(self, frames: torch.Tensor) -> list[int]:
        if self.search is not None:
            return self.search.advance(frames)
        return self.greedy.advance(frames[None], torch.tensor([frames.shape[0]]))[0].tolist()

    def _emitted(self, final: bool) -> Emitted:
        return self.greedy.emitted[0] if self.search is None else self.search.best(final)

    def partial(self) -> str:
        return _text(self.tokenizer, self._emitted(False).units)

    def end(self) -> str:
        self.last = self._emitted(True)
        return _text(self.tokenizer, self.last.units)

    def words(self, text: str, frames: torch.Tensor, tokenizer, shift: float) -> list[Word]:
        e = self.last
        return emitted_words(e.units, e.frames, e.probs, text, tokenizer, shift)


def greedy_stream(model, tokenizer, options: DecodeOptions) -> TransducerStream:
    return TransducerStream(model, tokenizer, options, None)


def beam_stream(model, tokenizer, options: DecodeOptions) -> TransducerStream:
    return TransducerStream(model, tokenizer, options, options.search_beam("rnnt"))
