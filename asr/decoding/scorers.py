"""What the attention beam search adds to the speller's scores: CTC prefix scores and a word LM.

    CTCPrefixScorer   log P_ctc(prefix ...) of each hypothesis, extended one unit at a time
                      (Watanabe et al. 2017), for joint CTC/attention decoding
    WordLM            an ARPA word n-gram LM through flashlight's KenLM (log10 scores)
    WordFusion        per-hypothesis LM state: scores each word once the unit after it
                      starts a new word, or at <eos> (shallow fusion)

asr/decoding/las.py's LASBeamSearch combines them (the score is in its module docstring).
"""

from __future__ import annotations

from pathlib import Path

import torch

from asr.decoding.arpa import UNK, kenlm_error, lm_words
from asr.tokens.subword import UNK_PIECE, WORD_START
from asr.tokens.units import BLANK, EOS, SPACE

LOG_ZERO = -1e10  # log 0 of the CTC prefix scorer (finite, so no inf - inf)
IMPOSSIBLE = LOG_ZERO / 2  # CTC prefix scores below this are zero probability


class CTCPrefixScorer:
    """CTC prefix probabilities of N hypotheses, extended one unit at a time.

    log_probs [N, T, V] (natural log), lengths [N]. For the current prefix g of each row
    it holds r_t^n(g), r_t^b(g) (log-probability that frames 1..t emit g, ending in a
    non-blank / a blank) as `r` [T, N, 2]. `score(cands, last, i)` gives, for each
    candidate c, the prefix score log sum_t P(g c first completed at frame t) (Watanabe et
    al. 2017, algorithm 2); `final()` the probability of g as the whole sequence. Frames past
    a row's length emit blank with probability 1, so they change nothing.
    """

    def __init__(self, log_probs: torch.Tensor, lengths: torch.Tensor):
        x = log_probs.float()
        N, T, V = x.shape
        pad = torch.arange(T, device=x.device)[None, :] >= lengths[:, None]  # [N, T]
        x = x.masked_fill(pad[..., None], LOG_ZERO)
        x[..., BLANK] = x[..., BLANK].masked_fill(pad, 0.0)
        self.x = x.transpose(0, 1).contiguous()  # [T, N, V]
        self.T = T
        blank_run = torch.cumsum(self.x[..., BLANK], dim=0)  # the empty prefix: blanks only
        self.r = torch.stack([torch.full_like(blank_run, LOG_ZERO), blank_run], dim=-1)  # [T, N, 2]

    def score(self, cands: torch.Tensor, last: torch.Tensor, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cands [N, C] units, last [N] the prefix's last unit, i its length ->
        prefix scores [N, C], new r [T, N, C, 2]."""
        T, (N, C) = self.T, cands.shape
        xc = self.x.gather(2, cands[None].expand(T, N, C))  # [T, N, C]
        xb = self.x[..., BLANK][..., None]  # [T, N, 1]
        rn_g, rb_g = self.r[..., 0][..., None], self.r[..., 1][..., None]  # [T, N, 1]
        same = (cands == last[:, None])[None]  # a repeat needs a blank in between
        phi = torch.where(same, rb_g, torch.logaddexp(rn_g, rb_g))  # [T, N, C]
        rn = torch.full((T, N, C), LOG_ZERO, device=xc.device)
        rb = torch.full((T, N, C), LOG_ZERO, device=xc.device)
        if i == 0:
            rn[0] = xc[0]
        start = max(1, i)  # g c needs at least i + 1 frames
        for t in range(start, T):
            rn[t] = torch.logaddexp(rn[t - 1], phi[t - 1]) + xc[t]
            rb[t] = torch.logaddexp(rb[t - 1], rn[t - 1]) + xb[t]
        terms = phi[start - 1:T - 1] + xc[start:]
        psi = torch.logsumexp(torch.cat([rn[:1], terms], dim=0), dim=0) if i == 0 else (
            torch.logsumexp(terms, dim=0) if start < T else torch.full((N, C), LOG_ZERO, device=xc.device))
        return psi.clamp(min=LOG_ZERO), torch.stack([rn, rb], dim=-1)

    def final(self) -> torch.Tensor:
        """[N]: log P(the current prefix is the whole sequence)."""
        return torch.logaddexp(self.r[-1, :, 0], self.r[-1, :, 1]).clamp(min=LOG_ZERO)

    def select(self, rows: torch.Tensor, cols: torch.Tensor, r_new: torch.Tensor) -> None:
        self.r = r_new[:, rows, cols]


class WordLM:
    """An ARPA word n-gram LM through flashlight's KenLM binding (log10 scores)."""

    def __init__(self, path: Path):
        from flashlight.lib.text.decoder.kenlm import KenLM  # flashlight-text: heavy, loaded on use
        from flashlight.lib.text.dictionary import Dictionary

        words = lm_words(path)  # the file checked before KenLM sees it; None: a KenLM binary
        if words is None:
            raise ValueError(f"{path} is not an ARPA file: LM fusion in the attention beam search reads ARPA "
                             "files (asr-cli lm build, or lmplz)")
        if UNK not in words:
            words.append(UNK)
        self.dictionary = Dictionary(words)
        self.index = {w: i for i, w in enumerate(words)}
        self.unk = self.index[UNK]
        try:
            self.kenlm = KenLM(str(path), self.dictionary)
        except RuntimeError as e:
            raise kenlm_error(path, e) from None
        # log10 P(<unk>) with no context (the transducer's beam charges it to a word off the
        # lexicon); an LM with no <unk> mass says -100: held at -10, a cost, not a ban
        self.unk_log10 = max(-10.0, float(self.kenlm.score(self.kenlm.start(True), self.unk)[1]))

    def start(self):
        return self.kenlm.start(False)  # after <s>

    def score(self, state, word: str):
        """-> (new state, log10 P(word | state))."""
        return self.kenlm.score(state, self.index.get(word, self.unk))

    def finish(self, state) -> float:
        return self.kenlm.finish(state)[1]


class WordFusion:
    """Per-hypothesis LM state and partial word; scores words as they are completed.

    units: the tokenizer's unit strings. A unit starts a word when it is the space (characters)
    or begins with "▁" (SentencePiece); its text (without the "▁") opens the next word.
    """

    def __init__(self, lm: WordLM | None, units: list[str]):
        self.lm = lm
        self.boundary = [u == SPACE or u.startswith(WORD_START) for u in units]
        self.text = ["" if u == SPACE else u[len(WORD_START):] if u.startswith(WORD_START) else u for u in units]
        for special in (BLANK, EOS, *(i for i, u in enumerate(units) if u == UNK_PIECE)):
            self.boundary[special], self.text[special] = False, ""
        self._boundary_t = torch.tensor(self.boundary)

    def reset(self, n: int) -> None:
        start = self.lm.start() if self.lm is not None else None
        self.states, self.partial = [start] * n, [""] * n
        self._after_word = [None] * n

    def candidates(self, ids: torch.Tensor, rows_alive: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ids [N, C] (last column <eos>) -> LM log10 deltas [N, C], words completed [N, C]."""
        N = ids.shape[0]
        word_lp, eos_lp, has = [0.0] * N, [0.0] * N, [0.0] * N
        for n, alive in enumerate(rows_alive.tolist()):
            self._after_word[n] = self.states[n]
            if not alive:
                continue
            state = self.states[n]
            if self.partial[n]:
                has[n] = 1.0
                if self.lm is not None:
                    state, word_lp[n] = self.lm.score(state, self.partial[n])
                self._after_word[n] = state
            if self.lm is not None:
                eos_lp[n] = word_lp[n] + self.lm.finish(state)
        device = ids.device
        word_lp_t = torch.tensor(word_lp, device=device)[:, None]
        has_t = torch.tensor(has, device=device)[:, None]
        starts = self._boundary_t.to(device)[ids]  # [N, C]
        starts[:, -1] = False
        lm = torch.where(starts, word_lp_t, torch.zeros_like(word_lp_t))
        inc = starts.float() * has_t
        lm[:, -1] = torch.tensor(eos_lp, device=device)
        inc[:, -1] = has_t[:, 0]
        return lm, inc

    def select(self, rows: list[int], tokens: list[int]) -> None:
        states, partial = [], []
        for n, t in zip(rows, tokens):
            if self.boundary[t]:
                states.append(self._after_word[n])
                partial.append(self.text[t])
            else:
                states.append(self.states[n])
                partial.append(self.partial[n] + self.text[t])
        self.states, self.partial = states, partial
