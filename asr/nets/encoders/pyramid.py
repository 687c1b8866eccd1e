"""PyramidListener: Chan et al.'s pyramidal BiRNN (x8), LAS's `listener="pyramid"`.

    stack `frame_stack` frames -> Linear(stack*F -> proj_dim) -> BiRNN
    -> (concatenate frame pairs -> BiRNN) x pyramid_layers        [B, T, F] -> [B, T/8, 2H]

Every layer runs over packed sequences, and the input's padding is zeroed before frames are
stacked, so padding never reaches an utterance's frames.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from asr.nets.encoders.interface import EncoderConfig, EncoderInterface, frame_mask


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
