"""`SpecAugmentConfig`: the masks' and the warp's defaults (asr/data/specaug.py applies them).

Apart from asr/data/specaug.py, without torch, so that `asr-cli train --help` reads these
defaults (through asr/training/config.py) without loading a model library.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.options import AT_LEAST_0, FRACTION, FRACTION_BELOW_1, option


@dataclass
class SpecAugmentConfig:
    """SpecAugment's masks and frequency warp (asr/data/specaug.py applies them)."""

    freq_masks: int = option(2, "SpecAugment frequency masks per utterance (0: off).", bounds=AT_LEAST_0)
    freq_width: int = option(27, "SpecAugment: widest frequency mask, in bins.", bounds=AT_LEAST_0)
    time_masks: int = option(2, "SpecAugment time masks per utterance (0: off).", bounds=AT_LEAST_0)
    time_width: int = option(40, "SpecAugment: widest time mask, in frames (10 ms).", bounds=AT_LEAST_0)
    time_ratio: float = option(0.2, "SpecAugment: a time mask covers at most this fraction of the utterance.",
                               bounds=FRACTION)
    freq_warp: float = option(0.0, "VTLP-style random stretch of the mel axis by up to this fraction, e.g. 0.1 "
                                   "(0: off).", bounds=FRACTION_BELOW_1)

    @property
    def enabled(self) -> bool:
        return (self.freq_masks > 0 and self.freq_width > 0) or (self.time_masks > 0 and self.time_width > 0)
