"""The encoder interface every model's encoder implements, its config, and the length helpers.

    EncoderInterface   forward(feats [B, T, F], lengths [B]) -> (encodings [B, T', D], lengths [B]);
                       output_dim (D), time_reduction (T / T'), output_lengths(lengths)
    EncoderConfig      the sizes of every encoder (a checkpoint stores its fields)

Padding never changes an utterance's outputs at inference, in any encoder: what a batch
pads with is zeroed or masked out, and the RNNs pack (tests/test_batch_invariance.py).

A new encoder subclasses EncoderInterface in a file of its own in this package, takes its
sizes from EncoderConfig (new fields there, with defaults, keep old checkpoints loading),
and gets a name in asr/encoders/__init__.py's `make_encoder`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


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
    # The encoder: "rnn" (RNNEncoder, the fields above) or "conformer" (asr/encoders/conformer.py, the
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
    # Streaming (conformer, x4 front; asr/encoders/conformer.py, "Streaming"): a causal depthwise conv,
    # and in training each batch draws its attention chunk (full context half the time), so one
    # model decodes whole files and streams chunk by chunk. left_chunks: chunks before its own
    # that a frame sees in training (-1: all).
    streaming: bool = False
    left_chunks: int = -1

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
