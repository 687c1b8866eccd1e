"""How many CTC output frames per encoder frame (`upsample`), chosen from the train split.

CTC needs at least one output frame per unit, plus one blank between two equal units in a row
("ll" in "elle"): an utterance of U units with R such repeats needs U + R frames. Behind the x4
front the encoder gives 25 frames a second; fast speech can leave CTC too few of them, and the
head then predicts two frames per encoder frame (upsample 2: 50 a second). But where speech is
slow enough, upsample 2 only doubles the blank frames CTC must learn to emit, and learning
starts an order of magnitude slower at equal steps (on real human voices, short English
utterances at 8 kHz: test WER 49.3 % at 500 steps with upsample 2, 2.96 % with 1).

So `upsample: "auto"` (the small presets) looks at the train split's utterances, whose units
and frames the shards already know, and takes 2 only when the fast tail needs it: when the
`TAIL` quantile of (U + R) / encoder frames exceeds `MAX_FILL` at upsample 1. An explicit
`--upsample` always wins. The choice is said in the log and recorded in the checkpoint (the
model config holds the number).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

TAIL = 0.95  # the quantile of the fill ratio looked at: the fast tail, not the odd outlier
MAX_FILL = 0.7  # more than this share of the encoder frames needed by units: upsample 2
# The demo's espeak corpus (its speed copies included) fills 0.59 at the median and 0.79 at the
# 95th percentile (dev 0.76, test 0.78; 0.03 % of train clips cannot be aligned at all), and
# there upsample 2 took the test CER from 17.3 % to 13.9 % (docs/RESULTS.md). Read speech at 15
# characters a second fills 0.6 of 25 frames a second before the clip's silences, which lower
# it: the limit sits between the two, erring towards one frame, the faster learner.
UNRESOLVED = 2  # what "auto" builds where no train split was looked at (benchmarks, parameter counts)


def frames_needed(units: list[int]) -> int:
    """CTC's minimum output frames for a unit sequence: one per unit, one more per repeat."""
    return len(units) + sum(1 for a, b in zip(units, units[1:]) if a == b)


def fill_ratios(needed: Iterable[int], encoder_frames: Iterable[int]) -> np.ndarray:
    """needed / encoder frames per utterance (upsample 1)."""
    n = np.asarray(list(needed), dtype=np.float64)
    f = np.maximum(np.asarray(list(encoder_frames), dtype=np.float64), 1.0)
    return n / f


def choose(ratios: np.ndarray) -> tuple[int, dict]:
    """-> (upsample, a report: the tail's fill ratio, the share that upsample 1 cannot align)."""
    if len(ratios) == 0:
        return 1, {"upsample": 1, "why": "no train utterances"}
    tail = float(np.quantile(ratios, TAIL))
    upsample = 2 if tail > MAX_FILL else 1
    return upsample, {"upsample": upsample, "tail_quantile": TAIL, "tail_fill": round(tail, 3),
                      "max_fill": MAX_FILL, "unalignable_at_1": round(float(np.mean(ratios > 1.0)), 4),
                      "utterances": int(len(ratios))}


def resolve(mconf: dict, texts: list[str], frames: list[int], tokenizer, encoder) -> tuple[dict, dict | None]:
    """A CTC model config with `upsample: "auto"` made concrete from the train split's
    `texts` and feature `frames` (the `encoder` gives the encoder frames: its output_lengths)
    -> (config, report); any other config is returned as it is, with no report."""
    if mconf["kind"] != "ctc" or mconf["options"].get("upsample") != "auto":
        return mconf, None
    enc = encoder.output_lengths(torch.as_tensor(frames, dtype=torch.long)).tolist() if frames else []
    ratios = fill_ratios((frames_needed(tokenizer.encode(t)) for t in texts), enc)
    upsample, report = choose(ratios)
    return {**mconf, "options": {**mconf["options"], "upsample": upsample}}, report


def describe(report: dict) -> str:
    if "tail_fill" not in report:
        return f"upsample {report['upsample']} ({report['why']})"
    return (f"upsample {report['upsample']}: the fast tail of the train split (quantile {report['tail_quantile']:g}) "
            f"needs {100 * report['tail_fill']:.0f} % of the encoder frames for its units "
            f"({'more' if report['upsample'] == 2 else 'no more'} than {100 * report['max_fill']:.0f} %); "
            f"{100 * report['unalignable_at_1']:.2f} % of utterances could not be aligned at upsample 1")
