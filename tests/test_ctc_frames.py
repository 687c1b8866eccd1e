"""upsample "auto": two CTC frames per encoder frame only where the train split's fast speech needs them."""

import numpy as np
import torch

from asr.nets import ctc_frames
from asr.tokens.tokenizer import CharTokenizer


def test_frames_needed_counts_a_blank_between_repeats():
    assert ctc_frames.frames_needed([]) == 0
    assert ctc_frames.frames_needed([1, 2, 3]) == 3
    assert ctc_frames.frames_needed([1, 1, 2, 2, 2]) == 5 + 3


def test_choose_looks_at_the_fast_tail_only():
    slow = np.full(1000, 0.35)  # read speech with its silences
    assert ctc_frames.choose(slow)[0] == 1
    fast_tail = slow.copy()
    fast_tail[-100:] = 0.9  # a tenth of the clips read fast: past the 95th percentile's limit
    upsample, report = ctc_frames.choose(fast_tail)
    assert upsample == 2 and report["tail_fill"] > ctc_frames.MAX_FILL
    outliers = slow.copy()
    outliers[-10:] = 1.5  # 1 % of odd clips (a long sentence read over a cut clip) do not decide it
    upsample, report = ctc_frames.choose(outliers)
    assert upsample == 1 and report["unalignable_at_1"] == 0.01


class _X4:
    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return (lengths + 3) // 4


def test_resolve_only_touches_an_auto_ctc_config():
    tok = CharTokenizer(list("abcdefghijklmnopqrstuvwxyz '"))
    texts = ["bonjour a tous"] * 20
    auto = {"kind": "ctc", "options": {"upsample": "auto", "rnn": "gru"}}
    # 14 characters in 100 frames (25 encoder frames): a fill of 0.56, slow enough for one frame
    conf, report = ctc_frames.resolve(auto, texts, [100] * 20, tok, _X4())
    assert conf["options"] == {"upsample": 1, "rnn": "gru"} and report["utterances"] == 20
    conf, report = ctc_frames.resolve(auto, texts, [60] * 20, tok, _X4())  # 15 encoder frames: 0.93
    assert conf["options"]["upsample"] == 2 and "upsample 2" in ctc_frames.describe(report)
    assert auto["options"]["upsample"] == "auto"  # not changed in place
    explicit = {"kind": "ctc", "options": {"upsample": 1}}
    assert ctc_frames.resolve(explicit, texts, [60] * 20, tok, _X4()) == (explicit, None)
    las = {"kind": "las", "options": {}}
    assert ctc_frames.resolve(las, texts, [60] * 20, tok, _X4()) == (las, None)
