"""The conv fronts that cut time before an encoder's layers.

    ConvSubsampling   Conv2d stride 2 + ReLU per layer (x4 with two; kernels are options: 3x3 for
                      the small CPU models, DeepSpeech2's 11x41 then 11x21 for `lab`), Linear
                      [B, T, F] --Conv2d s2 + ReLU--> --Conv2d s2 + ReLU--> [B, C, T/4, F/4]
                          --flatten + Linear--> [B, T/4, D]
    DWSepSubsampling  FastConformer's (Rekesh et al. 2023) light x8 front: a 3x3 stride-2 Conv2d,
                      then two depthwise-separable stride-2 convs (3x3 depthwise + 1x1 pointwise)

Both zero the input's padding and their conv outputs past each length after every layer, so
an utterance's frames are those it gets alone.
"""

from __future__ import annotations

import torch
from torch import nn

from asr.nets.encoders.interface import EncoderConfig, conv_out_length, frame_mask


class ConvSubsampling(nn.Module):
    """[B, T, F] -> [B, T', D], T' ~ T / prod(time_strides) (x4 by default: two stride-2 convs)."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.kernels = [tuple(k) for k in cfg.conv_kernels]
        self.strides = list(cfg.time_strides)
        if len(self.strides) != len(self.kernels):
            raise ValueError(f"time_strides {cfg.time_strides} needs one stride per conv layer ({len(self.kernels)})")
        chans = [1] + [cfg.conv_channels] * len(self.kernels)
        self.convs = nn.ModuleList(
            nn.Conv2d(chans[i], chans[i + 1], k, stride=(s, 2), padding=(k[0] // 2, k[1] // 2))
            for i, (k, s) in enumerate(zip(self.kernels, self.strides))
        )
        freq = cfg.n_mels
        for k in self.kernels:
            freq = (freq + 2 * (k[1] // 2) - k[1]) // 2 + 1
        self.proj = nn.Linear(cfg.conv_channels * freq, cfg.proj_dim)
        self.norm = nn.LayerNorm(cfg.proj_dim) if cfg.proj_norm else nn.Identity()
        self.dropout = nn.Dropout(cfg.dropout)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        for k, s in zip(self.kernels, self.strides):
            lengths = conv_out_length(lengths, k[0], s)
        return lengths

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # the input's padding zeroed too: the first conv's kernel reaches past the last real frame,
        # where an utterance alone sees the conv's zero padding
        feats = feats * frame_mask(lengths, feats.shape[1])[:, :, None].to(feats.dtype)
        x = feats.unsqueeze(1)  # [B, 1, T, F]
        for conv, k, s in zip(self.convs, self.kernels, self.strides):
            x = torch.relu(conv(x))
            lengths = conv_out_length(lengths, k[0], s)
            x = x * frame_mask(lengths, x.shape[2])[:, None, :, None].to(x.dtype)
        b, c, t, f = x.shape
        x = self.norm(self.proj(x.permute(0, 2, 1, 3).reshape(b, t, c * f)))
        return self.dropout(x), lengths


class DWSepSubsampling(nn.Module):
    """FastConformer's x8 front: [B, T, F] -> [B, T', D], T' ~ T / 8, frequency / 8 too."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        c = cfg.conv_channels
        self.first = nn.Conv2d(1, c, 3, stride=2, padding=1)
        self.depthwise = nn.ModuleList(nn.Conv2d(c, c, 3, stride=2, padding=1, groups=c) for _ in range(2))
        self.pointwise = nn.ModuleList(nn.Conv2d(c, c, 1) for _ in range(2))
        freq = cfg.n_mels
        for _ in range(3):
            freq = (freq - 1) // 2 + 1
        self.proj = nn.Linear(c * freq, cfg.d_model)
        self.dropout = nn.Dropout(cfg.dropout)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        for _ in range(3):
            lengths = conv_out_length(lengths, 3, 2)
        return lengths

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.relu(self.first(feats.unsqueeze(1)))  # [B, C, T/2, F/2]
        lengths = conv_out_length(lengths, 3, 2)
        x = x * frame_mask(lengths, x.shape[2])[:, None, :, None].to(x.dtype)
        for dw, pw in zip(self.depthwise, self.pointwise):
            x = torch.relu(pw(dw(x)))
            lengths = conv_out_length(lengths, 3, 2)
            x = x * frame_mask(lengths, x.shape[2])[:, None, :, None].to(x.dtype)
        b, c, t, f = x.shape
        return self.dropout(self.proj(x.permute(0, 2, 1, 3).reshape(b, t, c * f))), lengths
