"""Decoding: the strategy `DecodeOptions` picks for a model, behind the `Decoder` facade.

    options = DecodeOptions(lm=Path("lm/fr-3gram.arpa"))     the defaults for all the rest
    decoder = Decoder(model, tokenizer, options, normalizer)
    texts = decoder(feats [B, T, F], lengths [B])            B normalised hypotheses
    out = decoder.decode(feats, lengths, align=True)         and the CTC log-probs for word times
    live = decoder.stream(); ...; decoder.release(live)      a live segment's strategy

`asr-cli eval`, `asr-cli transcribe`, the API, live streams and serve decode through
`Decoder`; the training loop's dev CER through `greedy_texts`, the `Decoder` in greedy mode,
so the dev CER is computed on the hypotheses eval would produce.

STRATEGIES maps (model kind, mode) to the factories of a batch strategy (model, tokenizer,
options) and a stream strategy (the same arguments; asr/decoding/strategy.py's interface;
None: that kind does not stream). A mode is "greedy", or "beam" when `beam` is given or an LM
(or, for las, a CTC weight) asks for a search; its width is then `beam`, or `ctc_beam` /
`las_beam` / `rnnt_beam` by model kind. A new model kind
or mode is its strategies' file and a line here. The strategies:

    mode     ctc (asr/decoding/ctc.py)                      las (asr/decoding/las.py)
    greedy   CTCGreedyDecoder on model.log_probs; live:     LASGreedyDecoder
             CTCGreedyStream
    beam     CTCBeamDecoder (flashlight), lexicon-free or   LASBeamSearch (joint CTC/attention,
             with the word LM (ARPA); live: the same        --ctc-weight; LM by shallow fusion)

    mode     rnnt (asr/decoding/transducer.py)
    greedy   GreedySearch (batched; live: the same, one row)
    beam     BeamSearch, icefall's modified beam search (one unit a frame; LM by shallow fusion)

The LM terms are the same for every kind: `lm_weight * log10 P_lm(word) + word_score per
word`, added to the acoustic natural-log scores (the word score goes with the LM: without
one, none is added). `DecodeOptions` (asr/decoding/options.py) holds every default, and
says how to tune the LM weights on dev.
"""

from __future__ import annotations

import threading

import torch

from asr.decoding import ctc, las, transducer
from asr.decoding.options import DecodeOptions
from asr.decoding.strategy import Decoded, StreamStrategy, tidy
from asr.nets.kinds import KINDS

__all__ = ["DecodeOptions", "Decoder", "greedy_texts", "modes", "normalize_hypothesis"]

STRATEGIES = {  # (model kind, mode) -> (batch strategy factory, stream strategy factory or None)
    ("ctc", "greedy"): (ctc.greedy_batch, ctc.greedy_stream),
    ("ctc", "beam"): (ctc.beam_batch, ctc.beam_stream),
    ("las", "greedy"): (las.greedy_batch, None),
    ("las", "beam"): (las.beam_batch, None),
    ("rnnt", "greedy"): (transducer.greedy_batch, transducer.greedy_stream),
    ("rnnt", "beam"): (transducer.beam_batch, transducer.beam_stream),
}


def modes(kind: str) -> list[str]:
    """The modes registered for a model kind ("greedy", "beam", ...)."""
    return [mode for k, mode in STRATEGIES if k == kind]


class Decoder:
    """A model's decoding in one mode (the strategies `options` pick for `model.kind`).

    `decoder(feats [B, T, F] (CMVN applied, on the model's device), lengths [B])` -> B
    hypotheses, normalised with `normalizer` when one is given. Not for two threads at once
    (a beam search holds state): `with_options` or another Decoder per thread.
    """

    def __init__(self, model, tokenizer, options: DecodeOptions, normalizer=None):
        self.kind = getattr(model, "kind", None)
        if self.kind not in KINDS:
            raise ValueError(f"cannot decode a model of kind {self.kind!r} (known: {', '.join(KINDS)})")
        options.check(self.kind)
        self.model, self.tokenizer, self.options, self.normalizer = model, tokenizer, options, normalizer
        self.beam = options.search_beam(self.kind) if options.searches() else None
        key = (self.kind, "greedy" if self.beam is None else "beam")
        if key not in STRATEGIES:
            raise ValueError(f"no {key[1]} decoding for {self.kind} models (have: {', '.join(modes(self.kind))})")
        make_batch, self._make_stream = STRATEGIES[key]
        self.strategy = make_batch(model, tokenizer, options)
        self._spare: list[StreamStrategy] = []  # finished live segments' strategies (a beam's LM loaded once)
        self._lock = threading.Lock()

    @property
    def mode(self) -> str:
        if self.beam is None:
            return "greedy"
        return f"beam{self.beam}" + ("-lm" if self.options.lm is not None else "")

    def describe(self) -> dict:
        """The decoding settings, as the summary records them."""
        o = self.options
        uses_lm = o.lm is not None
        extra = self.strategy.describe() if self.beam is not None else {}
        return {"mode": self.mode, "beam": self.beam, "lm": str(o.lm) if uses_lm else None,
                "lm_weight": o.lm_weight if uses_lm else None,
                "word_score": o.word_score if uses_lm else None, "ctc_weight": extra.get("ctc_weight")}

    @torch.no_grad()
    def decode(self, feats: torch.Tensor, lengths: torch.Tensor, align: bool = False) -> Decoded:
        """B normalised hypotheses, with the CTC log-probs to align their words on (see Decoded)."""
        out = self.strategy(feats, lengths, align)
        out.texts = [normalize_hypothesis(t, self.normalizer) for t in out.texts]
        return out

    def __call__(self, feats: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        return self.decode(feats, lengths).texts

    # --- live segments (asr/inference/streaming.py) ---

    @property
    def streams(self) -> bool:
        return self._make_stream is not None

    def stream(self) -> StreamStrategy:
        """A strategy for one live stream's segments: a spare one (a finished stream's, its LM
        already loaded) or a new one. Give it back with `release` when the stream ends."""
        if self._make_stream is None:
            raise ValueError(f"{self.kind} models do not decode live streams")
        with self._lock:
            spare = self._spare.pop() if self._spare else None
        if spare is not None:
            spare.reset()
            return spare
        return self._make_stream(self.model, self.tokenizer, self.options)

    def release(self, strategy: StreamStrategy) -> None:
        with self._lock:
            self._spare.append(strategy)

    def text(self, raw: str) -> str:
        """A live strategy's text, normalised as batch hypotheses are."""
        return normalize_hypothesis(raw, self.normalizer)


def greedy_texts(model, tokenizer, feats: torch.Tensor, lengths: torch.Tensor, normalizer=None) -> list[str]:
    """Greedy hypotheses of any model kind, as `asr-cli eval` makes them in greedy mode (the
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
