"""A transcript never depends on its batch: every encoder and preset gives each utterance, in a
padded batch, what it gives that utterance alone (eval mode), and so do the decoders, the
Python API on a trained model and the exported ONNX graph (tests/test_export.py)."""

from __future__ import annotations

import pytest
import torch

from asr.decoding.decoder import Decoder
from asr.decoding.options import DecodeOptions
from asr.nets.models import CTC_PRESETS, LAS_PRESETS, build_model, model_config
from asr.tokens.tokenizer import CharTokenizer
from conftest import LANG

LENGTHS = [157, 90, 41]  # feature frames; padded batch of three
N_MELS = 80
PRESETS = [("ctc", p) for p in CTC_PRESETS] + [("las", p) for p in LAS_PRESETS]
BIG = {("ctc", "lab"), ("ctc", "conformer-base"), ("las", "lab")}  # tens of millions of weights


def _tokenizer() -> CharTokenizer:
    return CharTokenizer(list(" abcdefghijklmnopqrstuvwxyz'"))


def _model(kind: str, preset: str, tokenizer) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(model_config(kind, preset, len(tokenizer), N_MELS))
    return model.eval()


def _feats() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    feats = torch.randn(len(LENGTHS), max(LENGTHS), N_MELS, generator=gen)
    lengths = torch.tensor(LENGTHS)
    # padding that is not zero: what a caller's padding holds must not matter either
    for i, n in enumerate(LENGTHS):
        feats[i, n:] = 5.0
    return feats, lengths


def _alone(feats: torch.Tensor, lengths: torch.Tensor, i: int) -> tuple[torch.Tensor, torch.Tensor]:
    n = int(lengths[i])
    return feats[i: i + 1, :n], lengths[i: i + 1]


@pytest.mark.parametrize("kind,preset", [pytest.param(k, p, marks=pytest.mark.slow) if (k, p) in BIG else (k, p)
                                         for k, p in PRESETS], ids=[f"{k}-{p}" for k, p in PRESETS])
@torch.no_grad()
def test_every_preset_encodes_and_decodes_each_utterance_as_alone(kind, preset):
    tokenizer = _tokenizer()
    model = _model(kind, preset, tokenizer)
    feats, lengths = _feats()
    enc, enc_lens = model.encoder(feats, lengths)
    for i in range(len(LENGTHS)):
        one, one_lens = model.encoder(*_alone(feats, lengths, i))
        assert int(one_lens[0]) == int(enc_lens[i])
        torch.testing.assert_close(enc[i, : int(enc_lens[i])], one[0], atol=1e-5, rtol=1e-4)
    # the decoders: greedy, and a (narrow) beam search
    for options in (DecodeOptions(), DecodeOptions(beam=3)):
        decoder = Decoder(model, tokenizer, options)
        batched = decoder(feats, lengths)
        assert batched == [decoder(*_alone(feats, lengths, i))[0] for i in range(len(LENGTHS))]


def test_padded_rnn_training_still_runs_over_the_padding():
    """pack=False stays a training speed-up: in train mode the RNN reads the padding (so the
    two modes differ for a short utterance of a batch), in eval mode it does not."""
    model = _model("ctc", "small", _tokenizer())
    feats, lengths = _feats()
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    with torch.no_grad():
        model.train()
        trained = model.encoder(feats, lengths)[0][2, :10]
        model.eval()
        inferred = model.encoder(feats, lengths)[0][2, :10]
        alone = model.encoder(*_alone(feats, lengths, 2))[0][0, :10]
    torch.testing.assert_close(inferred, alone, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(trained, alone, atol=1e-3)


def test_the_trained_small_model_gives_batched_clips_their_single_output(learnt, synth_root):
    """ctc/small trained with padded batches: the API's batched log-probs and texts are each
    clip's own (before packing at inference, a short clip's differed)."""
    from asr.inference.api import Recognizer

    clips = [synth_root / LANG / "clips" / r["path"] for r in learnt["rows"]]
    rec = Recognizer.load(learnt["ckpt"], device="cpu")
    t = rec.transcriber
    xs = [torch.from_numpy((t.prepare(c).feats.astype("float32") - t.mean) / t.std) for c in clips]
    lengths = torch.tensor([len(x) for x in xs])
    assert len(set(lengths.tolist())) > 1, "the clips must differ in length for the batch to pad"
    x = torch.nn.utils.rnn.pad_sequence(xs, batch_first=True)
    with torch.no_grad():
        lp, out_lens = t.model.log_probs(x, lengths)
        for i, xi in enumerate(xs):
            one, one_lens = t.model.log_probs(xi[None], lengths[i: i + 1])
            torch.testing.assert_close(lp[i, : int(out_lens[i])], one[0], atol=1e-4, rtol=1e-4)
    batched = [r.text for r in rec.transcribe_many(clips, batch_size=len(clips))]
    assert batched == [rec.transcribe(c).text for c in clips]
    assert sum(map(len, batched)) > 0
