"""Text <-> token ids, shared by every model, the loader and the decoders.

The id layout (<blank>, <eos>, then the units) is asr/tokens/units.py's. Two kinds of units:

    char       CharTokenizer: the characters of the dataset's vocabulary (the space included)
    unigram    asr/tokens/subword.py's UnigramTokenizer: SentencePiece pieces (`--tokens unigram:N`)

`Tokenizer` is either type; `tokenizer_from_state` rebuilds either from the `state_dict()` a checkpoint holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from asr.tokens.subword import UnigramTokenizer
from asr.tokens.units import SPECIALS


@dataclass
class CharTokenizer:
    """Characters of `vocab` (the list in dataset.json) as units.

    Characters outside the vocabulary (a dev/test sentence may hold one unseen in train)
    are dropped by `encode` and counted in `self.unknown`; metrics work on strings, so
    such characters still count as errors there.
    """

    vocab: list[str]
    kind: str = field(default="char", init=False)

    def __post_init__(self) -> None:
        if len(set(self.vocab)) != len(self.vocab):
            raise ValueError("vocabulary has duplicate characters")
        self.units = list(SPECIALS) + list(self.vocab)
        self._ids = {c: i + len(SPECIALS) for i, c in enumerate(self.vocab)}

    def __len__(self) -> int:
        return len(self.units)

    def encode(self, text: str) -> list[int]:
        return [self._ids[c] for c in text if c in self._ids]

    def unknown_chars(self, text: str) -> set[str]:
        return {c for c in text if c not in self._ids}

    def decode(self, ids) -> str:
        n = len(SPECIALS)
        return "".join(self.vocab[i - n] for i in ids if i >= n)

    def state_dict(self) -> dict:
        return {"kind": "char", "vocab": list(self.vocab)}


Tokenizer = CharTokenizer | UnigramTokenizer  # what every model, loader and decoder takes


def tokenizer_from_state(state: dict) -> Tokenizer:
    """Rebuild a tokenizer saved by `state_dict()` (checkpoints hold this)."""
    if state["kind"] == "char":
        return CharTokenizer(state["vocab"])
    if state["kind"] == "unigram":
        return UnigramTokenizer.from_state(state)
    raise ValueError(f"unknown tokenizer kind {state['kind']!r}")
