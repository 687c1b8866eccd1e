"""Decoding a transducer (asr/nets/transducer.py): greedy, and modified beam search with an optional word LM.

    GreedySearch   N independent rows (a batch's utterances, or one live stream) frame by frame:
                   the joiner's best unit; a unit (not blank) feeds the prediction network and
                   the same frame is asked again, up to `max_symbols` units a frame; blank goes
                   on to the next frame
    BeamSearch     icefall's modified beam search on one utterance: at each frame every
                   hypothesis either stays (blank) or takes one unit, and the `beam` best of
                   all those expansions go on; expansions with the same units merge (their
                   probabilities add). With a word LM (shallow fusion) a hypothesis scores

        acoustic log P + lm_weight * sum_words log10 P_lm(word | history) + word_score * words

                   each word scored by asr/decoding/scorers.py's WordFusion when the unit after
                   it starts a new word (a space, or a "▁" piece), the last one and </s> at the
                   end; `pre_beam` units per hypothesis (the acoustically best) are scored by
                   the LM (None: 1.5 x beam; all without an LM)

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
from pathlib import Path

import torch

from asr.decoding.options import DecodeOptions
from asr.decoding.scorers import WordFusion, WordLM
from asr.decoding.strategy import BatchStrategy, Decoded, Emitted, StreamStrategy, tidy
from asr.decoding.timestamps import Word, emitted_words
from asr.tokens.units import BLANK, EOS

PRE_BEAM_FACTOR = 1.5  # with an LM: units per hypothesis scored by it, x beam


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


class BeamSearch:
    """Modified beam search of one utterance (see the module docstring), fed frames as they
    come: `begin()`, `advance(e [T, J])` -> the best hypothesis' unit at each frame (BLANK
    where it emitted none), `best(final)` -> its Emitted (final: with the LM's end-of-sentence
    terms)."""

    def __init__(self, model, beam: int, lm: WordLM | None, units: list[str], options: DecodeOptions):
        self.model, self.beam = model, beam
        self.fusion = WordFusion(lm, units) if lm is not None else None
        self.lm_weight, self.word_score = options.lm_weight, options.word_score
        self.pre_beam = options.pre_beam or max(1, round(PRE_BEAM_FACTOR * beam))
        self.state = self.pred = None
        self.begin()

    def begin(self) -> None:
        """A new segment: one empty hypothesis, the prediction network where the best one was."""
        if self.state is None:
            device = next(iter(self.model.parameters()), torch.zeros(0)).device
            start = torch.full((1,), BLANK, dtype=torch.long, device=device)
            self.state, self.pred = self.model.decoder_step(self.model.decoder_start(1), start)
        else:
            self.state, self.pred = self.state[:1], self.pred[:1]
        self.hyps = [Emitted()]
        self.ac = torch.zeros(1)  # acoustic log P per hypothesis
        self.lm = torch.zeros(1)  # weighted LM and word terms so far
        self.frame = 0
        if self.fusion is not None:
            self.fusion.reset(1)

    def _fusion(self, ids: torch.Tensor) -> torch.Tensor:
        """The LM terms [K, C] of each hypothesis taking ids [K, C] (the last column: its end)."""
        lm, words = self.fusion.candidates(ids, torch.ones(ids.shape[0], dtype=torch.bool))
        return self.lm_weight * lm.float().cpu() + self.word_score * words.float().cpu()

    def advance(self, e: torch.Tensor) -> list[int]:
        best_units = []
        for t in range(e.shape[0]):
            best_units.append(self._frame(e[t]))
        return best_units

    def _frame(self, e: torch.Tensor) -> int:
        k = len(self.hyps)
        logp = masked_joint(self.model, e[None].expand(k, -1), self.pred).cpu()  # [K, V]
        if self.fusion is None:
            ids = torch.arange(logp.shape[1])[None].expand(k, -1)  # every unit (blank, <eos> too: -inf)
            scores = self.ac[:, None] + logp + self.lm[:, None]
        else:
            top = logp[:, EOS + 1:].topk(min(self.pre_beam, logp.shape[1] - EOS - 1), dim=-1).indices + EOS + 1
            ids = torch.cat([torch.full((k, 1), BLANK), top], dim=1)  # [K, 1 + P]
            fused = self._fusion(torch.cat([top, torch.full((k, 1), EOS)], dim=1))[:, :-1]
            scores = self.ac[:, None] + logp.gather(1, ids) + self.lm[:, None]
            scores[:, 1:] += fused
        flat = scores.reshape(-1)
        picked = flat.topk(min(self.beam, int(torch.isfinite(flat).sum()) or 1)).indices.tolist()
        width = ids.shape[1]
        merged: dict[tuple, int] = {}
        rows, units, ac, lm, hyps = [], [], [], [], []
        for i in picked:
            r, c = divmod(i, width)
            u = int(ids[r, c])
            h = self.hyps[r]
            a = float(self.ac[r] + logp[r, u])
            key = tuple(h.units) + ((u,) if u != BLANK else ())
            if key in merged:  # the same units by another path: their probabilities add
                j = merged[key]
                ac[j] = float(torch.logaddexp(torch.tensor(ac[j]), torch.tensor(a)))
                continue
            merged[key] = len(rows)
            rows.append(r)
            units.append(u)
            ac.append(a)
            lm.append(float(scores[r, c]) - a)
            hyps.append(h if u == BLANK else Emitted(h.units + [u], h.frames + [self.frame],
                                                      h.probs + [math.exp(float(logp[r, u]))]))
        self._select(rows, units)
        self.hyps, self.ac, self.lm = hyps, torch.tensor(ac), torch.tensor(lm)
        self.frame += 1
        top = hyps[0]  # picked in score order: the first is the best
        return top.units[-1] if top.frames and top.frames[-1] == self.frame - 1 else BLANK

    def _select(self, rows: list[int], units: list[int]) -> None:
        """The prediction network's state and output of each kept expansion."""
        device = self.pred.device
        r = torch.tensor(rows, device=device)
        state, pred = self.state[r].clone(), self.pred[r].clone()
        moved = torch.tensor([i for i, u in enumerate(units) if u != BLANK], dtype=torch.long, device=device)
        if len(moved):
            s, p = self.model.decoder_step(state[moved], torch.tensor(units, device=device)[moved])
            state[moved], pred[moved] = s.to(state.dtype), p.to(pred.dtype)
        self.state, self.pred = state, pred
        if self.fusion is not None:
            self.fusion.select(rows, units)

    def best(self, final: bool = False) -> Emitted:
        if not final or self.fusion is None:
            return self.hyps[int(torch.argmax(self.ac + self.lm))]
        end = self._fusion(torch.full((len(self.hyps), 1), EOS))[:, 0]
        i = int(torch.argmax(self.ac + self.lm + end))
        self.state, self.pred = self.state[i:i + 1], self.pred[i:i + 1]  # the next segment goes on from here
        return self.hyps[i]


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
                self.search.state = None  # each utterance from the start
                self.search.begin()
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
