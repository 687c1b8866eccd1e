"""SpecAugment (Park et al. 2019) on normalised features, per utterance, inside real lengths.

Defaults follow the paper's LibriSpeech-double (LD) policy: two frequency masks of up to
27 bins and two time masks of up to 40 frames (the LD policy's 100 frames is for 1000-hour
corpora; `time_width` sets it), a time mask never wider than `time_ratio` of the utterance.
Masks are drawn as torchaudio's FrequencyMasking / TimeMasking draw them on one utterance
(width = U * W, start = U * (size - width), a time mask's W capped at `time_ratio` of the
utterance's own length), but for the whole batch at once on the device: a handful of tensor
operations and no host synchronisation, where the per-utterance loop this replaced read the
lengths back to the host (`lengths.tolist()`) and launched some 15 small kernels per utterance
every step, which a GPU waits on (bench/bench_gpu.py). Masks cover real frames only; masked
values become 0, the mean after CMVN. Only the training loop applies it: evaluation never
sees masks. `mask_batch` is the functional twin of the module.

`freq_warp` (off by default) adds a vocal-tract-length-style perturbation (VTLP, Jaitly and
Hinton 2013) on the mel axis: each utterance's spectrum is stretched by a factor drawn in
[1 - w, 1 + w] (bin f takes the value of bin f / factor, linearly interpolated), which moves
formants as a longer or shorter vocal tract would: a cheap way to show the model voices it
has not heard. The training loop can apply it from the first step and the masks later
(`TrainConfig.specaug_start`).
"""

from __future__ import annotations

import torch

from asr.data.config import SpecAugmentConfig  # noqa: F401  (its defaults: a module without torch)


class SpecAugment(torch.nn.Module):
    def __init__(self, cfg: SpecAugmentConfig = SpecAugmentConfig()):
        super().__init__()
        self.cfg = cfg

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor, masks: bool = True) -> torch.Tensor:
        """feats [B, T, F], lengths [B] -> augmented copy [B, T, F] (padding untouched); with
        masks=False only the frequency warp (if any) is applied."""
        if self.cfg.freq_warp > 0:
            feats = warp_frequency(feats, self.cfg.freq_warp)
        if not (masks and self.cfg.enabled):
            return feats
        return mask_batch(feats, lengths, self.cfg)


def _spans(count: int, width: float | torch.Tensor, size: torch.Tensor, b: int, device) -> tuple[torch.Tensor, ...]:
    """`count` random spans per row -> (start, end) [B, count]: width floor(U * width), start
    floor(U * (size - U * width)), as torchaudio's `mask_along_axis` draws one."""
    value = torch.rand(b, count, device=device) * width
    start = (torch.rand(b, count, device=device) * (size - value)).long()
    return start, start + value.long()


def _covered(start: torch.Tensor, end: torch.Tensor, n: int) -> torch.Tensor:
    """spans (start, end) [B, K] -> [B, n] True where any span covers the position."""
    pos = torch.arange(n, device=start.device)[None, :, None]  # [1, n, 1]
    return ((pos >= start[:, None, :]) & (pos < end[:, None, :])).any(-1)


def mask_batch(feats: torch.Tensor, lengths: torch.Tensor, cfg: SpecAugmentConfig) -> torch.Tensor:
    """feats [B, T, F], lengths [B] (on feats' device) -> a copy with `cfg`'s frequency and time
    masks set to 0 inside each utterance's real frames [B, T, F]; padding untouched."""
    b, t, n_bins = feats.shape
    device = feats.device
    lengths = lengths.to(device)
    size = lengths.to(torch.float32)[:, None]  # [B, 1]
    masked = torch.zeros(b, t, n_bins, dtype=torch.bool, device=device)
    if cfg.freq_masks > 0 and cfg.freq_width > 0:
        start, end = _spans(cfg.freq_masks, cfg.freq_width, torch.full_like(size, n_bins), b, device)
        masked |= _covered(start, end, n_bins)[:, None, :]
    if cfg.time_masks > 0 and cfg.time_width > 0:
        width = (size * cfg.time_ratio).floor().clamp(max=cfg.time_width) if cfg.time_ratio < 1 else cfg.time_width
        start, end = _spans(cfg.time_masks, width, size, b, device)
        masked |= _covered(start, end, t)[:, :, None]
    real = torch.arange(t, device=device)[None, :] < lengths[:, None]  # [B, T]
    return feats.masked_fill(masked & real[:, :, None], 0.0)


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
