"""The encoder every model shares: conv subsampling (x4 in time) then a bidirectional RNN.

    feats [B, T, F] --Conv2d s2 + ReLU--> --Conv2d s2 + ReLU--> [B, C, T/4, F/4]
        --flatten + Linear--> [B, T/4, D] --BiGRU/BiLSTM x N (packed)--> [B, T/4, 2H]

The conv kernels are options: 3x3 for the small CPU model, DeepSpeech2's wide kernels
(11x41 then 11x21, time x freq) for the `lab` preset. Conv outputs are zeroed past each
utterance's length after every layer, so padding never leaks into real frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


@dataclass
class EncoderConfig:
    n_mels: int = 80
    conv_channels: int = 32
    conv_kernels: tuple[tuple[int, int], ...] = ((3, 3), (3, 3))  # (time, freq) per layer, stride 2 each
    proj_dim: int = 256  # conv features projected to this before the RNN
    rnn: str = "gru"  # gru | lstm
    rnn_layers: int = 3
    rnn_hidden: int = 256  # per direction
    dropout: float = 0.1

    @property
    def output_dim(self) -> int:
        return 2 * self.rnn_hidden


def conv_out_length(lengths: torch.Tensor, kernel: int, stride: int = 2) -> torch.Tensor:
    """Frames after a conv with padding kernel // 2 (what ConvSubsampling uses)."""
    pad = kernel // 2
    return torch.div(lengths + 2 * pad - kernel, stride, rounding_mode="floor") + 1


class ConvSubsampling(nn.Module):
    """[B, T, F] -> [B, T', D], T' ~ T/4 (two stride-2 convs)."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.kernels = [tuple(k) for k in cfg.conv_kernels]
        chans = [1] + [cfg.conv_channels] * len(self.kernels)
        self.convs = nn.ModuleList(
            nn.Conv2d(chans[i], chans[i + 1], k, stride=2, padding=(k[0] // 2, k[1] // 2))
            for i, k in enumerate(self.kernels)
        )
        freq = cfg.n_mels
        for k in self.kernels:
            freq = (freq + 2 * (k[1] // 2) - k[1]) // 2 + 1
        self.proj = nn.Linear(cfg.conv_channels * freq, cfg.proj_dim)
        self.dropout = nn.Dropout(cfg.dropout)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        for k in self.kernels:
            lengths = conv_out_length(lengths, k[0])
        return lengths

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = feats.unsqueeze(1)  # [B, 1, T, F]
        for conv, k in zip(self.convs, self.kernels):
            x = torch.relu(conv(x))
            lengths = conv_out_length(lengths, k[0])
            mask = torch.arange(x.shape[2], device=x.device)[None, :] < lengths[:, None]  # [B, T']
            x = x * mask[:, None, :, None].to(x.dtype)
        b, c, t, f = x.shape
        x = self.proj(x.permute(0, 2, 1, 3).reshape(b, t, c * f))
        return self.dropout(x), lengths


class RNNEncoder(nn.Module):
    """Conv front then a bidirectional RNN stack over packed sequences."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.front = ConvSubsampling(cfg)
        rnn = {"gru": nn.GRU, "lstm": nn.LSTM}[cfg.rnn]
        self.rnn = rnn(cfg.proj_dim, cfg.rnn_hidden, num_layers=cfg.rnn_layers, batch_first=True,
                       bidirectional=True, dropout=cfg.dropout if cfg.rnn_layers > 1 else 0.0)
        self.dropout = nn.Dropout(cfg.dropout)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return self.front.output_lengths(lengths)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """feats [B, T, F], lengths [B] -> encodings [B, T', 2H], lengths [B]."""
        x, lengths = self.front(feats, lengths)
        packed = pack_padded_sequence(x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return self.dropout(out), lengths
