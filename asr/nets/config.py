"""The networks' sizes: EncoderConfig, CTCConfig, LASConfig, RNNTConfig (a checkpoint stores their fields).

Without torch, so `asr-cli train --help` reads them without loading a model library: every
field made with `option(default, help, bounds=...)` is an `asr-cli train` option that
overrides the preset's value (default: the preset's, asr/nets/presets.py). A new size is a
field here (with a default, so older checkpoints still load) and its use in the network.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.options import AT_LEAST_0, AT_LEAST_1, FRACTION, FRACTION_BELOW_1, POSITIVE, Bound, option


@dataclass
class EncoderConfig:
    n_mels: int = 80
    conv_channels: int = option(32, "Channels of the conv front.", bounds=AT_LEAST_1)
    conv_kernels: tuple[tuple[int, int], ...] = ((3, 3), (3, 3))  # (time, freq) per layer
    time_strides: tuple[int, ...] = (2, 2)  # per conv layer (frequency stride is always 2)
    proj_dim: int = option(256, "Conv features projected to this size.", bounds=AT_LEAST_1)
    rnn: str = option("gru", "Encoder RNN: gru or lstm.")
    rnn_layers: int = option(3, "Encoder RNN layers.", bounds=AT_LEAST_1)
    rnn_hidden: int = option(256, "Encoder RNN units per direction.", bounds=AT_LEAST_1)
    dropout: float = option(0.1, "Dropout.", bounds=FRACTION_BELOW_1)
    proj_norm: bool = True  # LayerNorm on the projected conv features
    # Packed sequences keep padding out of the RNN exactly; padded batches run the RNN over it
    # (a few frames with length bucketing) but take oneDNN's fused kernels on a CPU: measured
    # forward + backward of 3 x 256 BiRNN, batch 27 x 92 frames, 2 threads: GRU packed 0.70 s,
    # GRU padded 0.43 s, LSTM packed 0.89 s, LSTM padded 0.34 s.
    pack: bool = True
    # One RNN module per layer with a LayerNorm after each (instead of one stacked RNN): on the
    # demo corpus it shortens CTC's blank plateau at the start of training.
    layer_norm: bool = False
    # The encoder: "rnn" (RNNEncoder, the fields above) or "conformer" (asr/nets/encoders/conformer.py, the
    # fields below and conv_channels, dropout). Checkpoints without these fields are RNNs.
    encoder: str = option("rnn", "Encoder: rnn (conv front + BiRNN) or conformer.")
    d_model: int = option(144, "conformer: model size.", bounds=AT_LEAST_1)
    blocks: int = option(6, "conformer: blocks.", bounds=AT_LEAST_1)
    heads: int = option(4, "conformer: attention heads.", bounds=AT_LEAST_1)
    ff_mult: int = 4
    conv_kernel: int = option(15, "conformer: depthwise conv kernel, odd.", bounds=AT_LEAST_1)
    # Deep CTC Conformers can sit on the blank plateau for thousands of steps, depending on the
    # seed; blocks that start near the identity leave it like a shallow model (docs/RESULTS.md part 11).
    layer_scale: float = option(0.0, "conformer: initial LayerScale gain of each block's modules, 0: none "
                                     "(conformer-small: 0.1; it keeps deep CTC Conformers off the blank plateau).",
                                bounds=FRACTION)
    subsampling: int = option(4, "conformer: time reduction of the front, 4 or 8.", bounds=Bound(4, 8, why="4 or 8"))
    # Streaming (conformer, x4 front; asr/nets/encoders/conformer.py, "Streaming"): a causal depthwise
    # conv, and in training each batch draws its attention chunk (full context half the time), so
    # one model decodes whole files and streams chunk by chunk.
    streaming: bool = option(False, "conformer (ctc, rnnt): train to stream too: causal conv, a random attention chunk "
                                    "per batch; the checkpoint then decodes whole files and streams "
                                    "(conformer-*-streaming presets).", flag=("--streaming/--no-streaming",))
    left_chunks: int = option(-1, "--streaming: chunks before its own a frame sees in training, -1: all.",
                              bounds=Bound(-1, 1000, why="-1 (all) or a number of chunks"))

    @property
    def output_dim(self) -> int:
        return self.d_model if self.encoder == "conformer" else 2 * self.rnn_hidden


@dataclass
class CTCConfig:
    vocab_size: int
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    upsample: int = option(1, "ctc: output frames per encoder frame, 1 or 2 (small presets: chosen from the train "
                              "split, 2 only where its fast speech needs 50 frames a second).",
                           bounds=Bound(1, 2, why="1 or 2"))


@dataclass
class LASConfig:
    vocab_size: int
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    listener: str = option("conv", "las: conv (conv front x4 + BiRNN) or pyramid (pyramidal BiRNN, x8).")
    frame_stack: int = option(2, "las pyramid: input frames stacked before the first layer.", bounds=AT_LEAST_1)
    pyramid_layers: int = option(2, "las pyramid: top BiRNN layers that halve time.", bounds=AT_LEAST_0)
    attention: str = option("location", "las: location (location-aware) or content attention.")
    att_dim: int = option(128, "las: attention size.", bounds=AT_LEAST_1)
    att_conv_channels: int = 10
    att_conv_kernel: int = 31  # odd
    att_norm: str = option("softmax", "las: softmax, or sigmoid (smoothed) attention normalisation.")
    att_cumulative: bool = False  # location features also from the sum of the past alignments
    att_init: str = "uniform"  # the alignment before the first step: uniform | first (all on frame 0)
    att_temperature: float = option(1.0, "las: attention energies divided by this (>1 flatter).", bounds=POSITIVE)
    embed_dim: int = option(64, "las: speller unit embedding size.", bounds=AT_LEAST_1)
    decoder_layers: int = option(1, "las: speller LSTM layers.", bounds=AT_LEAST_1)
    decoder_hidden: int = option(256, "las: speller LSTM units.", bounds=AT_LEAST_1)
    ctc_weight: float = 0.3  # builds a CTC head when > 0 (training's --ctc-weight sets it)

    def __post_init__(self) -> None:
        checks = [
            (self.listener in ("conv", "pyramid"), f"listener must be conv or pyramid, not {self.listener!r}"),
            (self.attention in ("location", "content"),
             f"attention must be location or content, not {self.attention!r}"),
            (self.att_norm in ("softmax", "sigmoid"), f"att_norm must be softmax or sigmoid, not {self.att_norm!r}"),
            (self.att_init in ("uniform", "first"), f"att_init must be uniform or first, not {self.att_init!r}"),
            (self.att_temperature > 0, "att_temperature must be > 0"),
            (self.att_conv_kernel % 2 == 1, "att_conv_kernel must be odd"),
            (0.0 <= self.ctc_weight <= 1.0, "ctc_weight must be in [0, 1]"),
            (self.frame_stack >= 1, "frame_stack must be >= 1"),
            (self.listener != "pyramid" or 0 <= self.pyramid_layers <= self.encoder.rnn_layers,
             "pyramid_layers must be between 0 and rnn_layers"),
            (self.decoder_layers >= 1, "decoder_layers must be >= 1"),
            (self.listener != "pyramid" or self.encoder.encoder == "rnn",
             "listener pyramid is a BiRNN: it takes no encoder=conformer (use listener conv)"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


@dataclass
class RNNTConfig:
    """The transducer's sizes (asr/nets/transducer.py): its encoder, prediction network and joiner."""

    vocab_size: int
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    predictor: str = option("stateless", "rnnt: prediction network, stateless (embedding + conv over the last "
                                         "--pred-context units, as icefall's) or lstm.")
    pred_dim: int = option(256, "rnnt: prediction network size (embedding, and LSTM units with --predictor lstm).",
                           bounds=AT_LEAST_1)
    pred_context: int = option(2, "rnnt: units the stateless prediction network sees.", bounds=Bound(1, 16))
    pred_layers: int = 1  # LSTM layers (--predictor lstm)
    joint_dim: int = option(256, "rnnt: joiner size (encoder and prediction outputs projected to it).",
                            bounds=AT_LEAST_1)
    # The loss (asr/nets/rnnt_loss.py): "pruned" (k2's pruned RNN-T: the joiner on `prune_range`
    # units a frame, bounds from a trivial joiner's loss) or "full" (torchaudio's rnnt_loss on the
    # whole B x T' x (U + 1) joint, in bounded groups). One demo batch, 1 thread: pruned 0.9 s a
    # step, full 1.65 s, CTC 0.75 s (docs/RESULTS.md part 12).
    loss: str = option("pruned", "rnnt: pruned (the joiner on --prune-range units a frame) or full (torchaudio's "
                                 "rnnt_loss on the whole joint).")
    prune_range: int = option(5, "rnnt pruned: units of each frame's window.", bounds=Bound(2, 100))
    ctc_weight: float = 0.0  # weight of the auxiliary CTC loss: builds a CTC head when > 0 (training's --ctc-weight)

    def __post_init__(self) -> None:
        if self.predictor not in ("stateless", "lstm"):
            raise ValueError(f"predictor must be stateless or lstm, not {self.predictor!r}")
        if self.loss not in ("pruned", "full"):
            raise ValueError(f"loss must be pruned or full, not {self.loss!r}")
        if not 0.0 <= self.ctc_weight < 1.0:
            raise ValueError("ctc_weight of a transducer must be in [0, 1)")


# the configs whose option fields are `asr-cli train`'s model-shape options, by the kind they apply to
SHAPE_CONFIGS = {"encoder": EncoderConfig, "ctc": CTCConfig, "las": LASConfig, "rnnt": RNNTConfig}
