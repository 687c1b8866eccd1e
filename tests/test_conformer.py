"""The Conformer encoder (asr/nets/encoders/conformer.py): shapes, padding invariance, learning, LAS listener,
a checkpoint round trip through `asr-cli train`, and old configs still building the BiRNN."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from asr.apps.demo import DEMO_PRESETS, DEMO_TRAIN, DemoConfig
from asr.data.loader import Batch
from asr.decoding.decoder import DecodeOptions
from asr.decoding.las import LASGreedyDecoder
from asr.inference.export import check, graph_bytes
from asr.inference.transcribe import Transcriber
from asr.nets.encoders import EncoderConfig, make_encoder
from asr.nets.encoders.conformer import ConformerEncoder
from asr.nets.encoders.rnn import RNNEncoder
from asr.nets.models import CTC_PRESETS, LAS_PRESETS, build_model, count_parameters, load_model, model_config
from asr.tokens.units import BLANK

ROOT = Path(__file__).resolve().parents[1]


def small_cfg(subsampling: int, **kw) -> EncoderConfig:
    return EncoderConfig(encoder="conformer", n_mels=40, conv_channels=8, d_model=32, blocks=2, heads=4,
                         ff_mult=2, conv_kernel=7, subsampling=subsampling, dropout=0.1, **kw)


@pytest.mark.parametrize("subsampling", [4, 8])
def test_shapes_and_lengths(subsampling):
    torch.manual_seed(0)
    enc = make_encoder(small_cfg(subsampling))
    assert isinstance(enc, ConformerEncoder)
    assert enc.time_reduction == subsampling and enc.output_dim == 32
    lengths = torch.tensor([203, 150, 17, 8])
    out, out_lens = enc(torch.randn(4, 203, 40), lengths)
    # stride-2 convs with padding 1: ceil(n / 2) per conv, 2 convs (x4) or 3 (x8)
    expected = lengths.clone()
    for _ in range({4: 2, 8: 3}[subsampling]):
        expected = (expected + 1) // 2
    assert out_lens.tolist() == expected.tolist() == enc.output_lengths(lengths).tolist()
    assert out.shape == (4, int(expected.max()), 32)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("subsampling,layer_scale", [(4, 0.0), (8, 0.0), (4, 0.1)])
def test_padding_never_changes_real_frames(subsampling, layer_scale):
    """Eval mode: each utterance alone, in a batch of several lengths, and with extra garbage
    padding gives the same outputs on its real frames."""
    torch.manual_seed(1)
    enc = make_encoder(small_cfg(subsampling, layer_scale=layer_scale)).eval()
    lengths = torch.tensor([120, 75, 31])
    feats = torch.randn(3, 120, 40)
    for i in range(3):  # what lies past each length is garbage, not zeros
        feats[i, lengths[i]:] = 5 * torch.randn(120 - lengths[i], 40)
    with torch.no_grad():
        out, out_lens = enc(feats, lengths)
        padded, padded_lens = enc(torch.cat([feats, 3 * torch.randn(3, 57, 40)], dim=1), lengths)
        assert padded_lens.tolist() == out_lens.tolist()
        assert padded.shape[1] > out.shape[1]
        for i, n in enumerate(out_lens.tolist()):
            alone, _ = enc(feats[i:i + 1, :lengths[i]], lengths[i:i + 1])
            assert alone.shape[1] == n
            torch.testing.assert_close(out[i, :n], alone[0], atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(padded[i, :n], alone[0], atol=1e-5, rtol=1e-4)


def test_layer_scale_starts_each_block_near_the_identity_and_learns_its_gains():
    """With a small LayerScale gain a block is at first close to its final LayerNorm alone (what
    lets a deep CTC Conformer train like a shallow one early); without it (0, old checkpoints)
    the block has no gain parameters and is far from it."""
    from asr.nets.encoders.conformer import ConformerBlock, rotary_tables

    torch.manual_seed(0)
    x = torch.randn(2, 30, 32)
    mask = torch.ones(2, 30, dtype=torch.bool)
    att_mask = mask[:, None, None, :]
    rope = rotary_tables(30, 8, "cpu", torch.float32)
    plain = ConformerBlock(small_cfg(4)).eval()
    assert not any("gamma" in name for name, _ in plain.named_parameters())
    scaled = ConformerBlock(small_cfg(4, layer_scale=1e-3)).eval()
    scaled.load_state_dict(plain.state_dict(), strict=False)  # the same modules, gains added
    assert torch.equal(scaled.gamma, torch.full((4, 32), 1e-3))
    with torch.no_grad():
        identity = plain.norm(x)
        near = (scaled(x, att_mask, mask, rope) - identity).abs().max()
        far = (plain(x, att_mask, mask, rope) - identity).abs().max()
    assert near < 0.02 < far, (float(near), float(far))
    scaled.train()
    scaled(x, att_mask, mask, rope).pow(2).sum().backward()
    assert scaled.gamma.grad is not None and scaled.gamma.grad.abs().sum() > 0


def toy_batch(vocab: int, seed: int) -> Batch:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([96, 80, 64])
    targets = torch.randint(2, vocab, (3, 6), generator=g)
    target_lens = torch.tensor([6, 5, 4])
    for i, n in enumerate(target_lens.tolist()):
        targets[i, n:] = 0
    feats = torch.randn(3, 96, 80, generator=g)
    feats[1, 80:] = 0
    feats[2, 64:] = 0
    return Batch(feats, lengths, targets, target_lens)


def test_tiny_conformer_ctc_overfits_a_batch():
    torch.manual_seed(0)
    model = build_model(model_config("ctc", "conformer-tiny", 12, 80))
    assert isinstance(model.encoder, ConformerEncoder)
    batch = toy_batch(12, 0)
    opt = torch.optim.AdamW(model.parameters(), 3e-3, weight_decay=0.0)
    losses = []
    for _ in range(80):
        loss = model(batch)["loss"]
        losses.append(float(loss.detach()))
        loss.backward()
        opt.step()
        opt.zero_grad()
    assert losses[-1] < 0.1 * losses[0], (losses[0], losses[-1])
    model.eval()
    with torch.no_grad():
        log_probs, lens = model.log_probs(batch.feats, batch.feat_lens)
    hyps = []
    for row, n in zip(log_probs.argmax(-1), lens.tolist()):  # best path: repeats merged, blanks dropped
        ids = torch.unique_consecutive(row[:n]).tolist()
        hyps.append([t for t in ids if t != BLANK])
    assert hyps == [t[:n].tolist() for t, n in zip(batch.targets, batch.target_lens.tolist())]


def test_conformer_las_trains_and_decodes():
    torch.manual_seed(0)
    options = {**LAS_PRESETS["conformer-small"], "d_model": 32, "blocks": 1, "heads": 2, "conv_channels": 8,
               "decoder_hidden": 48, "att_dim": 32}
    model = build_model(model_config("las", "conformer-small", 12, 80, options))
    assert isinstance(model.encoder, ConformerEncoder) and model.time_reduction == 4
    batch = toy_batch(12, 1)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    model.train()
    for _ in range(2):
        out = model(batch)
        out["loss"].backward()
        assert torch.isfinite(out["loss"])
        assert not [n for n, p in model.named_parameters() if p.grad is None]  # DDP needs every one
        opt.step()
        opt.zero_grad()
    model.eval()
    hyps = LASGreedyDecoder(model, DecodeOptions(max_len_ratio=0.5))(batch.feats, batch.feat_lens)
    assert len(hyps) == 3 and all(isinstance(t, int) and 2 <= t < 12 for h in hyps for t in h)
    with pytest.raises(ValueError, match="listener pyramid is a BiRNN"):
        build_model(model_config("las", "conformer-small", 12, 80, {"listener": "pyramid"}))


def test_presets_and_old_configs():
    sizes = {name: count_parameters(build_model(model_config("ctc", name, 46, 80)))
             for name in ("small", "conformer-small", "conformer-base")}
    assert 2.5e6 < sizes["conformer-small"] < sizes["small"]
    assert 28e6 < sizes["conformer-base"] < 36e6
    assert CTC_PRESETS["conformer-base"]["d_model"] == 256 and CTC_PRESETS["conformer-base"]["blocks"] == 12
    # a config written before the Conformer (no `encoder` field) still builds the BiRNN
    old = {"kind": "ctc", "preset": "small", "vocab_size": 46, "n_mels": 80, "options": dict(CTC_PRESETS["small"])}
    assert "encoder" not in old["options"]
    assert isinstance(build_model(old).encoder, RNNEncoder)
    assert EncoderConfig().encoder == "rnn" and EncoderConfig().output_dim == 512
    for bad, message in (({"subsampling": 6}, "subsampling must be 4 or 8, not 6"),
                         ({"conv_kernel": 8}, "conv_kernel must be odd, not 8"),
                         ({"d_model": 30, "heads": 4}, "d_model \\(30\\) must split into 4 heads"),
                         ({"encoder": "lstm"}, "encoder must be one of rnn, conformer, not 'lstm'")):
        with pytest.raises(ValueError, match=message):
            build_model(model_config("ctc", "conformer-tiny", 12, 80, bad))


def test_cli_trains_a_conformer_that_loads_and_transcribes(shards_dir, synth_root, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, str(ROOT / "cli.py"), "train", "--shards", str(shards_dir), "--out", str(out),
           "--preset", "conformer-tiny", "--subsampling", "8", "--max-steps", "3", "--warmup", "1",
           "--batch-frames", "4000", "--eval-every", "3", "--eval-utts", "4", "--workers", "0", "--no-progress",
           "--device", "cpu"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "ctc/conformer-tiny:" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["step"] == 3
    model, tokenizer, ckpt = load_model(out / "last.pt")
    assert ckpt.card.model["options"]["encoder"] == "conformer" and ckpt.card.model["options"]["subsampling"] == 8
    assert isinstance(model.encoder, ConformerEncoder) and model.encoder.time_reduction == 8
    clip = sorted((synth_root / "fr" / "clips").glob("*.mp3"))[0]
    result = Transcriber(out / "last.pt", DecodeOptions(), "cpu")(clip)
    assert result.ok and isinstance(result.text, str) and result.duration > 0.5
    # a bad size is one line, no traceback
    bad_cmd = cmd[:cmd.index("--subsampling")] + ["--conv-kernel", "8", "--max-steps", "1", "--force",
                                                   "--no-progress", "--device", "cpu", "--workers", "0"]
    bad = subprocess.run(bad_cmd, capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode != 0 and "conv_kernel must be odd, not 8" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_demo_preset_recipe_and_refusal(tmp_path):
    cfg = DemoConfig(model="ctc", preset="conformer-small", runs=tmp_path)
    recipe = cfg.recipe()
    assert cfg.run == tmp_path / "demo-ctc-conformer-small"
    assert recipe == {**DEMO_TRAIN["ctc"], **DEMO_PRESETS[("ctc", "conformer-small")]}
    assert recipe["preset"] == "conformer-small" and DemoConfig(model="las").recipe() == DEMO_TRAIN["las"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(ROOT / "cli.py"), "demo", "--preset", "huge", "--runs",
                           str(tmp_path), "--data", str(tmp_path / "data"), "--shards", str(tmp_path / "shards")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().endswith("the ctc demo has no preset 'huge' (choose from conformer-small, conformer-small-streaming)")
    assert not (tmp_path / "data").exists()  # refused before the first stage


@pytest.mark.parametrize("options", [{"subsampling": 4}, {"subsampling": 8}, {"layer_scale": 0.1}])
def test_onnx_export_of_a_conformer_matches_pytorch(options):
    """`asr-cli export`'s graph and check (onnxruntime against PyTorch on utterances of
    different lengths) take the Conformer too."""
    torch.manual_seed(0)
    model = build_model(model_config("ctc", "conformer-tiny", 12, 80, options)).eval()
    assert check(model, graph_bytes(model, 80), 80) < 1e-4
