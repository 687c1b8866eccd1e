"""The encoder interface every model's encoder implements, its config, and the length helpers.

    EncoderInterface   forward(feats [B, T, F], lengths [B]) -> (encodings [B, T', D], lengths [B]);
                       output_dim (D), time_reduction (T / T'), output_lengths(lengths)
    EncoderConfig      the sizes of every encoder (a checkpoint stores its fields; asr/nets/config.py)

Padding never changes an utterance's outputs at inference, in any encoder: what a batch
pads with is zeroed or masked out, and the RNNs pack (tests/test_batch_invariance.py).

A new encoder subclasses EncoderInterface in a file of its own in this package, takes its
sizes from EncoderConfig (asr/nets/config.py: new fields there, with defaults, keep old
checkpoints loading; `option(...)` makes one an `asr-cli train` option),
and gets a name in asr/nets/encoders/__init__.py's `make_encoder`.
"""

from __future__ import annotations

import torch
from torch import nn

from asr.nets.config import EncoderConfig  # noqa: F401  (every encoder's sizes, re-exported)


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
