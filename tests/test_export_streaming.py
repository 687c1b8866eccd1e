"""asr-cli export --streaming: one chunk step of a streaming Conformer with its caches as inputs
and outputs; `Recognizer.load(model.onnx).stream()` runs it with onnxruntime and gives PyTorch's
partials and final text (at the exported chunk and at another: the chunk is a dynamic axis),
its caches round trip chunk after chunk, a whole-file decode (transcribe, eval) of it is the
chunk-masked PyTorch decode, and the refusals are one line each."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from test_streaming import fed, masked_text, speech
from typer.testing import CliRunner

from asr import Recognizer
from asr.inference.evaluate import UTTERANCES_FILE, EvalConfig, evaluate
from asr.inference.loading import open_model
from asr.inference.onnx_model import STREAM_INPUTS, STREAM_OUTPUTS, OnnxStreamingCTCModel, encoder_frames
from asr.inference.streaming import NOT_LAST, TorchChunkRunner, left_frames, mask_chunks, stream_file
from cli import app

EXPORT_MS = 640  # the chunk the tests export at (16 encoder frames)
OTHER_MS = 160  # a chunk the graph was not traced at
# a conformer-tiny streaming model as conftest's `streaming_ckpt` makes it, and a variant of it with
# two output frames per encoder frame and two chunks of left context (a cache whose length is the chunk's)
VARIANTS = {"tiny": {}, "upsample2-left2": {"upsample": 2, "left_chunks": 2}}


def invoke(*args) -> object:
    return CliRunner().invoke(app, [str(a) for a in args])


def variant_ckpt(streaming_ckpt: Path, options: dict, out: Path) -> Path:
    """`streaming_ckpt` with model `options` changed and fresh seeded weights (chatty: it spells
    a long string for any clip)."""
    if not options:
        return streaming_ckpt
    from asr.nets.models import build_model
    from asr.store import checkpoint

    ckpt = checkpoint.load(streaming_ckpt)
    ckpt["model"] = {**ckpt["model"], "options": {**ckpt["model"]["options"], **options}}
    torch.manual_seed(1)
    weights = build_model(ckpt["model"]).state_dict()
    weights["head.weight"] *= 30
    weights["encoder.front.proj.weight"] *= 3
    ckpt["state_dict"] = weights
    path = out / "variant.pt"
    checkpoint.save(path, {k: v for k, v in ckpt.items() if k != "format"})
    return path


@pytest.fixture(scope="module", params=list(VARIANTS))
def exported(request, streaming_ckpt, tmp_path_factory) -> tuple[Path, Path]:
    """(checkpoint, its streaming export by `asr-cli export --streaming --chunk-ms 640`)."""
    out = tmp_path_factory.mktemp(f"export-stream-{request.param}")
    ckpt = variant_ckpt(streaming_ckpt, VARIANTS[request.param], out)
    onnx_path = out / "model.onnx"
    result = invoke("export", "--checkpoint", ckpt, "--out", onnx_path, "--streaming", "--chunk-ms", EXPORT_MS)
    assert result.exit_code == 0, result.output
    assert f"wrote {onnx_path} (" in result.stdout and "caches carried" in result.stdout
    assert "chunk 640 ms (16 encoder frames" in result.stdout and result.stderr == ""
    return ckpt, onnx_path


def test_metadata_and_graph_say_what_streams(exported):
    ckpt, onnx_path = exported
    import onnx

    torch_model = open_model(ckpt).model
    side = json.loads(Path(str(onnx_path) + ".json").read_text(encoding="utf-8"))
    proto = onnx.load(str(onnx_path))
    assert json.loads({p.key: p.value for p in proto.metadata_props}["cv-asr"]) == side
    cfg = torch_model.encoder.cfg
    assert side["streaming"] is True and side["chunk_ms"] == 640 and side["chunk"] == 16
    assert side["left_chunks"] == cfg.left_chunks and side["left"] == left_frames(torch_model, 16)
    assert side["left"] == (32 if cfg.left_chunks == 2 else 500)  # 2 chunks, or 20 s of 40 ms frames
    assert side["time_reduction"] == 4 and side["upsample"] == torch_model.upsample
    assert {"tokenizer", "cmvn", "features", "normalizer", "lang", "model"} <= set(side)
    assert tuple(i.name for i in proto.graph.input) == STREAM_INPUTS
    assert tuple(o.name for o in proto.graph.output) == STREAM_OUTPUTS
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in proto.graph.input}
    assert dims["window"] == [1, "window", 80] and dims["offset"] == [] and dims["total"] == []
    assert dims["att_cache"] == [cfg.blocks, 2, 1, cfg.heads, "left", cfg.d_model // cfg.heads]
    assert dims["conv_cache"] == [cfg.blocks, 1, cfg.d_model, cfg.conv_kernel - 1]
    out_dims = {o.name: [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in proto.graph.output}
    assert out_dims["log_probs"] == ["frames", side["model"]["vocab_size"]] and out_dims["valid"] == ["frames"]
    assert out_dims["next_att_cache"] == dims["att_cache"] and out_dims["next_conv_cache"] == dims["conv_cache"]
    model = open_model(onnx_path).model
    assert isinstance(model, OnnxStreamingCTCModel) and model.kind == "ctc" and model.streaming
    assert model.time_reduction == 4 and model.upsample == torch_model.upsample and list(model.parameters()) == []


@pytest.mark.parametrize("chunk_ms", [EXPORT_MS, OTHER_MS])
def test_onnx_stream_gives_pytorchs_partials_and_final_text(exported, broken_root, chunk_ms):
    """The same clips in the same blocks through `rec.stream()` of the .pt and of the .onnx: the
    same partial after every block, the same final text and word times."""
    ckpt, onnx_path = exported
    by_pt = Recognizer.load(ckpt, device="cpu", chunk_ms=chunk_ms)
    by_onnx = Recognizer.load(onnx_path, device="cpu", chunk_ms=chunk_ms)
    assert by_onnx.streaming
    spelt = 0
    for clip in speech(broken_root, 2):
        wave, rate = sf.read(clip, dtype="float32")
        pt_session, onnx_session = by_pt.stream(), by_onnx.stream()
        want_partials, want = fed(pt_session, wave, rate, 4800)
        got_partials, got = fed(onnx_session, wave, rate, 4800)
        assert [p.text for p in got_partials] == [p.text for p in want_partials], clip.name
        assert got == want, clip.name
        assert onnx_session.chunks == pt_session.chunks > 2
        spelt += len(want)
        assert any(p.text and len(p.text) < len(want) for p in want_partials)  # partials grow before the end
    assert spelt > 20  # the chatty model spells something: there is text to disagree on
    clip = speech(broken_root, 1)[0]
    words = [[(w.word, w.start, w.end) for w in stream_file(r.stream(), clip).words] for r in (by_pt, by_onnx)]
    assert words[0] and words[1] == words[0]


def test_caches_round_trip_chunk_after_chunk(exported):
    """The ONNX runner's log-probs of every chunk k (and its caches) equal PyTorch's, each chunk
    fed the caches the previous one returned; a runner that forgets its caches differs, so the
    caches carry what the chunks need."""
    ckpt, onnx_path = exported
    torch_model = open_model(ckpt).model
    onnx_model = open_model(onnx_path).model
    chunk, t = 8, 4 * 8 * 5 + 13  # 5 chunks and a partial one
    feats = np.random.default_rng(0).standard_normal((t, 80)).astype(np.float32)
    padded = np.concatenate([np.zeros((3, 80), np.float32), feats, np.zeros((4 * chunk + 3, 80), np.float32)])
    ref = TorchChunkRunner(torch_model, chunk, left_frames(torch_model, chunk))
    got, forgetful = onnx_model.chunk_runner(chunk), onnx_model.chunk_runner(chunk)
    assert got.att.shape == tuple(ref.att.shape) and got.conv.shape == tuple(ref.conv.shape)
    forgot = 0.0
    offsets = list(range(0, encoder_frames(t), chunk))
    for k, offset in enumerate(offsets):
        window = padded[4 * offset: 4 * offset + 4 * chunk + 3]
        total = t if k == len(offsets) - 1 else NOT_LAST
        want, lp = ref.step(window, offset, total), got.step(window, offset, total)
        assert lp.shape == want.shape and lp.dtype == torch.float32
        assert len(lp) == (chunk if k < len(offsets) - 1 else encoder_frames(t) - offset) * torch_model.upsample
        torch.testing.assert_close(lp, want, atol=1e-4, rtol=0)
        np.testing.assert_allclose(got.att, ref.att.numpy(), atol=1e-4, rtol=0)
        np.testing.assert_allclose(got.conv, ref.conv.numpy(), atol=1e-4, rtol=0)
        forgetful.reset()
        forgot = max(forgot, float((forgetful.step(window, offset, total) - want).abs().max()))
    assert forgot > 1e-2
    got.reset()
    first = padded[: 4 * chunk + 3]
    torch.testing.assert_close(got.step(first, 0, NOT_LAST), TorchChunkRunner(torch_model, chunk, ref.left).step(
        first, 0, NOT_LAST), atol=1e-4, rtol=0)  # reset starts a stream again


def test_whole_file_decode_of_the_onnx_is_the_chunk_masked_decode(exported, broken_root):
    """`transcribe` (and log_probs of a batch) of a streaming export runs the chunk graph over
    each file with the exported chunk: the PyTorch model's under `mask_chunks(640)`, which is not
    its full-context decode."""
    ckpt, onnx_path = exported
    by_pt = Recognizer.load(ckpt, device="cpu")
    by_onnx = Recognizer.load(onnx_path, device="cpu")
    clips = speech(broken_root, 3)
    differs = 0
    for clip in clips:
        want = masked_text(by_pt, clip, EXPORT_MS)
        assert by_onnx.transcribe(clip).text == want and want, clip.name
        differs += by_pt.transcribe(clip).text != want
    assert differs  # full context is another decode
    torch_model, onnx_model = by_pt.transcriber.model, by_onnx.transcriber.model
    gen = torch.Generator().manual_seed(3)
    lengths = torch.tensor([301, 64, 9])
    feats = torch.randn(3, 301, 80, generator=gen)
    mask_chunks(torch_model, EXPORT_MS)
    try:
        with torch.no_grad():
            ref, ref_lens = torch_model.log_probs(feats, lengths)
    finally:
        mask_chunks(torch_model, None)
    got, got_lens = onnx_model.log_probs(feats, lengths)
    assert torch.equal(got_lens, ref_lens) and got.shape == ref.shape
    for i, n in enumerate(ref_lens.tolist()):
        torch.testing.assert_close(got[i, :n], ref[i, :n], atol=1e-4, rtol=0)


def test_eval_of_the_onnx_equals_eval_chunk_ms_of_the_checkpoint(exported, shards_dir, tmp_path):
    ckpt, onnx_path = exported
    hyps = {}
    for name, path, chunk_ms in (("pt", ckpt, EXPORT_MS), ("onnx", onnx_path, None)):
        evaluate(EvalConfig(path, shards_dir, "dev", out=tmp_path / name, workers=0, threads=1, progress=False,
                            chunk_ms=chunk_ms))
        lines = (tmp_path / name / UTTERANCES_FILE).read_text(encoding="utf-8").splitlines()
        hyps[name] = {r["id"]: r["hypothesis"] for r in map(json.loads, lines)}
    assert hyps["onnx"] == hyps["pt"] and len(hyps["pt"]) >= 3 and any(hyps["pt"].values())


def test_transcribe_stream_cli_takes_the_onnx(exported, broken_root):
    """`asr-cli transcribe --stream --checkpoint model.onnx` prints the PyTorch stream's text."""
    ckpt, onnx_path = exported
    clips = speech(broken_root, 2)
    result = invoke("transcribe", "--device", "cpu", "--stream", "--chunk-ms", 320, "--checkpoint", onnx_path, *clips)
    assert result.exit_code == 0, result.output
    rec = Recognizer.load(ckpt, device="cpu", chunk_ms=320)
    want = [stream_file(rec.stream(), clip).text for clip in clips]
    assert result.stdout.splitlines() == want and all(want)


