"""SpecAugment (Park et al. 2019) on normalised features, per utterance, inside real lengths.

Defaults follow the paper's LibriSpeech-double (LD) policy: two frequency masks of up to
27 bins and two time masks of up to 40 frames (the LD policy's 100 frames is for 1000-hour
corpora; `time_width` sets it), a time mask never wider than `time_ratio` of the utterance.
Masks are drawn by torchaudio's FrequencyMasking / TimeMasking on each utterance's
`[F, length]` slice, so they never fall on padding only; masked values become 0, the mean
after CMVN. Only the training loop applies it: evaluation never sees masks.

`freq_warp` (off by default) adds a vocal-tract-length-style perturbation (VTLP, Jaitly and
Hinton 2013) on the mel axis: each utterance's spectrum is stretched by a factor drawn in
[1 - w, 1 + w] (bin f takes the value of bin f / factor, linearly interpolated), which moves
formants as a longer or shorter vocal tract would: a cheap way to show the model voices it
has not heard. The training loop can apply it from the first step and the masks later
(`TrainConfig.specaug_start`).
"""

from __future__ import annotations

import torch
import torchaudio

from asr.data.config import SpecAugmentConfig  # noqa: F401  (its defaults: a module without torch)


class SpecAugment(torch.nn.Module):
    def __init__(self, cfg: SpecAugmentConfig = SpecAugmentConfig()):
        super().__init__()
        self.cfg = cfg
        self.freq = torchaudio.transforms.FrequencyMasking(cfg.freq_width)
        self.time = torchaudio.transforms.TimeMasking(cfg.time_width, p=cfg.time_ratio)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor, masks: bool = True) -> torch.Tensor:
        """feats [B, T, F], lengths [B] -> augmented copy [B, T, F] (padding untouched); with
        masks=False only the frequency warp (if any) is applied."""
        if self.cfg.freq_warp > 0:
            feats = warp_frequency(feats, self.cfg.freq_warp)
        if not (masks and self.cfg.enabled):
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


def warp_frequency(feats: torch.Tensor, width: float, factors: torch.Tensor | None = None) -> torch.Tensor:
    """feats [B, T, F] -> each utterance's mel axis stretched by its factor (uniform in
    [1 - width, 1 + width] unless given): out[..., f] = feats[..., f / factor], interpolated
    linearly, the top bin repeated past the edge. Zero padding stays zero."""
    b, _, n = feats.shape
    if factors is None:
        factors = 1 + (2 * torch.rand(b, device=feats.device) - 1) * width
    src = (torch.arange(n, device=feats.device, dtype=torch.float32)[None, :] / factors[:, None]).clamp(0, n - 1)
    lo = src.floor().long()
    hi = (lo + 1).clamp(max=n - 1)
    frac = (src - lo).to(feats.dtype)[:, None, :]  # [B, 1, F]
    lo = lo[:, None, :].expand(-1, feats.shape[1], -1)
    hi = hi[:, None, :].expand(-1, feats.shape[1], -1)
    return feats.gather(2, lo) * (1 - frac) + feats.gather(2, hi) * frac
