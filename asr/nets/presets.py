"""The model presets: name -> options, by model kind (`PRESETS`), with a line of help each.

    ctc/tiny, ctc/conformer-tiny       tests: seconds on a CPU
    ctc/small                          the demo: 3.38 M parameters (conv front + 3 x 256 BiGRU)
    ctc/lab                            DeepSpeech2-like: two wide convs, 4 x 1024 BiGRU (~70 M)
    ctc/conformer-small                Conformer for the CPU demo: x4 front, d 144, 6 blocks (3.02 M)
    ctc/conformer-base                 Conformer for a GPU and a full release: d 256, 12 blocks (32.8 M)
    ctc/conformer-*-streaming          the same, trained to stream too
    las/tiny, small, small-pyramid, lab, conformer-small   Listen, Attend and Spell
    rnnt/conformer-tiny, conformer-small, conformer-base (and -streaming)   the transducer

An entry's options are EncoderConfig fields, then the model's own (CTC's `upsample`, LASConfig's
fields, RNNTConfig's); `asr-cli train --preset` takes the name and every option can be overridden. How each
recipe was chosen, with its measured figures, is docs/RESULTS.md part 11; parameter counts are
with the demo's 46 character units. A new preset is one entry here (its help goes to
`asr-cli train --help` from PRESET_HELP).
"""

from __future__ import annotations

CTC_PRESETS: dict[str, dict] = {
    "tiny": dict(conv_channels=8, proj_dim=64, rnn_layers=1, rnn_hidden=64, dropout=0.0),
    # padded batches, a LayerNorm per BiGRU layer, two CTC frames per encoder frame where the
    # train split's fast speech needs them ("auto"): RESULTS part 11
    "small": dict(conv_channels=32, proj_dim=256, rnn="gru", rnn_layers=3, rnn_hidden=256, dropout=0.1,
                  pack=False, layer_norm=True, upsample="auto"),
    "lab": dict(conv_channels=32, conv_kernels=((11, 41), (11, 21)), proj_dim=1024, rnn_layers=4,
                rnn_hidden=1024, dropout=0.1),
    "conformer-tiny": dict(encoder="conformer", subsampling=4, conv_channels=8, d_model=32, blocks=1, heads=2,
                           ff_mult=2, conv_kernel=7, dropout=0.0),
    # chosen on dev at equal wall time; LayerScale 0.1 keeps it off CTC's blank plateau (RESULTS part 11)
    "conformer-small": dict(encoder="conformer", subsampling=4, conv_channels=32, d_model=144, blocks=6, heads=4,
                            ff_mult=4, conv_kernel=15, dropout=0.1, upsample="auto", layer_scale=0.1),
    # ESPnet's Common Voice Conformer sizes (d 256, FFN 2048, x4 front); its schedule: RESULTS part 5
    "conformer-base": dict(encoder="conformer", subsampling=4, conv_channels=256, d_model=256, blocks=12, heads=4,
                           ff_mult=8, conv_kernel=31, dropout=0.1),
}
# the streaming twins: a causal conv and dynamic chunk masks in training (asr/nets/encoders/conformer.py)
CTC_PRESETS["conformer-small-streaming"] = dict(CTC_PRESETS["conformer-small"], streaming=True)
CTC_PRESETS["conformer-base-streaming"] = dict(CTC_PRESETS["conformer-base"], streaming=True)

LAS_PRESETS: dict[str, dict] = {
    "tiny": dict(conv_channels=8, proj_dim=64, rnn="gru", rnn_layers=1, rnn_hidden=64, dropout=0.0,
                 embed_dim=32, decoder_hidden=96, att_dim=48, att_conv_channels=4, att_conv_kernel=15),
    # ctc/small's encoder + a 1 x 256 LSTM speller
    "small": dict(conv_channels=32, proj_dim=256, rnn="gru", rnn_layers=3, rnn_hidden=256, dropout=0.1,
                  pack=False, layer_norm=True, embed_dim=64, decoder_hidden=256, att_dim=128, att_conv_channels=10,
                  att_conv_kernel=31),
    # Chan et al.'s pyramidal listener (x8): use with --tokens unigram:N
    "small-pyramid": dict(listener="pyramid", proj_dim=256, rnn="gru", rnn_layers=3, rnn_hidden=256,
                          dropout=0.1, embed_dim=64, decoder_hidden=256, att_dim=128, att_conv_channels=10,
                          att_conv_kernel=15),
    # Chan et al.'s LAS on a GPU: 1 BLSTM + 2 pBLSTM of 512 (x8), 2 x 512 LSTM speller; --tokens unigram:N
    "lab": dict(listener="pyramid", proj_dim=512, rnn="lstm", rnn_layers=3, rnn_hidden=512, dropout=0.2,
                embed_dim=256, decoder_layers=2, decoder_hidden=512, att_dim=256, att_conv_channels=10,
                att_conv_kernel=31),
    # ctc/conformer-small's blocks behind the x4 front + small's speller
    "conformer-small": dict(encoder="conformer", subsampling=4, conv_channels=32, d_model=144, blocks=6, heads=4,
                            ff_mult=4, conv_kernel=15, dropout=0.1, embed_dim=64, decoder_hidden=256, att_dim=128,
                            att_conv_channels=10, att_conv_kernel=31),
}

# the transducer (asr/nets/transducer.py): ctc's Conformer encoders + a stateless prediction network and a joiner
_PREDICTION = dict(predictor="stateless", pred_dim=256, pred_context=2, joint_dim=256)
RNNT_PRESETS: dict[str, dict] = {
    "conformer-tiny": dict(CTC_PRESETS["conformer-tiny"], predictor="stateless", pred_dim=32, pred_context=2,
                           joint_dim=48),
    "conformer-small": dict({k: v for k, v in CTC_PRESETS["conformer-small"].items() if k != "upsample"},
                            **_PREDICTION),
    "conformer-base": dict(CTC_PRESETS["conformer-base"], predictor="stateless", pred_dim=512, pred_context=2,
                           joint_dim=512),
}
RNNT_PRESETS["conformer-small-streaming"] = dict(RNNT_PRESETS["conformer-small"], streaming=True)
RNNT_PRESETS["conformer-base-streaming"] = dict(RNNT_PRESETS["conformer-base"], streaming=True)

PRESETS: dict[str, dict[str, dict]] = {"ctc": CTC_PRESETS, "las": LAS_PRESETS, "rnnt": RNNT_PRESETS}

# the size a preset's name does not say, for --help (the demo's 46 units)
SIZES = {("ctc", "conformer-small"): "3.0 M", ("ctc", "conformer-base"): "32.8 M", ("las", "conformer-small"): "3.7 M"}


def preset_help() -> str:
    """The presets by kind, as `asr-cli train --preset` lists them."""
    parts = []
    for kind, table in PRESETS.items():
        names = [f"{n} ({SIZES[kind, n]})" if (kind, n) in SIZES else n for n in table]
        parts.append(f"{', '.join(names)} ({kind})")
    return "; ".join(parts)
