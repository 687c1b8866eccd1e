"""Encoders: the interface (interface.py), `make_encoder`, and one file per implementation.

    interface.py     EncoderInterface, EncoderConfig, frame_mask, conv_out_length
    subsampling.py   the conv fronts: ConvSubsampling (x4), DWSepSubsampling (x8)
    rnn.py           RNNEncoder: conv front + BiGRU / BiLSTM; CTC and LAS ("rnn", the default)
    conformer.py     ConformerEncoder: conv front + Conformer blocks ("conformer")
    pyramid.py       PyramidListener: Chan et al.'s pyramidal BiRNN, LAS's `listener="pyramid"`

`make_encoder(cfg)` builds the one EncoderConfig.encoder names (CTC's encoder, LAS's "conv"
listener); checkpoints without that field are RNNs.
"""

from __future__ import annotations

from asr.nets.encoders.conformer import ConformerEncoder
from asr.nets.encoders.interface import EncoderConfig, EncoderInterface
from asr.nets.encoders.rnn import RNNEncoder

__all__ = ["ENCODERS", "EncoderConfig", "EncoderInterface", "make_encoder"]

ENCODERS = {"rnn": RNNEncoder, "conformer": ConformerEncoder}


def make_encoder(cfg: EncoderConfig) -> EncoderInterface:
    """The encoder EncoderConfig.encoder names."""
    if cfg.encoder not in ENCODERS:
        raise ValueError(f"encoder must be one of {', '.join(ENCODERS)}, not {cfg.encoder!r}")
    return ENCODERS[cfg.encoder](cfg)
