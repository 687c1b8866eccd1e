"""SentencePiece unigram sub-word units (Kudo 2018), with the asr/tokens/units.py id layout.

    asr-cli train --model las --tokens unigram:500 ...

Id layout (the same contract as CharTokenizer):

    0            <blank>  CTC blank / target padding
    1            <eos>    end of sentence (also <sos> for the speller)
    2            <unk>    SentencePiece's unknown piece (never a training target: text the
                          model cannot spell is dropped by `encode`, as CharTokenizer does)
    3 .. V-1     pieces   "▁le", "s", "▁chat", ...; "▁" marks the start of a word

Our id = SentencePiece id + 2. The model is trained on the normalised training text with
the identity normalisation rule (the text is already normalised by the pipeline, and
`decode(encode(text)) == text` must hold) and full character coverage. `unigram:N` asks
for N pieces; on a small corpus SentencePiece may find fewer (`hard_vocab_limit` off), so
`len(tokenizer)` is at most N + 2.

The serialized model proto travels in `state_dict()`, so a checkpoint needs no side file.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

from asr.tokens.units import SPECIALS

WORD_START = "\u2581"  # SentencePiece's "▁": the piece begins a word
UNK_PIECE = "<unk>"
MODEL_FILE = "unigram.model"
VOCAB_FILE = "unigram.vocab"


@dataclass
class UnigramTokenizer:
    """SentencePiece unigram pieces as units (see the module docstring for the ids)."""

    model_proto: bytes = field(repr=False)
    kind: str = field(default="unigram", init=False)

    def __post_init__(self) -> None:
        import sentencepiece as spm

        self._sp = spm.SentencePieceProcessor(model_proto=self.model_proto)
        n = self._sp.get_piece_size()
        pieces = [self._sp.id_to_piece(i) for i in range(n)]
        if self._sp.unk_id() != 0 or self._sp.bos_id() >= 0 or self._sp.eos_id() >= 0 or self._sp.pad_id() >= 0:
            raise ValueError("the SentencePiece model must have <unk> as id 0 and no bos/eos/pad pieces "
                             "(train it with UnigramTokenizer.train)")
        self.units = list(SPECIALS) + pieces
        self._offset = len(SPECIALS)
        self.unk_id = self._offset + self._sp.unk_id()
        self.unknown = 0  # pieces dropped by encode because they were <unk>

    def __len__(self) -> int:
        return len(self.units)

    def encode(self, text: str) -> list[int]:
        """Text -> unit ids (>= 3); characters the model does not know are dropped."""
        ids = [i + self._offset for i in self._sp.encode(text, out_type=int)]
        kept = [i for i in ids if i != self.unk_id]
        self.unknown += len(ids) - len(kept)
        return kept

    def decode(self, ids) -> str:
        """Unit ids -> text; <blank>, <eos> and <unk> are skipped."""
        sp_ids = [int(i) - self._offset for i in ids if int(i) > self.unk_id]
        return self._sp.decode(sp_ids)

    def spell(self, word: str) -> list[str] | None:
        """The pieces `encode` gives `word` (what a CTC model learnt to emit for it), None if
        one is <unk> (a character the model does not know)."""
        ids = self._sp.encode(word, out_type=int)
        if not ids or self._sp.unk_id() in ids:
            return None
        return [self.units[i + self._offset] for i in ids]

    def starts_word(self, unit_id: int) -> bool:
        return self.units[unit_id].startswith(WORD_START)

    def state_dict(self) -> dict:
        return {"kind": "unigram", "model_proto": bytes(self.model_proto)}

    @classmethod
    def from_state(cls, state: dict) -> "UnigramTokenizer":
        if state.get("kind") != "unigram" or "model_proto" not in state:
            raise ValueError("not a unigram tokenizer state (expects kind 'unigram' and 'model_proto')")
        return cls(bytes(state["model_proto"]))

    @classmethod
    def load(cls, path: Path) -> "UnigramTokenizer":
        """From a `unigram.model` file written by `train`."""
        return cls(Path(path).read_bytes())

    @classmethod
    def train(cls, texts, size: int, out_dir: Path | None = None) -> "UnigramTokenizer":
        """Train on `texts` (normalised sentences) for at most `size` pieces.

        Writes `<out_dir>/unigram.model` and `unigram.vocab` (piece and log-probability
        per line) when `out_dir` is given.
        """
        import sentencepiece as spm

        texts = [t for t in texts if t and t.strip()]
        if not texts:
            raise ValueError("no training text for the unigram model (empty train split?)")
        if size < 2:
            raise ValueError(f"unigram:{size}: the model needs at least 2 pieces")
        proto = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts), model_writer=proto, vocab_size=size, model_type="unigram",
            character_coverage=1.0, hard_vocab_limit=False, normalization_rule_name="identity",
            unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1, minloglevel=2, num_threads=1,
        )
        tok = cls(proto.getvalue())
        if out_dir is not None:
            out_dir = Path(out_dir)
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / MODEL_FILE).write_bytes(tok.model_proto)
            scores = [tok._sp.get_score(i) for i in range(tok._sp.get_piece_size())]
            (out_dir / VOCAB_FILE).write_text(
                "".join(f"{p}\t{s:.5f}\n" for p, s in zip(tok.units[tok._offset:], scores)), encoding="utf-8")
        return tok
