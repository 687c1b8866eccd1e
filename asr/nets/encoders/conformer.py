"""Conformer encoder (Gulati et al. 2020), EncoderConfig.encoder = "conformer".

    feats [B, T, F] --front--> [B, T/S, D] --Conformer block x N--> [B, T/S, D]

Fronts (EncoderConfig.subsampling S):
    4   asr/nets/encoders/subsampling.py's ConvSubsampling: two 3x3 stride-2 Conv2d + ReLU, Linear
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

Streaming (EncoderConfig.streaming, the U2 idea of WeNet: one model, two modes):
    conv       causal: kernel - 1 frames of left padding, none on the right
    attention  each batch of training draws a chunk size C: full context with probability
               FULL_CONTEXT_P, else uniform in 1..MAX_TRAIN_CHUNK encoder frames; frame i then
               sees the frames of its own chunk (i // C) and of `left_chunks` chunks before it
               (-1: all). Padding and chunks combine in one mask (`chunk_attention_mask`).
    decoding   `decode_chunk` (None: full context, the whole-file default) masks a whole
               sequence so; `forward_chunk` computes the same outputs chunk by chunk with caches
               (keys / values of the last `left` frames per block, the conv's last kernel - 1
               inputs), never running the past again: tests/test_streaming.py proves they agree.
The x4 front is not made causal: encoder frame j reads feature frames 4j - 3 .. 4j + 3, so a
chunk of encoder frames [j0, j1) needs feature frames 4 j0 - 3 .. 4 j1 - 1 — the 3 frames
before its own 4 C (carried over) and none after: the front's look-ahead stays inside the
chunk (30 ms, plus the STFT's half window, 12.5 ms), which a chunk's latency counts.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from asr.nets.encoders.interface import EncoderConfig, EncoderInterface, frame_mask
from asr.nets.encoders.subsampling import ConvSubsampling, DWSepSubsampling

# Streaming training's chunk draw (WeNet U2's dynamic chunk): full context half the time keeps the
# model good on whole files, chunks of 1-25 encoder frames (40 ms - 1 s) cover every decoding chunk.
FULL_CONTEXT_P = 0.5
MAX_TRAIN_CHUNK = 25
FRONT_CONTEXT = 3  # feature frames before a chunk's own that the x4 front reads (see the docstring)


class FeedForward(nn.Module):
    def __init__(self, d: int, mult: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, mult * d), nn.SiLU(), nn.Dropout(dropout),
                                 nn.Linear(mult * d, d), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def rotary_tables(t: int, dim: int, device, dtype, start=0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin [t, dim] of RoPE (Su et al. 2021) for positions start..start+t-1 (`start` an int or
    a 0-d tensor: a stream's chunk), head size `dim` (even)."""
    inv = 1.0 / (10000 ** (torch.arange(0, dim, 2, device=device, dtype=torch.float32) / dim))
    positions = torch.arange(t, device=device, dtype=torch.float32) + start
    angles = positions[:, None] * inv[None, :]  # [t, dim/2]
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

    def _qkv(self, x: torch.Tensor, rope) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, t, _ = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return apply_rotary(q, *rope), apply_rotary(k, *rope), v  # [B, H, T, dh] each

    def forward(self, x: torch.Tensor, mask: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """x [B, T, D], mask [B, 1, 1 or T, T] (True = may attend) -> [B, T, D]."""
        b, t, d = x.shape
        q, k, v = self._qkv(x, rope)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.att_dropout if self.training else 0.0)
        return self.dropout(self.out(y.transpose(1, 2).reshape(b, t, d)))

    def forward_chunk(self, x: torch.Tensor, key_mask: torch.Tensor, rope, cache: torch.Tensor):
        """x [B, C, D] (a chunk), key_mask [B, L + C] over the cached frames then the chunk's, rope
        at the chunk's positions, cache [2, B, H, L, dh] (rotated keys, values of the L frames
        before) -> ([B, C, D], the next cache [2, B, H, L, dh])."""
        b, c, d = x.shape
        q, k, v = self._qkv(x, rope)
        k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask[:, None, None, :])
        left = cache.shape[3]
        return self.out(y.transpose(1, 2).reshape(b, c, d)), torch.stack([k[:, :, k.shape[2] - left:],
                                                                          v[:, :, v.shape[2] - left:]])


