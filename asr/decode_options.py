"""`DecodeOptions`: every decoding default, in one place (asr/decoding.py uses them).

A leaf module (no torch), so `asr-cli --help` shows the real defaults without loading a
model library. The options, by the model kind they apply to:

    both    beam, lm, lm_weight, word_score; ctc_beam / las_beam: a search's width by kind
    ctc     beam_threshold (asr/ctc_decoding.py)
    las     ctc_weight, max_len_ratio, min_len, eos_threshold, length_penalty, pre_beam
            (asr/las_decoding.py)

Choosing lm_weight and word_score: tune them on dev, never on test. A small grid is enough,
e.g. lm_weight in {0.5, 1, 1.5, 2, 3} x word_score in {-1, 0, 1, 2, 3}:

    for a in 0.5 1 1.5 2 3; do for b in -1 0 1 2 3; do
      asr-cli eval --checkpoint X.pt --shards S --split dev --lm L --lm-weight $a --word-score $b \\
        --out runs/X/tune/a$a-b$b --no-progress; done; done
    # then pick the lowest "wer" of runs/X/tune/*/summary.json and run test once with it

The defaults (lm_weight 1.0, word_score 1.0) come from that grid on two synthetic corpora
(tests/test_evaluate.py's `make_lm_corpus`, seeds 8 and 9; half-trained CTC model, 3-gram LM
of the train text): WER stayed within ~4 points of the best along the ridge word_score ~
lm_weight - 0.5 (0.5/0, 1/0-1, 1.5/1-2, 2/2-3) and rose off it (a word score too large for
the LM weight inserts short words, too small deletes words); 1.0 / 1.0 sits on the ridge with
deletions and insertions closest to balanced. On the held-out seed 7 it gave WER 0.49
against greedy 0.80. A better acoustic model or a bigger LM moves the optimum: tune on your
dev set.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class DecodeOptions:
    """How to decode, every default in one place. beam None: greedy, unless an LM (or, for
    las, a CTC weight) asks for a search."""

    beam: int | None = None  # hypotheses kept; None: greedy, or the kind's default for a search
    lm: Path | None = None  # word n-gram LM, ARPA file (e.g. `asr-cli lm build`)
    lm_weight: float = 1.0  # weight of the LM's log10 probability (see the module docstring)
    word_score: float = 1.0  # added per word with an LM
    ctc_weight: float | None = None  # las only: joint CTC/attention weight; None = the training weight
    # the width of a search asked for without `beam`, by model kind: flashlight's CTC search
    # keeps many cheap hypotheses per frame, the attention search runs the speller per hypothesis
    ctc_beam: int = 50
    las_beam: int = 10
    beam_threshold: float = 25.0  # ctc beam: drop hypotheses this far below the best
    # las: end of sentence and ranking (asr/las_decoding.py's docstring)
    max_len_ratio: float | None = None  # units per encoder frame at most; None: 25 units per second
    min_len: int = 1  # no <eos> before this many units
    eos_threshold: float = 1.5  # nats: <eos> only within this of the best candidate's step score
    length_penalty: float = 1.0  # hypotheses ranked by score / (units + 1) ** length_penalty
    pre_beam: int | None = None  # units per hypothesis scored by CTC and the LM; None: 1.5 x beam

    def check(self, kind: str) -> None:
        if self.beam is not None and self.beam < 1:
            raise ValueError(f"--beam must be at least 1, got {self.beam}")
        if self.lm is not None and not Path(self.lm).is_file():
            raise FileNotFoundError(f"language model {self.lm} not found (build one with `asr-cli lm build`)")
        if self.ctc_weight is not None:
            if kind != "las":
                raise ValueError("--ctc-weight applies to attention models (las) only; this is a "
                                 f"{kind} model")
            if not 0.0 <= self.ctc_weight <= 1.0:
                raise ValueError(f"--ctc-weight must be in [0, 1], got {self.ctc_weight}")

    def searches(self) -> bool:
        return self.beam is not None or self.lm is not None or self.ctc_weight is not None

    def search_beam(self, kind: str) -> int:
        """The beam of a search on a `kind` model: `beam`, or the kind's default."""
        if self.beam is not None:
            return self.beam
        return self.ctc_beam if kind == "ctc" else self.las_beam
