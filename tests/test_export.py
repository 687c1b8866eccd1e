"""asr-cli export: a CTC checkpoint -> ONNX; onnxruntime gives PyTorch's log-probs, lengths and
greedy transcripts (transcribe and eval, as real processes); LAS, corrupt and foreign files get
one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from asr.inference.evaluate import UTTERANCES_FILE, EvalConfig, evaluate
from asr.inference.loading import open_model as load_model  # a checkpoint or an .onnx
from asr.inference.onnx_model import METADATA_KEY, OnnxCTCModel, from_jsonable, jsonable
from asr.training.loop import TrainConfig, train
from cli import app
from conftest import LANG, ROOT


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], capture_output=True, text=True,
                          timeout=300)


def train_untrained(shards_dir: Path, out: Path, model: str = "ctc", options: dict | None = None) -> Path:
    """A checkpoint one step (at a negligible learning rate) away from its seeded initial
    weights: such a model spells a long arbitrary string for any clip, different per clip (a
    few dozen steps only teach it to say nothing), so transcripts have something to compare."""
    train(TrainConfig(shards=str(shards_dir), out=str(out), model=model, preset="tiny",
                      model_options=options or {}, max_steps=1, warmup=0, lr=1e-9, batch_frames=4000,
                      eval_every=0, workers=0, progress=False))
    return out / "last.pt"


# packed BiGRU (the tiny preset, like `lab`), and padded BiLSTM layers with LayerNorm (the
# `small` preset's construction, pack=False, with an LSTM)
VARIANTS = {"packed-gru": {}, "padded-lstm-ln": {"pack": False, "layer_norm": True, "rnn": "lstm", "rnn_layers": 2}}


@pytest.fixture(scope="module", params=list(VARIANTS))
def exported(request, shards_dir, tmp_path_factory) -> tuple[Path, Path]:
    """(checkpoint, model.onnx made from it by `asr-cli export` run as a process)."""
    out = tmp_path_factory.mktemp(f"export-{request.param}")
    ckpt = train_untrained(shards_dir, out / "run", options=VARIANTS[request.param])
    onnx_path = out / "model.onnx"
    done = cli("export", "--checkpoint", str(ckpt), "--out", str(onnx_path))
    assert done.returncode == 0, done.stderr
    assert f"wrote {onnx_path} (" in done.stdout and "checked against PyTorch" in done.stdout
    assert done.stderr == ""  # none of the exporter's warnings reach the user
    return ckpt, onnx_path


def test_log_probs_and_lengths_equal_pytorch_for_any_batch_and_length(exported):
    ckpt, onnx_path = exported
    by_pt, by_onnx = load_model(ckpt), load_model(onnx_path)  # LoadedModel: the same card either way
    torch_model, torch_tok, onnx_model, onnx_tok = by_pt.model, by_pt.tokenizer, by_onnx.model, by_onnx.tokenizer
    meta = by_onnx.meta
    assert isinstance(onnx_model, OnnxCTCModel) and onnx_model.kind == "ctc" and by_onnx.onnx and not by_pt.onnx
    assert onnx_tok.units == torch_tok.units
    assert meta["cmvn"] == jsonable(by_pt.card.cmvn) and meta["features"] == by_pt.card.features
    assert meta["lang"] == LANG and meta["step"] == 1 and meta["model"]["kind"] == "ctc"
    assert by_onnx.card.lang == by_pt.card.lang and by_onnx.step == by_pt.step == 1
    gen = torch.Generator().manual_seed(1)
    for lengths in ([301, 170, 45, 9], [64], [17, 230]):  # batch and time unlike the traced example's
        feats = torch.randn(len(lengths), max(lengths), 80, generator=gen)
        lens = torch.tensor(lengths)
        with torch.no_grad():
            ref, ref_lens = torch_model.log_probs(feats, lens)
        got, got_lens = onnx_model.log_probs(feats, lens)
        assert got.shape == ref.shape and got.dtype == torch.float32
        assert torch.equal(got_lens, ref_lens)
        for i, n in enumerate(ref_lens.tolist()):
            torch.testing.assert_close(got[i, :n], ref[i, :n], atol=1e-4, rtol=0)


def test_each_utterance_of_an_onnx_batch_gets_its_output_alone(exported):
    """Padded RNNs (`small`'s construction) too: the graph is traced in eval mode, which packs."""
    _, onnx_path = exported
    onnx_model = load_model(onnx_path).model
    gen = torch.Generator().manual_seed(2)
    lengths = [230, 97, 31]
    feats = torch.randn(len(lengths), max(lengths), 80, generator=gen)
    batched, lens = onnx_model.log_probs(feats, torch.tensor(lengths))
    for i, n in enumerate(lengths):
        alone, alone_lens = onnx_model.log_probs(feats[i: i + 1, :n], torch.tensor([n]))
        assert int(alone_lens[0]) == int(lens[i])
        torch.testing.assert_close(batched[i, : int(lens[i])], alone[0], atol=1e-4, rtol=0)


def test_sidecar_holds_what_decoding_needs(exported):
    _, onnx_path = exported
    side = json.loads(Path(str(onnx_path) + ".json").read_text(encoding="utf-8"))
    import onnx

    inside = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    assert json.loads(inside[METADATA_KEY]) == side
    assert side["tokenizer"]["kind"] == "char" and " " in side["tokenizer"]["vocab"]
    assert len(side["cmvn"]["mean"]) == len(side["cmvn"]["std"]) == 80
    assert side["features"]["n_mels"] == 80 and side["normalizer"] and side["lang"] == LANG
    assert side["model"]["preset"] == "tiny" and side["source"].endswith("last.pt")
    assert {"step", "dev_cer", "best_cer", "metrics"} <= set(side)


def test_greedy_transcripts_equal_the_checkpoints(exported, shards_dir, broken_root):
    """`asr-cli transcribe` with the .pt and with the .onnx: the same lines, clip by clip."""
    ckpt, onnx_path = exported
    rows = [r for r in pq.read_table(shards_dir / "index.parquet").to_pylist() if r["split"] in ("test", "dev")]
    clips = [str(broken_root / LANG / "clips" / r["path"]) for r in sorted(rows, key=lambda r: r["id"])][:8]
    assert len(clips) >= 6
    by_pt = cli("transcribe", "--device", "cpu", "--checkpoint", str(ckpt), *clips)
    by_onnx = cli("transcribe", "--device", "cpu", "--checkpoint", str(onnx_path), *clips)
    assert by_pt.returncode == by_onnx.returncode == 0, by_onnx.stderr
    lines = by_pt.stdout.splitlines()
    assert len(lines) == len(clips) and all(lines) and len(set(lines)) == len(lines)  # something to compare
    assert by_onnx.stdout == by_pt.stdout
    beam = [cli("transcribe", "--device", "cpu", "--beam", "4", "--checkpoint", str(c), *clips[:3]).stdout
            for c in (ckpt, onnx_path)]
    assert beam[0] == beam[1] and len(beam[0].splitlines()) == 3  # the beam search decodes it too
    # word timestamps: the ONNX model knows its frame rate
    words = [[json.loads(line)["words"] for line in cli("transcribe", "--device", "cpu", "--format", "json",
                                                         "--checkpoint", str(c), *clips[:3]).stdout.splitlines()]
             for c in (ckpt, onnx_path)]
    assert any(words[0]) and [[(w["word"], w["start"], w["end"]) for w in f] for f in words[0]] == [
        [(w["word"], w["start"], w["end"]) for w in f] for f in words[1]]


def test_eval_takes_the_onnx_model(exported, shards_dir, tmp_path):
    ckpt, onnx_path = exported
    hyps = {}
    for name, path in (("pt", ckpt), ("onnx", onnx_path)):
        summary = evaluate(EvalConfig(path, shards_dir, "dev", out=tmp_path / name, workers=0, threads=1,
                                      progress=False))
        lines = (tmp_path / name / UTTERANCES_FILE).read_text(encoding="utf-8").splitlines()
        hyps[name] = ({r["id"]: r["hypothesis"] for r in map(json.loads, lines)}, summary["cer"])
    assert hyps["onnx"] == hyps["pt"] and len(hyps["pt"][0]) >= 3


@pytest.fixture(scope="module")
def las_ckpt(shards_dir, tmp_path_factory) -> Path:
    return train_untrained(shards_dir, tmp_path_factory.mktemp("las") / "run", model="las")


def test_a_las_checkpoint_gets_one_line(las_ckpt, tmp_path):
    out = tmp_path / "las.onnx"
    done = cli("export", "--checkpoint", str(las_ckpt), "--out", str(out))
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == f"export supports CTC and transducer models; {las_ckpt} holds a LAS model\n"
    assert list(tmp_path.iterdir()) == []


def test_bad_arguments_get_one_line(exported, tmp_path):
    ckpt, onnx_path = exported
    cases = [(["--checkpoint", str(ckpt), "--out", str(tmp_path / "model.bin")], "must end in .onnx"),
             (["--checkpoint", str(tmp_path / "absent.pt"), "--out", str(tmp_path / "m.onnx")], "does not exist"),
             (["--checkpoint", str(onnx_path), "--out", str(tmp_path / "m.onnx")], "is already an ONNX model")]
    for args, message in cases:
        result = CliRunner().invoke(app, ["export", *args])
        assert result.exit_code == 1, result.output
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
        assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_corrupt_or_foreign_onnx_files_get_one_line_naming_them(exported, shards_dir, broken_root, tmp_path):
    _, onnx_path = exported
    import onnx

    row = next(r for r in pq.read_table(shards_dir / "index.parquet").to_pylist() if r["split"] == "test")
    audio = str(broken_root / LANG / "clips" / row["path"])
    data = onnx_path.read_bytes()
    garbage, truncated, foreign = tmp_path / "garbage.onnx", tmp_path / "truncated.onnx", tmp_path / "foreign.onnx"
    garbage.write_bytes(np.random.default_rng(0).bytes(5000))
    truncated.write_bytes(data[: len(data) // 2])
    proto = onnx.load(str(onnx_path))
    del proto.metadata_props[:]  # a valid ONNX model that `asr-cli export` did not make
    onnx.save(proto, str(foreign))
    cases = [(garbage, "is not a readable ONNX model"), (truncated, "is not a readable ONNX model"),
             (foreign, "is an ONNX model, but not one made by `asr-cli export`"),
             (tmp_path / "absent.onnx", "does not exist")]
    for path, message in cases:
        done = cli("transcribe", "--device", "cpu", "--checkpoint", str(path), audio)
        assert done.returncode == 1 and done.stdout == "", done.stdout
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and str(path) in lines[0] and message in lines[0], done.stderr


def test_an_export_the_check_refuses_writes_nothing(exported, tmp_path, monkeypatch):
    """A model whose ONNX graph disagrees with PyTorch (made here by perturbing the graph's
    output) is refused with one line, and no file is left."""
    import asr.inference.export as export

    ckpt, _ = exported
    real = export.graph_bytes

    def perturbed(model, n_mels):
        import onnx
        from onnx import helper, numpy_helper

        proto = onnx.load_from_string(real(model, n_mels))
        out = proto.graph.output[0].name
        for node in proto.graph.node:  # add 0.5 to the log-probs
            node.output[:] = [o + "_raw" if o == out else o for o in node.output]
        proto.graph.initializer.append(numpy_helper.from_array(np.float32(0.5), "half"))
        proto.graph.node.append(helper.make_node("Add", [out + "_raw", "half"], [out]))
        return proto.SerializeToString()

    monkeypatch.setattr(export, "graph_bytes", perturbed)
    result = CliRunner().invoke(app, ["export", "--checkpoint", str(ckpt), "--out", str(tmp_path / "m.onnx")])
    assert result.exit_code == 1
    assert "log-probs differ from PyTorch's by up to 0.5" in result.stderr
    assert "this model cannot be exported" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []

    def broken(model, n_mels):
        raise RuntimeError("Exporting the operator 'aten::foo' to ONNX opset version 17 is not supported.\nmore")

    monkeypatch.setattr(export, "graph_bytes", real)
    monkeypatch.setattr(torch.onnx, "export", lambda *a, **k: broken(None, 0))
    result = CliRunner().invoke(app, ["export", "--checkpoint", str(ckpt), "--out", str(tmp_path / "m.onnx")])
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith(f"torch.onnx cannot export {ckpt} (RuntimeError: Exporting the operator")
    assert list(tmp_path.iterdir()) == []


def test_metadata_survives_bytes_and_non_finite_numbers():
    state = {"kind": "unigram", "model_proto": b"\x00\x01proto", "best": float("inf"), "t": (1, 2)}
    back = from_jsonable(json.loads(json.dumps(jsonable(state), allow_nan=False)))
    assert back == {"kind": "unigram", "model_proto": b"\x00\x01proto", "best": None, "t": [1, 2]}