class ConvModule(nn.Module):
    def __init__(self, d: int, kernel: int, dropout: float, causal: bool = False):
        super().__init__()
        if kernel % 2 == 0:
            raise ValueError(f"conv_kernel must be odd, not {kernel}")
        self.norm = nn.LayerNorm(d)
        self.pointwise1 = nn.Linear(d, 2 * d)
        self.causal, self.kernel = causal, kernel  # causal: all kernel - 1 padding on the left (forward pads)
        self.depthwise = nn.Conv1d(d, d, kernel, padding=0 if causal else kernel // 2, groups=d)
        self.conv_norm = nn.LayerNorm(d)  # per frame: never mixes padded frames in (BatchNorm would)
        self.pointwise2 = nn.Linear(d, d)
        self.dropout = nn.Dropout(dropout)

    def _gated(self, x: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        y = F.glu(self.pointwise1(self.norm(x)), dim=-1)  # [B, T, D]
        return (y * frame_mask[:, :, None].to(y.dtype)).transpose(1, 2)  # padded frames zero before the conv

    def _after(self, y: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.pointwise2(F.silu(self.conv_norm(y.transpose(1, 2)))))

    def forward(self, x: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        y = self._gated(x, frame_mask)  # [B, D, T]
        if self.causal:
            y = F.pad(y, (self.kernel - 1, 0))
        return self._after(self.depthwise(y))

    def forward_chunk(self, x: torch.Tensor, frame_mask: torch.Tensor, cache: torch.Tensor):
        """Causal only: x [B, C, D], frame_mask [B, C], cache [B, D, kernel - 1] (the conv's inputs
        of the frames before) -> ([B, C, D], the next cache)."""
        y = torch.cat([cache, self._gated(x, frame_mask)], dim=2)  # [B, D, kernel - 1 + C]
        return self._after(self.depthwise(y)), y[:, :, y.shape[2] - (self.kernel - 1):]


class ConformerBlock(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        d = cfg.d_model
        self.ff1 = FeedForward(d, cfg.ff_mult, cfg.dropout)
        self.att = RotarySelfAttention(d, cfg.heads, cfg.dropout)
        self.conv = ConvModule(d, cfg.conv_kernel, cfg.dropout, causal=cfg.streaming)
        self.ff2 = FeedForward(d, cfg.ff_mult, cfg.dropout)
        self.norm = nn.LayerNorm(d)
        # LayerScale (Touvron et al. 2021, CaiT): each module's output times a learnt per-channel
        # gain that starts at cfg.layer_scale, so at first every block is close to the identity and
        # the network trains like a shallow one (see EncoderConfig.layer_scale).
        self.gamma = nn.Parameter(torch.full((4, d), cfg.layer_scale)) if cfg.layer_scale else None

    def _gain(self, i: int, y: torch.Tensor) -> torch.Tensor:
        return y if self.gamma is None else self.gamma[i] * y

    def forward(self, x, att_mask, frame_mask, rope):
        x = x + 0.5 * self._gain(0, self.ff1(x))
        x = x + self._gain(1, self.att(x, att_mask, rope))
        x = x + self._gain(2, self.conv(x, frame_mask))
        x = x + 0.5 * self._gain(3, self.ff2(x))
        return self.norm(x)

    def forward_chunk(self, x, key_mask, frame_mask, rope, att_cache, conv_cache):
        """One chunk [B, C, D] with this block's caches -> (output, next att cache, next conv cache)."""
        x = x + 0.5 * self._gain(0, self.ff1(x))
        y, att_cache = self.att.forward_chunk(x, key_mask, rope, att_cache)
        x = x + self._gain(1, y)
        y, conv_cache = self.conv.forward_chunk(x, frame_mask, conv_cache)
        x = x + self._gain(2, y)
        x = x + 0.5 * self._gain(3, self.ff2(x))
        return self.norm(x), att_cache, conv_cache


def chunk_attention_mask(lengths: torch.Tensor, t: int, chunk: int | None = None, left_chunks: int = -1) -> torch.Tensor:
    """[B] lengths -> attention mask [B, 1, 1 or t, t] (True = may attend): no padded key; with
    `chunk` C, frame i sees only the frames of its chunk i // C and of `left_chunks` chunks before
    it (-1: every chunk before). chunk None: full context ([B, 1, 1, t])."""
    keys = frame_mask(lengths, t)[:, None, None, :]
    if chunk is None:
        return keys
    c = torch.arange(t, device=lengths.device) // chunk
    allowed = c[None, :] <= c[:, None]
    if left_chunks >= 0:
        allowed &= c[None, :] >= c[:, None] - left_chunks
    return keys & allowed[None, None]


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
        if cfg.streaming and cfg.subsampling != 4:
            raise ValueError("a streaming Conformer takes the x4 front (subsampling 4), not x8")
        self.blocks = nn.ModuleList(ConformerBlock(cfg) for _ in range(cfg.blocks))
        self.decode_chunk: int | None = None  # streaming models in eval: the attention chunk (None: full)

    @property
    def output_dim(self) -> int:
        return self.cfg.d_model

    @property
    def time_reduction(self) -> int:
        return self.cfg.subsampling

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return self.front.output_lengths(lengths)

    def chunk(self) -> int | None:
        """The attention chunk of this forward: training draws one per batch (streaming models);
        in eval `decode_chunk` (None: full context)."""
        if not self.cfg.streaming:
            return None
        if not self.training:
            return self.decode_chunk
        if torch.rand(()) < FULL_CONTEXT_P:
            return None
        return int(torch.randint(1, MAX_TRAIN_CHUNK + 1, ()))

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """feats [B, T, F], lengths [B] -> encodings [B, T', d_model], lengths [B]."""
        feats = feats * frame_mask(lengths, feats.shape[1])[:, :, None].to(feats.dtype)
        x, lengths = self.front(feats, lengths)
        mask = frame_mask(lengths, x.shape[1])
        att_mask = chunk_attention_mask(lengths, x.shape[1], self.chunk(), self.cfg.left_chunks)
        rope = rotary_tables(x.shape[1], self.cfg.d_model // self.cfg.heads, x.device, x.dtype)
        for block in self.blocks:
            x = block(x, att_mask, mask, rope)
        return x, lengths

    # --- streaming: chunk by chunk with caches (the module docstring's "Streaming") ---

    def stream_caches(self, left: int, batch: int = 1, device=None, dtype=torch.float32):
        """The caches before a stream's first chunk: attention [blocks, 2, B, H, left, dh] (keys and
        values of the `left` frames before a chunk) and conv [blocks, B, D, kernel - 1], zeros."""
        c = self.cfg
        return (torch.zeros(c.blocks, 2, batch, c.heads, left, c.d_model // c.heads, device=device, dtype=dtype),
                torch.zeros(c.blocks, batch, c.d_model, c.conv_kernel - 1, device=device, dtype=dtype))

    def forward_chunk(self, window: torch.Tensor, offset: torch.Tensor, total: torch.Tensor,
                      att_cache: torch.Tensor, conv_cache: torch.Tensor):
        """Encoder frames [offset, offset + C) of a stream, equal to the whole sequence's under
        `chunk_attention_mask` with chunk C and left_chunks = left / C (all, while left >= offset).

        window [B, 4 C + 3, F]: feature frames 4 offset - 3 .. 4 (offset + C) - 1 (zeros before
        the first; past `total` anything: masked); offset: 0-d long, encoder frames already
        given out; total: 0-d long, the stream's feature frames when this is its last chunk,
        else anything larger than the window's end; att_cache, conv_cache: from
        `stream_caches` or the previous call.
        Returns (encodings [B, C, D], valid [C] bool: frames inside the stream, att_cache,
        conv_cache). Tensor arguments only (no Python branch on their values): ONNX exports it."""
        if not self.cfg.streaming or self.cfg.subsampling != 4:
            raise ValueError("forward_chunk needs a streaming model (trained with --streaming) behind the x4 front")
        b, n, _ = window.shape
        chunk = (n - FRONT_CONTEXT) // 4
        # the front: its convs without time padding on a window that carries its left context
        first = offset * 4 - FRONT_CONTEXT + torch.arange(n, device=window.device)
        x = window * ((first >= 0) & (first < total)).to(window.dtype)[None, :, None]
        x = x.unsqueeze(1)
        conv1, conv2 = self.front.convs
        x = torch.relu(F.conv2d(x, conv1.weight, conv1.bias, stride=conv1.stride, padding=(0, conv1.padding[1])))
        t1 = offset * 2 - 1 + torch.arange(x.shape[2], device=window.device)  # conv1's frames: 2 offset - 1 ..
        x = x * ((t1 >= 0) & (t1 < (total - 1) // 2 + 1)).to(x.dtype)[None, None, :, None]
        x = torch.relu(F.conv2d(x, conv2.weight, conv2.bias, stride=conv2.stride, padding=(0, conv2.padding[1])))
        frames = (total - 1) // 2  # encoder frames of the stream: output_lengths(total) = frames // 2 + 1
        valid = offset + torch.arange(chunk, device=window.device) < frames // 2 + 1  # [C]
        x = x * valid.to(x.dtype)[None, None, :, None]
        _, c, t, f = x.shape
        x = self.front.norm(self.front.proj(x.permute(0, 2, 1, 3).reshape(b, t, c * f)))
        rope = rotary_tables(chunk, self.cfg.d_model // self.cfg.heads, x.device, x.dtype, start=offset)
        left = att_cache.shape[4]
        cached = torch.arange(left, device=window.device) >= left - offset  # the first chunks have fewer
        key_mask = torch.cat([cached, valid])[None, :].expand(b, -1)
        frame_valid = valid[None, :].expand(b, -1)
        att_out, conv_out = [], []
        for i, block in enumerate(self.blocks):
            x, a, cv = block.forward_chunk(x, key_mask, frame_valid, rope, att_cache[i], conv_cache[i])
            att_out.append(a)
            conv_out.append(cv)
        return x, valid, torch.stack(att_out), torch.stack(conv_out)
