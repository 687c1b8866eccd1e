"""Decoding: the strategy `DecodeOptions` picks for a model, behind the `Decoder` facade.

    options = DecodeOptions(lm=Path("lm/fr-3gram.arpa"))     the defaults for all the rest
    decoder = Decoder(model, tokenizer, options, normalizer)
    texts = decoder(feats [B, T, F], lengths [B])            B normalised hypotheses

`asr-cli eval` and `asr-cli transcribe` decode through `Decoder`; the training loop's dev CER
through `greedy_texts`, which is the `Decoder` in greedy mode, so the dev CER during
training is computed on the hypotheses eval would produce. The strategies, by `model.kind`:

    mode        ctc (asr/ctc_decoding.py)                    las (asr/las_decoding.py)
    greedy      CTCGreedyDecoder on model.log_probs           LASGreedyDecoder
    beamN       CTCBeamDecoder, lexicon-free                 LASBeamSearch (joint CTC/attention,
    beamN-lm    CTCBeamDecoder with the word LM (ARPA)        --ctc-weight; LM by shallow fusion)

A search runs when `beam` is given, or an LM (or, for las, a CTC weight) asks for one; its
width is then `beam`, or `ctc_beam` / `las_beam` by model kind. The LM terms are the same
for both kinds: `lm_weight * log10 P_lm(word) + word_score per word`, added to the acoustic
natural-log scores (the word score goes with the LM: without one, none is added).

`DecodeOptions` (asr/decode_options.py, re-exported here) holds every default, and says how
to tune the LM weights on dev.
"""

from __future__ import annotations

import torch

from asr.ctc_decoding import CTCBeamDecoder, CTCGreedyDecoder, tidy
from asr.decode_options import DecodeOptions
from asr.las_decoding import LASBeamSearch, LASGreedyDecoder
from asr.kinds import KINDS

__all__ = ["DecodeOptions", "Decoder", "greedy_texts", "normalize_hypothesis"]


class Decoder:
    """A model's decoding in one mode (the strategy `options` pick for `model.kind`).

    `decoder(feats [B, T, F] (CMVN applied, on the model's device), lengths [B])` -> B
    hypotheses, normalised with `normalizer` when one is given.
    """

    def __init__(self, model, tokenizer, options: DecodeOptions, normalizer=None):
        self.kind = getattr(model, "kind", None)
        if self.kind not in KINDS:
            raise ValueError(f"cannot decode a model of kind {self.kind!r} (known: {', '.join(KINDS)})")
        options.check(self.kind)
        self.model, self.tokenizer, self.options, self.normalizer = model, tokenizer, options, normalizer
        self.beam = options.search_beam(self.kind) if options.searches() else None
        if self.kind == "ctc":
            self.strategy = CTCGreedyDecoder(tokenizer) if self.beam is None else CTCBeamDecoder(tokenizer, options)
        elif self.beam is not None:
            self.strategy = LASBeamSearch(model, options, tokenizer.units)
        else:
            self.strategy = LASGreedyDecoder(model, options)

    @property
    def mode(self) -> str:
        if self.beam is None:
            return "greedy"
        return f"beam{self.beam}" + ("-lm" if self.options.lm is not None else "")

    def describe(self) -> dict:
        """The decoding settings, as the summary records them."""
        o = self.options
        uses_lm = o.lm is not None
        ctc_weight = None
        if self.kind == "las" and self.beam is not None:
            ctc_weight = o.ctc_weight if o.ctc_weight is not None else getattr(self.model, "ctc_weight", None)
        return {"mode": self.mode, "beam": self.beam, "lm": str(o.lm) if uses_lm else None,
                "lm_weight": o.lm_weight if uses_lm else None,
                "word_score": o.word_score if uses_lm else None, "ctc_weight": ctc_weight}

    @torch.no_grad()
    def __call__(self, feats: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        if self.kind == "ctc":
            log_probs, out_lens = self.model.log_probs(feats, lengths)  # [B, T', V], [B]
            texts = self.strategy.decode(log_probs, out_lens)
        else:
            texts = [self.tokenizer.decode(ids) for ids in self.strategy(feats, lengths)]
        return [normalize_hypothesis(t, self.normalizer) for t in texts]


def greedy_texts(model, tokenizer, feats: torch.Tensor, lengths: torch.Tensor, normalizer=None) -> list[str]:
    """Greedy hypotheses of a CTC or LAS model, as `asr-cli eval` makes them in greedy mode (the
    training loop's dev CER): feats [B, T, F], lengths [B] -> B strings, spaces tidied, and
    normalised too when `normalizer` (eval's: the dataset's) is given."""
    return Decoder(model, tokenizer, DecodeOptions(), normalizer)(feats, lengths)


def normalize_hypothesis(text: str, normalizer=None) -> str:
    """The dataset's normaliser on a hypothesis: "" when nothing is left; a hypothesis it
    would reject (a character it cannot map) is only whitespace-tidied."""
    tidied = tidy(text)
    if normalizer is None:
        return tidied
    out, reason = normalizer.analyse(tidied)
    if reason is None:
        return out
    return "" if reason == "empty_text" else tidied