def test_refusals_are_one_line(streaming_ckpt, chatty_ckpt, tmp_path):
    cases = [(["--checkpoint", chatty_ckpt, "--streaming"], 1, f"--streaming: {chatty_ckpt} was not trained with "
                                                               "--streaming"),
             (["--checkpoint", streaming_ckpt, "--chunk-ms", 640], 1, "--chunk-ms is the chunk of a streaming export: "
                                                                      "give --streaming too"),
             (["--checkpoint", streaming_ckpt, "--streaming", "--chunk-ms", 10], 2, "--chunk-ms: 10.0 is out of range")]
    for args, code, message in cases:
        result = invoke("export", "--out", tmp_path / "m.onnx", *args)
        assert result.exit_code == code, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(message), result.stderr
        assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_a_plain_export_does_not_stream_and_runners_refuse_a_wrong_window(exported, chatty_ckpt, tmp_path):
    """A whole-utterance export of a non-streaming model is no stream; a streaming export's
    runner takes windows of its own chunk only, and chunks of one frame and up."""
    plain = tmp_path / "plain.onnx"
    assert invoke("export", "--checkpoint", chatty_ckpt, "--out", plain).exit_code == 0
    rec = Recognizer.load(plain, device="cpu")
    assert not rec.streaming
    with pytest.raises(ValueError, match="--streaming"):
        rec.stream()
    model = open_model(exported[1]).model
    runner = model.chunk_runner(4)
    with pytest.raises(ValueError, match="a window of 67 frames for a chunk of 4 encoder frames .it takes 19."):
        runner.step(np.zeros((67, 80), np.float32), 0, NOT_LAST)
    with pytest.raises(ValueError, match="at least one encoder frame"):
        model.chunk_runner(0)


def test_an_export_the_check_refuses_writes_nothing(streaming_ckpt, tmp_path, monkeypatch):
    """A chunk graph that disagrees with PyTorch (its log-probs perturbed here) is refused in one
    line and no file is left."""
    import onnx
    from onnx import helper, numpy_helper

    import asr.inference.export as export

    real = export.chunk_graph_bytes

    def perturbed(*args):
        proto = onnx.load_from_string(real(*args))
        for node in proto.graph.node:  # log_probs + 0.5
            node.output[:] = [o + "_raw" if o == "log_probs" else o for o in node.output]
        proto.graph.initializer.append(numpy_helper.from_array(np.float32(0.5), "half"))
        proto.graph.node.append(helper.make_node("Add", ["log_probs_raw", "half"], ["log_probs"]))
        return proto.SerializeToString()

    monkeypatch.setattr(export, "chunk_graph_bytes", perturbed)
    result = invoke("export", "--checkpoint", streaming_ckpt, "--out", tmp_path / "m.onnx", "--streaming")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "log-probs differ from PyTorch's by up to 0.5" in lines[0]
    assert "a stream in chunks of 16 and 1" in lines[0] and "this model cannot be exported" in lines[0]
    assert list(tmp_path.iterdir()) == []
