"""Encoders: the interface every model's encoder implements, and its implementations.

    EncoderInterface   forward(feats [B, T, F], lengths [B]) -> (encodings [B, T', D], lengths [B]);
                       output_dim (D), time_reduction (T / T'), output_lengths(lengths)

    RNNEncoder         conv subsampling (x4 in time) then a bidirectional RNN; CTC and LAS
    ConformerEncoder   asr/conformer.py (x4 or x8), picked by EncoderConfig.encoder = "conformer"
    PyramidListener    Chan et al.'s pyramidal BiRNN (x8); LAS's `listener="pyramid"`

RNNEncoder:

    feats [B, T, F] --Conv2d s2 + ReLU--> --Conv2d s2 + ReLU--> [B, C, T/4, F/4]
        --flatten + Linear--> [B, T/4, D] --BiGRU/BiLSTM x N (packed)--> [B, T/4, 2H]

Padding never changes an utterance's outputs at inference: the input's padded frames are
zeroed, conv outputs are zeroed past each length after every layer, and the RNN runs over
packed sequences (`pack=False` pads in training only, for speed; eval mode always packs).

The conv kernels are options: 3x3 for the small CPU model, DeepSpeech2's wide kernels
(11x41 then 11x21, time x freq) for the `lab` preset.

A new encoder (a Conformer, say) subclasses EncoderInterface, takes its sizes from an
EncoderConfig (new fields there, with defaults, keep old checkpoints loading), and is
picked by the model from a config option, as LAS picks its listener.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


@dataclass
class EncoderConfig:
    n_mels: int = 80
    conv_channels: int = 32
    conv_kernels: tuple[tuple[int, int], ...] = ((3, 3), (3, 3))  # (time, freq) per layer
    time_strides: tuple[int, ...] = (2, 2)  # per conv layer (frequency stride is always 2)
    proj_dim: int = 256  # conv features projected to this before the RNN
    rnn: str = "gru"  # gru | lstm
    rnn_layers: int = 3
    rnn_hidden: int = 256  # per direction
    dropout: float = 0.1
    proj_norm: bool = True  # LayerNorm on the projected conv features
    # Packed sequences keep padding out of the RNN exactly; padded batches run the RNN over it
    # (a few frames with length bucketing) but take oneDNN's fused kernels on a CPU: measured
    # forward + backward of 3 x 256 BiRNN, batch 27 x 92 frames, 2 threads: GRU packed 0.70 s,
    # GRU padded 0.43 s, LSTM packed 0.89 s, LSTM padded 0.34 s.
    pack: bool = True
    # One RNN module per layer with a LayerNorm after each (instead of one stacked RNN): on the
    # demo corpus it shortens CTC's blank plateau at the start of training.
    layer_norm: bool = False
    # The encoder: "rnn" (RNNEncoder, the fields above) or "conformer" (asr/conformer.py, the
    # fields below and conv_channels, dropout). Checkpoints without these fields are RNNs.
    encoder: str = "rnn"
    d_model: int = 144
    blocks: int = 6
    heads: int = 4
    ff_mult: int = 4
    conv_kernel: int = 15  # the depthwise conv's kernel, in encoder frames (odd)
    # The initial LayerScale gain of each block's modules, 0: none (a plain Conformer). Deep CTC
    # Conformers can sit on the blank plateau for thousands of steps, depending on the seed; starting
    # the blocks near the identity lets them leave it like a shallow model (README, "Recipes").
    layer_scale: float = 0.0
    subsampling: int = 4  # 4: ConvSubsampling; 8: FastConformer's depthwise-separable front

    @property
    def output_dim(self) -> int:
        return self.d_model if self.encoder == "conformer" else 2 * self.rnn_hidden


class EncoderInterface(nn.Module):
    """What a model needs from its encoder (icefall's EncoderInterface).

    forward(feats [B, T, F] float, lengths [B] long) -> (encodings [B, T', D], lengths [B]):
    frames past an utterance's length are padding, in the input and in the output.
    """

    @property
    def output_dim(self) -> int:
        """D, the size of each output frame."""
        raise NotImplementedError

    @property
    def time_reduction(self) -> int:
        """Input frames per output frame (T / T', up to rounding)."""
        raise NotImplementedError

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """[B] input frames -> [B] output frames, without running the encoder."""
        raise NotImplementedError

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


def frame_mask(lengths: torch.Tensor, t: int) -> torch.Tensor:
    """[B] -> [B, t] bool, True on real frames."""
    return torch.arange(t, device=lengths.device)[None, :] < lengths[:, None]


def conv_out_length(lengths: torch.Tensor, kernel: int, stride: int = 2) -> torch.Tensor:
    """Frames after a conv with padding kernel // 2 (what ConvSubsampling uses)."""
    pad = kernel // 2
    return torch.div(lengths + 2 * pad - kernel, stride, rounding_mode="floor") + 1


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


class RNNEncoder(EncoderInterface):
    """Conv front then a bidirectional RNN stack over packed sequences: [B, T, F] -> [B, T/4, 2H]."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.front = ConvSubsampling(cfg)
        rnn = {"gru": nn.GRU, "lstm": nn.LSTM}[cfg.rnn]
        if cfg.layer_norm:
            self.layers = nn.ModuleList(
                rnn(cfg.proj_dim if i == 0 else 2 * cfg.rnn_hidden, cfg.rnn_hidden, batch_first=True,
                    bidirectional=True) for i in range(cfg.rnn_layers))
            self.norms = nn.ModuleList(nn.LayerNorm(2 * cfg.rnn_hidden) for _ in range(cfg.rnn_layers))
        else:
            self.rnn = rnn(cfg.proj_dim, cfg.rnn_hidden, num_layers=cfg.rnn_layers, batch_first=True,
                           bidirectional=True, dropout=cfg.dropout if cfg.rnn_layers > 1 else 0.0)
        self.dropout = nn.Dropout(cfg.dropout)

    @property
    def output_dim(self) -> int:
        return self.cfg.output_dim

    @property
    def time_reduction(self) -> int:
        return math.prod(self.cfg.time_strides)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return self.front.output_lengths(lengths)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """feats [B, T, F], lengths [B] -> encodings [B, T', 2H], lengths [B]."""
        x, lengths = self.front(feats, lengths)
        if not self.cfg.layer_norm:
            return self.dropout(self._run(self.rnn, x, lengths)), lengths
        for i, (rnn, norm) in enumerate(zip(self.layers, self.norms)):
            x = norm(self._run(rnn, x, lengths))
            if i < len(self.layers) - 1:
                x = self.dropout(x)
        return self.dropout(x), lengths

    def _run(self, rnn: nn.Module, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """x [B, T', D] -> [B, T', 2H]. `pack=False` is a training speed-up only: over padded
        frames the backward direction of a short utterance starts in its batch-mates' padding, so
        at inference (eval mode) every batch is packed and each utterance gets what it gets alone."""
        if not self.cfg.pack and self.training:
            return rnn(x)[0]
        packed = pack_padded_sequence(x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        out, _ = rnn(packed)
        return pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0]


def _stack_frames(x: torch.Tensor, lengths: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, T, D] -> [B, ceil(T/k), k*D]: k consecutive frames side by side (zero-padded)."""
    if k == 1:
        return x, lengths
    b, t, d = x.shape
    pad = (-t) % k
    if pad:
        x = F.pad(x, (0, 0, 0, pad))
    return x.reshape(b, (t + pad) // k, k * d), torch.div(lengths + k - 1, k, rounding_mode="floor")


class PyramidListener(EncoderInterface):
    """Chan et al.'s pyramidal BiRNN: [B, T, F] -> [B, T / (stack * 2^pyramid_layers), 2H].

        stack `frame_stack` frames -> Linear(stack*F -> proj_dim) -> BiRNN
        -> (concatenate frame pairs -> BiRNN) x pyramid_layers
    """

    def __init__(self, enc: EncoderConfig, frame_stack: int, pyramid_layers: int):
        super().__init__()
        self.frame_stack, self.pyramid_layers = frame_stack, pyramid_layers
        self._output_dim = 2 * enc.rnn_hidden
        self.proj = nn.Linear(enc.n_mels * frame_stack, enc.proj_dim)
        rnn = {"gru": nn.GRU, "lstm": nn.LSTM}[enc.rnn]
        n_plain = enc.rnn_layers - pyramid_layers
        sizes = [enc.proj_dim] + [2 * enc.rnn_hidden * (1 if i < n_plain else 2) for i in range(1, enc.rnn_layers)]
        if n_plain == 0:
            sizes[0] = 2 * enc.proj_dim
        self.layers = nn.ModuleList(rnn(size, enc.rnn_hidden, batch_first=True, bidirectional=True) for size in sizes)
        self.halves = [i >= n_plain for i in range(enc.rnn_layers)]
        self.dropout = nn.Dropout(enc.dropout)

    @property
    def output_dim(self) -> int:
        return self._output_dim

    @property
    def time_reduction(self) -> int:
        return self.frame_stack * 2 ** self.pyramid_layers

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        lengths = torch.div(lengths + self.frame_stack - 1, self.frame_stack, rounding_mode="floor")
        for _ in range(self.pyramid_layers):
            lengths = torch.div(lengths + 1, 2, rounding_mode="floor")
        return lengths

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """feats [B, T, F], lengths [B] -> encodings [B, T', 2H], lengths [B]."""
        feats = feats * frame_mask(lengths, feats.shape[1])[:, :, None].to(feats.dtype)
        x, lengths = _stack_frames(feats, lengths, self.frame_stack)
        x = self.dropout(self.proj(x))
        for rnn, halve in zip(self.layers, self.halves):
            if halve:
                x, lengths = _stack_frames(x, lengths, 2)
            packed = pack_padded_sequence(x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
            out, _ = rnn(packed)
            x, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
            x = self.dropout(x)
        return x, lengths
