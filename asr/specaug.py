"""SpecAugment (Park et al. 2019) on normalised features, per utterance, inside real lengths.

Defaults follow the paper's LibriSpeech-double (LD) policy: two frequency masks of up to
27 bins and two time masks of up to 40 frames (the LD policy's 100 frames is for 1000-hour
corpora; `time_width` sets it), a time mask never wider than `time_ratio` of the utterance.
Masks are drawn by torchaudio's FrequencyMasking / TimeMasking on each utterance's
`[F, length]` slice, so they never fall on padding only; masked values become 0, the mean
after CMVN. Only the training loop applies it: evaluation never sees masks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torchaudio


@dataclass
class SpecAugmentConfig:
    freq_masks: int = 2
    freq_width: int = 27  # bins
    time_masks: int = 2
    time_width: int = 40  # frames (10 ms)
    time_ratio: float = 0.2  # a time mask covers at most this fraction of the utterance

    @property
    def enabled(self) -> bool:
        return (self.freq_masks > 0 and self.freq_width > 0) or (self.time_masks > 0 and self.time_width > 0)


class SpecAugment(torch.nn.Module):
    def __init__(self, cfg: SpecAugmentConfig = SpecAugmentConfig()):
        super().__init__()
        self.cfg = cfg
        self.freq = torchaudio.transforms.FrequencyMasking(cfg.freq_width)
        self.time = torchaudio.transforms.TimeMasking(cfg.time_width, p=cfg.time_ratio)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """feats [B, T, F], lengths [B] -> masked copy [B, T, F] (padding untouched)."""
        if not self.cfg.enabled:
            return feats
        out = feats.clone()
        for i, n in enumerate(lengths.tolist()):
            x = out[i, :n].transpose(0, 1)  # [F, n]
            for _ in range(self.cfg.freq_masks):
                x = self.freq(x)
            for _ in range(self.cfg.time_masks):
                x = self.time(x)
            out[i, :n] = x.transpose(0, 1)
        return out
