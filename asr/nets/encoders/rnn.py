"""RNNEncoder: conv front (x4 in time) then a bidirectional GRU / LSTM stack; CTC's and LAS's.

    feats [B, T, F] --ConvSubsampling--> [B, T/4, D] --BiGRU/BiLSTM x N (packed)--> [B, T/4, 2H]

With `layer_norm`, one RNN module per layer and a LayerNorm after each. `pack=False` runs the
RNN over padded batches in training (oneDNN's fused kernels, faster on a CPU); in eval mode
every batch is packed, so each utterance gets the output it gets alone.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from asr.nets.encoders.interface import EncoderConfig, EncoderInterface
from asr.nets.encoders.subsampling import ConvSubsampling


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
