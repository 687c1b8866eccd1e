"""The decoding interface every strategy implements, and CTC's best path, written once.

    BatchStrategy   strategy(feats [B, T, F], lengths [B], align) -> Decoded: B texts, and
                    the CTC log-probs [B, T', V] and lengths [B] the words can be aligned on
                    when `align` asks and the model has a CTC output (else None)
    StreamStrategy  one live segment, fed the model's outputs chunk by chunk:
                    begin(); step(out [n, V]) -> the best unit of each of the n frames (what
                    endpoints are found by); partial() -> text so far; end() -> final text

A model kind's strategies live in one file (asr/decoding/ctc.py, las.py) and are registered
by (kind, mode) in asr/decoding/decoder.py's STRATEGIES; the apps only ever see `Decoder`.
Texts here are raw (spaces tidied); the Decoder normalises them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from asr.decoding.options import DecodeOptions
from asr.tokens.units import BLANK, EOS


@dataclass
class Decoded:
    """A batch's hypotheses: texts [B]; log_probs [B, T', V] and lengths [B] of the CTC
    alignment (None when not asked for or when the model has no CTC output)."""

    texts: list[str]
    log_probs: torch.Tensor | None = None
    lengths: torch.Tensor | None = None


class BatchStrategy:
    """Whole utterances in a padded batch. Subclasses set up their search in __init__ and
    implement __call__; `describe` adds what the summary should record of them."""

    def __init__(self, model, tokenizer, options: DecodeOptions):
        self.model, self.tokenizer, self.options = model, tokenizer, options

    def __call__(self, feats: torch.Tensor, lengths: torch.Tensor, align: bool = False) -> Decoded:
        raise NotImplementedError

    def describe(self) -> dict:
        return {}


class StreamStrategy:
    """One live segment at a time (see the module docstring); `begin` starts the next."""

    def begin(self) -> None:
        raise NotImplementedError

    def step(self, out: torch.Tensor) -> list[int]:
        raise NotImplementedError

    def partial(self) -> str:
        raise NotImplementedError

    def end(self) -> str:
        raise NotImplementedError


def tidy(text: str) -> str:
    """Single spaces between words, none at the ends."""
    return " ".join(text.split())


def collapse(best: list[int], prev: int = BLANK) -> tuple[list[int], int]:
    """CTC's best path over frames whose best units are `best`, the frame before them having
    been `prev`: (units: repeats merged, blanks and <eos> dropped; the last frame's unit, to
    pass as `prev` with the next piece). A blank between two equal units keeps both
    ("a _ a" -> "aa"). The one collapse: batch greedy and live greedy decoding both call it."""
    units = []
    for u in best:
        if u != prev and u not in (BLANK, EOS):
            units.append(u)
        prev = u
    return units, prev
