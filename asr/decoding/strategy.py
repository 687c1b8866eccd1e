"""The decoding interface every strategy implements, and CTC's best path, written once.

    BatchStrategy   strategy(feats [B, T, F], lengths [B], align) -> Decoded: B texts, and
                    what their words are timed by when `align` asks: the CTC log-probs
                    [B, T', V] and lengths [B] to align them on (a model with a CTC output),
                    or a transducer's emissions (the frame of each unit)
    StreamStrategy  one live segment, fed a stream model's chunk outputs (CTC log-probs
                    [n, V], a transducer's encoder frames [n, J]) chunk by chunk:
                    begin(); step(out [n, ...]) -> the unit of each of the n frames, blank
                    where none (what endpoints are found by); partial() -> text so far;
                    end() -> final text; words(text, frames, ...) -> the segment's timed words

`timed_words` turns a Decoded's b-th hypothesis into timed words, whichever it carries.
A model kind's strategies live in one file (asr/decoding/ctc.py, las.py, transducer.py) and are registered
by (kind, mode) in asr/decoding/decoder.py's STRATEGIES; the apps only ever see `Decoder`.
Texts here are raw (spaces tidied); the Decoder normalises them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from asr.decoding.options import DecodeOptions
from asr.decoding.timestamps import Word, align_words, emitted_words
from asr.tokens.units import BLANK, EOS


@dataclass
class Emitted:
    """A transducer hypothesis' units, the frame each was emitted at, and its probability there."""

    units: list[int] = field(default_factory=list)
    frames: list[int] = field(default_factory=list)
    probs: list[float] = field(default_factory=list)


@dataclass
class Decoded:
    """A batch's hypotheses: texts [B]; log_probs [B, T', V] and lengths [B] of the CTC
    alignment (None when not asked for or when the model has no CTC output); emissions [B]
    (a transducer's)."""

    texts: list[str]
    log_probs: torch.Tensor | None = None
    lengths: torch.Tensor | None = None
    emissions: list[Emitted] | None = None


def timed_words(out: Decoded, b: int, tokenizer, shift: float) -> list[Word]:
    """The words of hypothesis b with their times (seconds, `shift` per frame): from its
    emissions, else aligned on its CTC log-probs, else without times."""
    text = out.texts[b]
    if out.emissions is not None:
        e = out.emissions[b]
        return emitted_words(e.units, e.frames, e.probs, text, tokenizer, shift)
    if out.log_probs is not None:
        return align_words(out.log_probs[b, : int(out.lengths[b])], text, tokenizer, shift)
    return [Word(w, None, None, None) for w in text.split()]


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
    """One live segment at a time (see the module docstring); `begin` starts the next.
    `words` aligns the segment's text on the CTC log-probs it was fed (`frames` [n, V]);
    a transducer's strategy times them by its emissions instead."""

    def words(self, text: str, frames: torch.Tensor, tokenizer, shift: float) -> list[Word]:
        return align_words(frames, text, tokenizer, shift)

    def reset(self) -> None:
        """Before a new stream (a finished stream's strategy handed on): forget that stream."""

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
