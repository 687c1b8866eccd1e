"""Conformer encoder (Gulati et al. 2020), EncoderConfig.encoder = "conformer".

    feats [B, T, F] --front--> [B, T/S, D] --Conformer block x N--> [B, T/S, D]

Fronts (EncoderConfig.subsampling S):
    4   asr/encoders/subsampling.py's ConvSubsampling: two 3x3 stride-2 Conv2d + ReLU, Linear
    8   its DWSepSubsampling, FastConformer's light front (depthwise-separable convs)

Block (macaron):  x + FFN/2 -> x + MHSA -> x + Conv -> x + FFN/2 -> LayerNorm
    (with layer_scale > 0, each of the four module outputs times a learnt per-channel gain)
    FFN   LayerNorm, Linear(D, ff_mult D), SiLU, dropout, Linear, dropout
    MHSA  LayerNorm, multi-head self-attention with rotary positions (RoPE: relative, no
          table, any length), key-padding mask, dropout
    Conv  LayerNorm, pointwise (D -> 2D) + GLU, padded frames zeroed, depthwise Conv1d
          (conv_kernel), LayerNorm, SiLU, pointwise, dropout

Padding never changes the outputs on real frames: the input's padded frames are zeroed, the
front zeroes its conv outputs past each length, attention never attends to padded keys,
padded frames are zeroed before each depthwise conv, and the conv module's norm is a
LayerNorm over channels (per frame) instead of a BatchNorm, which would mix padded frames
into its statistics. Rotary positions are relative, so extra padding at the end changes
nothing either (tests/test_conformer.py checks it in eval mode).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from asr.encoders.interface import EncoderConfig, EncoderInterface, frame_mask
from asr.encoders.subsampling import ConvSubsampling, DWSepSubsampling


class FeedForward(nn.Module):
    def __init__(self, d: int, mult: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, mult * d), nn.SiLU(), nn.Dropout(dropout),
                                 nn.Linear(mult * d, d), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def rotary_tables(t: int, dim: int, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin [t, dim] of RoPE (Su et al. 2021) for positions 0..t-1, head size `dim` (even)."""
    inv = 1.0 / (10000 ** (torch.arange(0, dim, 2, device=device, dtype=torch.float32) / dim))
    angles = torch.arange(t, device=device, dtype=torch.float32)[:, None] * inv[None, :]  # [t, dim/2]
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, H, T, dim] rotated by position (the rotate-half form)."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


class RotarySelfAttention(nn.Module):
    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        if d % heads or (d // heads) % 2:
            raise ValueError(f"d_model ({d}) must split into {heads} heads of an even size")
        self.heads, self.head_dim = heads, d // heads
        self.norm = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.dropout = nn.Dropout(dropout)
        self.att_dropout = dropout

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """x [B, T, D], key_mask [B, T] (True = real frame) -> [B, T, D]."""
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask[:, None, None, :],
                                           dropout_p=self.att_dropout if self.training else 0.0)
        return self.dropout(self.out(y.transpose(1, 2).reshape(b, t, d)))


class ConvModule(nn.Module):
    def __init__(self, d: int, kernel: int, dropout: float):
        super().__init__()
        if kernel % 2 == 0:
            raise ValueError(f"conv_kernel must be odd, not {kernel}")
        self.norm = nn.LayerNorm(d)
        self.pointwise1 = nn.Linear(d, 2 * d)
        self.depthwise = nn.Conv1d(d, d, kernel, padding=kernel // 2, groups=d)
        self.conv_norm = nn.LayerNorm(d)  # per frame: never mixes padded frames in (BatchNorm would)
        self.pointwise2 = nn.Linear(d, d)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        y = F.glu(self.pointwise1(self.norm(x)), dim=-1)  # [B, T, D]
        y = y * frame_mask[:, :, None].to(y.dtype)  # padded frames zero before the depthwise conv
        y = self.depthwise(y.transpose(1, 2)).transpose(1, 2)
        return self.dropout(self.pointwise2(F.silu(self.conv_norm(y))))


class ConformerBlock(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        d = cfg.d_model
        self.ff1 = FeedForward(d, cfg.ff_mult, cfg.dropout)
        self.att = RotarySelfAttention(d, cfg.heads, cfg.dropout)
        self.conv = ConvModule(d, cfg.conv_kernel, cfg.dropout)
        self.ff2 = FeedForward(d, cfg.ff_mult, cfg.dropout)
        self.norm = nn.LayerNorm(d)
        # LayerScale (Touvron et al. 2021, CaiT): each module's output times a learnt per-channel
        # gain that starts at cfg.layer_scale, so at first every block is close to the identity and
        # the network trains like a shallow one (see EncoderConfig.layer_scale).
        self.gamma = nn.Parameter(torch.full((4, d), cfg.layer_scale)) if cfg.layer_scale else None

    def _gain(self, i: int, y: torch.Tensor) -> torch.Tensor:
        return y if self.gamma is None else self.gamma[i] * y

    def forward(self, x, frame_mask, rope):
        x = x + 0.5 * self._gain(0, self.ff1(x))
        x = x + self._gain(1, self.att(x, frame_mask, rope))
        x = x + self._gain(2, self.conv(x, frame_mask))
        x = x + 0.5 * self._gain(3, self.ff2(x))
        return self.norm(x)


class ConformerEncoder(EncoderInterface):
    """Conv front (x4 or x8) then Conformer blocks: [B, T, F] -> [B, T/S, d_model]."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        if cfg.subsampling not in (4, 8):
            raise ValueError(f"subsampling must be 4 or 8, not {cfg.subsampling}")
        self.cfg = cfg
        if cfg.subsampling == 4:
            self.front = ConvSubsampling(dataclasses.replace(cfg, time_strides=(2, 2), conv_kernels=((3, 3), (3, 3)),
                                                             proj_dim=cfg.d_model, proj_norm=False))
        else:
            self.front = DWSepSubsampling(cfg)
        self.blocks = nn.ModuleList(ConformerBlock(cfg) for _ in range(cfg.blocks))

    @property
    def output_dim(self) -> int:
        return self.cfg.d_model

    @property
    def time_reduction(self) -> int:
        return self.cfg.subsampling

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return self.front.output_lengths(lengths)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """feats [B, T, F], lengths [B] -> encodings [B, T', d_model], lengths [B]."""
        feats = feats * frame_mask(lengths, feats.shape[1])[:, :, None].to(feats.dtype)
        x, lengths = self.front(feats, lengths)
        mask = frame_mask(lengths, x.shape[1])
        rope = rotary_tables(x.shape[1], self.cfg.d_model // self.cfg.heads, x.device, x.dtype)
        for block in self.blocks:
            x = block(x, mask, rope)
        return x, lengths
