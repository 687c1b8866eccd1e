"""`DecodeOptions`: every decoding default, in one place (asr/decoding/decoder.py uses them).

A leaf module (no torch), so `asr-cli --help` shows the real defaults without loading a
model library. The options, by the model kind they apply to:

    all     beam, lm, lm_weight, word_score; ctc_beam / las_beam / rnnt_beam: a search's width by kind
    ctc     beam_threshold (asr/decoding/ctc.py)
    las     ctc_weight, max_len_ratio, min_len, eos_threshold, length_penalty, pre_beam
            (asr/decoding/las.py)
    rnnt    max_symbols, pre_beam (asr/decoding/transducer.py)

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

from pipeline.options import Bound, option

CTC_BEAM, LAS_BEAM, RNNT_BEAM = 50, 10, 4  # a search's width by model kind when no --beam is given
DECODING_SCORE = Bound(-100, 100, why="a log10-probability weight; tune on dev")


@dataclass
class DecodeOptions:
    """How to decode, every default in one place. beam None: greedy, unless an LM (or, for
    las, a CTC weight) asks for a search."""

    # hypotheses kept; None: greedy, or the kind's default for a search
    beam: int | None = option(None, "Beam search with this many hypotheses (default: greedy; with --lm or "
                                    f"--ctc-weight: {CTC_BEAM} for ctc, {LAS_BEAM} for las, {RNNT_BEAM} for rnnt).",
                              bounds=Bound(1, 1000, why="every hypothesis costs memory: 100000 needs tens of GB"))
    lm: Path | None = option(None, "Word n-gram LM (ARPA, from `asr-cli lm build`) for beam search.")
    lm_weight: float = option(1.0, "Weight of the LM's log10 probability; tune on dev.", bounds=DECODING_SCORE)
    word_score: float = option(1.0, "Score added per word with --lm; tune on dev.", bounds=DECODING_SCORE)
    ctc_weight: float | None = option(None, "las only: CTC weight of joint CTC/attention beam search (default: the "
                                            "training weight).", bounds=Bound(0, 1))
    # the width of a search asked for without `beam`, by model kind: flashlight's CTC search
    # keeps many cheap hypotheses per frame, the attention search runs the speller per hypothesis
    ctc_beam: int = CTC_BEAM
    las_beam: int = LAS_BEAM
    rnnt_beam: int = RNNT_BEAM  # icefall's modified beam search keeps 4
    # rnnt: units one encoder frame may emit at most (greedy and beam; 1: icefall's modified beam search)
    max_symbols: int = 3
    beam_threshold: float = 25.0  # ctc beam: drop hypotheses this far below the best
    # las: end of sentence and ranking (asr/decoding/las.py's docstring)
    max_len_ratio: float | None = None  # units per encoder frame at most; None: 25 units per second
    min_len: int = 1  # no <eos> before this many units
    eos_threshold: float = 1.5  # nats: <eos> only within this of the best candidate's step score
    length_penalty: float = 1.0  # hypotheses ranked by score / (units + 1) ** length_penalty
    pre_beam: int | None = None  # units per hypothesis scored by CTC (las) and the LM; None: 1.5 x beam

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
        return {"ctc": self.ctc_beam, "las": self.las_beam}.get(kind, self.rnnt_beam)


@dataclass
class LiveOptions:
    """How a live stream is decoded (asr/inference/streaming.py): the encoder's chunk and the
    silence that closes a segment."""

    chunk_ms: float | None = option(None, "Live decoding (a model trained with --streaming): the encoder's chunk "
                                          "in ms, latency against accuracy, a multiple of 40 (default 640, or a "
                                          "streaming .onnx's own).",
                                    bounds=Bound(40, 60000, why="one encoder frame (40 ms) at least"))
    endpoint_ms: float = option(800.0, "Live decoding: a segment ends after this many ms without speech (0: never).",
                                bounds=Bound(0, 60000, why="0: never"))
