"""The transducer (`--model rnnt`: asr/nets/transducer.py, rnnt_loss.py, asr/decoding/transducer.py):
its loss against torchaudio's, pruning and memory bounds, a tiny model that learns a handful of
clips (greedy, beam, beam + LM, word times, batch invariance, the safe checkpoint), live streams
equal to the chunk-masked whole file, and ONNX equal to PyTorch."""

from __future__ import annotations

from pathlib import Path

import jiwer
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from asr.data.loader import LoaderConfig, ShardStream
from asr.decoding.decoder import DecodeOptions, Decoder
from asr.decoding.timestamps import emitted_words
from asr.inference.api import Recognizer
from asr.inference.export import export_onnx
from asr.inference.streaming import mask_chunks, stream_file
from asr.nets.models import build_model, model_config
from asr.nets.rnnt_loss import lattice_nll, pruned_ranges, simple_loss, unit_arcs
from asr.nets.transducer import joint_groups
from asr.store import checkpoint
from asr.tokens.tokenizer import CharTokenizer
from asr.training.loop import TrainConfig, train
from cli import app
from conftest import LANG
from pipeline.shardformat import ShardSet

# a Conformer small enough to learn 6 clips in ~150 steps on a CPU (conformer-tiny's d 32 does not)
LEARNER = dict(d_model=96, blocks=2, heads=4, conv_channels=16, ff_mult=2, pred_dim=64, joint_dim=96, dropout=0.0)
STEPS = 150


def first_step(shards: Path, out: Path, options: dict) -> Path:
    """A transducer checkpoint one step (at a negligible learning rate) from its seeded weights:
    its card (features, CMVN, units) is what the tests then give other weights."""
    train(TrainConfig(shards=str(shards), out=str(out), model="rnnt", preset="conformer-tiny", model_options=options,
                      max_steps=1, warmup=0, lr=1e-9, batch_frames=4000, eval_every=0, workers=0, progress=False,
                      ctc_weight=0.0, threads=1))
    return out / "last.pt"


def with_weights(ckpt: Path, weights: dict, out: Path) -> Path:
    payload = checkpoint.load(ckpt)
    payload["state_dict"] = weights
    checkpoint.save(out, {k: v for k, v in payload.items() if k != "format"})
    return out


@pytest.fixture(scope="module")
def learnt(handful_shards, tmp_path_factory) -> dict:
    """conformer-tiny widened (LEARNER), trained STEPS steps on the 6 clips of `handful_shards`
    (one batch, Adam, lr 3e-3, the model's own losses and pruned RNN-T warm-up): it spells them."""
    out = tmp_path_factory.mktemp("rnnt-learnt")
    ckpt = first_step(handful_shards, out / "run", LEARNER)
    shards = ShardSet.open(handful_shards)
    tok = CharTokenizer(shards.vocab)
    batch = next(iter(ShardStream(shards.urls("train"), tok, shards.cmvn, LoaderConfig(batch_frames=10**5, workers=0),
                                  train=False)))
    torch.manual_seed(0)
    model = build_model(checkpoint.load(ckpt)["model"])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # ~0.09 s a step alone; two threads on busy cores spin: 10x slower
    try:
        for step in range(1, STEPS + 1):
            model.on_step(step, STEPS)
            loss = model(batch)["loss"]
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
    finally:
        torch.set_num_threads(threads)
    rows = sorted((r for r in pq.read_table(handful_shards / "index.parquet").to_pylist() if r["split"] == "train"),
                  key=lambda r: r["id"])
    root = Path(str(shards.dataset["build"]["cv_root"])) / LANG / "clips"
    return {"ckpt": with_weights(ckpt, model.state_dict(), out / "learnt.pt"), "batch": batch, "tok": tok,
            "clips": [root / f"{r['id']}.mp3" for r in rows], "texts": [r["text"] for r in rows]}


def random_lattice(b=5, t=30, u=12, v=10, seed=0):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, t, u + 1, v, generator=gen, requires_grad=True)
    targets = torch.randint(1, v, (b, u), generator=gen)
    t_lens = torch.randint(u // 2 + 2, t + 1, (b,), generator=gen)
    u_lens = torch.randint(1, u + 1, (b,), generator=gen)
    t_lens[0], u_lens[0] = t, u
    return logits, targets, t_lens, u_lens


def lattice_of(logits, targets, u_lens, starts=None):
    """(y, blank) arcs of `logits` [B, T, U + 1 or S, V] at the nodes `starts` + k (None: all)."""
    b, t, s, _ = logits.shape
    u_index = torch.arange(s)[None, None].expand(b, t, s) + (0 if starts is None else starts[:, :, None])
    next_unit = torch.cat([targets, targets.new_zeros(b, 1)], 1).gather(1, u_index.clamp(max=targets.shape[1])
                                                                        .reshape(b, -1)).reshape(b, t, s)
    norm = torch.logsumexp(logits, -1)
    return unit_arcs(logits.gather(3, next_unit[..., None]).squeeze(3), norm, u_index, u_lens), logits[..., 0] - norm


def test_the_lattice_loss_is_torchaudios_rnnt_loss():
    from torchaudio.functional import rnnt_loss

    logits, targets, t_lens, u_lens = random_lattice()
    ref = rnnt_loss(logits, targets.int(), t_lens.int(), u_lens.int(), blank=0, reduction="none")
    ours = lattice_nll(*lattice_of(logits, targets, u_lens), None, t_lens, u_lens)
    assert torch.allclose(ours, ref, atol=1e-4)
    g_ref, g_ours = (torch.autograd.grad(x.sum(), logits)[0] for x in (ref, ours))
    assert torch.allclose(g_ours, g_ref, atol=1e-4)
    # the simple loss is the loss of the joiner am[t] + lm[u] (without its lm-only smoothing)
    am, lm = torch.randn(5, 30, 10), torch.randn(5, 13, 10)
    simple, occupation = simple_loss(am, lm, targets, t_lens, u_lens, 0, lm_only_scale=0.0)
    ref = rnnt_loss((am[:, :, None] + lm[:, None]).contiguous(), targets.int(), t_lens.int(), u_lens.int(), blank=0,
                    reduction="none")
    assert torch.allclose(simple, ref, atol=1e-4)
    assert occupation.shape == (5, 30, 13) and (occupation >= -1e-4).all()  # (float rounding)


def test_pruned_windows_keep_a_path_and_bound_the_loss():
    logits, targets, t_lens, u_lens = random_lattice(seed=1)
    _, occupation = simple_loss(torch.randn(5, 30, 10), torch.randn(5, 13, 10), targets, t_lens, u_lens, 0)
    full = lattice_nll(*lattice_of(logits, targets, u_lens), None, t_lens, u_lens)
    for s in (3, 5, 13):
        starts = pruned_ranges(occupation, t_lens, u_lens, s)
        steps = starts[:, 1:] - starts[:, :-1]
        assert (starts[:, 0] == 0).all() and (steps >= 0).all() and (steps <= s - 1).all()
        last = starts[torch.arange(5), t_lens - 1]
        assert ((last <= u_lens) & (u_lens < last + s)).all()  # the last frame's window holds the end
        window = logits.gather(2, (starts[:, :, None] + torch.arange(s)).clamp(max=12)[..., None].expand(-1, -1, -1, 10))
        pruned = lattice_nll(*lattice_of(window, targets, u_lens, starts), starts, t_lens, u_lens)
        assert torch.isfinite(pruned).all() and (pruned >= full - 1e-4).all()  # fewer paths: less probable
        if s == 13:  # the window is the whole lattice
            assert torch.allclose(pruned, full, atol=1e-4)


def test_the_full_joint_in_bounded_groups_is_one_groups_loss():
    tok = CharTokenizer(list(" abcdefgh"))
    torch.manual_seed(0)
    model = build_model(model_config("rnnt", "conformer-tiny", len(tok), 80, {"loss": "full"}))
    batch = type("B", (), {})()
    batch.feats, batch.feat_lens = torch.randn(4, 120, 80), torch.tensor([120, 100, 64, 40])
    batch.targets, batch.target_lens = torch.randint(2, len(tok), (4, 9)), torch.tensor([9, 5, 7, 2])
    assert [len(g) for g in joint_groups(torch.tensor([30, 25, 16, 10]), batch.target_lens, 30 * 10 * 2)] == [2, 2]
    losses, grads = [], []
    for cells in (10**9, 400):  # one group; then groups of at most 400 cells, recomputed in the backward pass
        model.joint_cells = cells
        model.zero_grad()
        loss = model(batch)["loss"]
        loss.backward()
        losses.append(loss.detach())
        grads.append(model.joiner.out.weight.grad.clone())
    assert torch.allclose(losses[0], losses[1], atol=1e-5) and torch.allclose(grads[0], grads[1], atol=1e-5)


def test_a_tiny_transducer_learns_a_handful_and_decodes_them(learnt):
    """Greedy spells the 6 clips (from their MP3s); beam and beam + the clips' LM do no worse;
    beam 1 (one unit a frame) is greedy with one unit a frame; the words have emission times."""
    rec = Recognizer.load(learnt["ckpt"], device="cpu")
    greedy = [rec.transcribe(c) for c in learnt["clips"]]
    cer = jiwer.cer(learnt["texts"], [t.text for t in greedy])
    assert cer <= 0.03, [t.text for t in greedy]
    beam = [rec.with_options(beam=4).transcribe(c).text for c in learnt["clips"]]
    assert jiwer.cer(learnt["texts"], beam) <= cer
    one = [rec.with_options(beam=1, max_symbols=1).transcribe(c).text for c in learnt["clips"]]
    assert one == [rec.with_options(max_symbols=1).transcribe(c).text for c in learnt["clips"]]
    assert rec.transcriber.window_s is not None  # its words have times: long files go window by window
    for t in greedy:
        times = [(w.start, w.end) for w in t.words]
        assert all(a is not None and 0 <= a < b <= t.duration + 0.05 for a, b in times), times
        assert [a for a, _ in times] == sorted(a for a, _ in times)


def test_beam_with_the_word_lm_fuses_it(learnt, handful_shards, tmp_path):
    from asr.decoding.lm import build_lm_from_shards

    arpa = tmp_path / "lm.arpa"
    build_lm_from_shards(handful_shards, 3, arpa)
    rec = Recognizer.load(learnt["ckpt"], device="cpu", lm=arpa)
    texts = [rec.transcribe(c).text for c in learnt["clips"]]
    assert jiwer.cer(learnt["texts"], texts) <= 0.03
    assert rec.transcriber.decoder.mode == "beam4-lm"
    # a heavy word score makes the search prefer more words: the LM terms reach the ranking
    wordy = rec.with_options(lm=arpa, lm_weight=0.0, word_score=50.0)
    assert sum(len(wordy.transcribe(c).text.split()) for c in learnt["clips"]) > sum(len(t.split()) for t in texts)


def test_a_word_off_the_lexicon_pays_the_unk_cost_where_it_leaves_it(learnt, tmp_path):
    from asr.decoding.scorers import WordLM
    from asr.decoding.transducer import BeamSearch

    arpa = tmp_path / "lm.arpa"
    arpa.write_text("\\data\\\nngram 1=4\nngram 2=2\n\n\\1-grams:\n-2.0\t<unk>\t0.0\n-99\t<s>\t0.0\n-1.0\t</s>\n"
                    "-0.5\tchat\t0.0\n\n\\2-grams:\n-0.3\t<s> chat\n-0.2\tchat </s>\n\n\\end\\\n")
    lm = WordLM(arpa)
    assert lm.unk_log10 == pytest.approx(-2.0)
    tok = CharTokenizer(list(" achtx"))
    model = Recognizer.load(learnt["ckpt"], device="cpu").transcriber.model
    search = BeamSearch(model, 4, lm, tok.units, DecodeOptions(lm_weight=1.5))
    charge = search._leaves_lexicon
    (a, c, h, t, x), space = (tok.encode(ch)[0] for ch in "achtx"), tok.encode(" ")[0]
    assert charge("", c) == charge("ch", a) == charge("cha", t) == 0.0  # "chat" all along
    assert charge("ch", x) == pytest.approx(-3.0)  # "chx": off here, 1.5 x log10 P(<unk>)
    assert charge("chx", t) == 0.0  # paid once per word
    assert charge("cha", space) == 0.0 and charge("", x) == pytest.approx(-3.0)  # a space: a word starts
    # ending an off-lexicon word refunds the charge: the LM's own <unk> score replaces it
    hyp = search.hyps[0]
    off = search._word_terms(type(hyp)(hyp.emitted, 0.0, 0.0, lm.start(), "chx", hyp.state, hyp.pred))[1]
    on = search._word_terms(type(hyp)(hyp.emitted, 0.0, 0.0, lm.start(), "chat", hyp.state, hyp.pred))[1]
    assert off == pytest.approx(1.5 * -2.0 + 1.0 + 3.0, abs=0.05) and on == pytest.approx(1.5 * -0.3 + 1.0, abs=0.05)


def test_each_utterance_of_a_batch_decodes_as_alone(learnt):
    batch = learnt["batch"]
    model = Recognizer.load(learnt["ckpt"], device="cpu").transcriber.model
    for options in (DecodeOptions(), DecodeOptions(beam=3)):
        decoder = Decoder(model, learnt["tok"], options)
        together = decoder(batch.feats, batch.feat_lens)
        alone = [decoder(batch.feats[i:i + 1, : batch.feat_lens[i]], batch.feat_lens[i:i + 1])[0]
                 for i in range(len(batch))]
        assert together == alone


def test_emitted_words_group_units_into_words():
    chars = CharTokenizer(list(" abc"))
    ids = chars.encode("ab c")
    words = emitted_words(ids, [2, 3, 5, 9], [0.5, 0.7, 0.9, 0.3], "ab c", chars, 0.04)
    assert [(w.word, w.start, w.end, w.score) for w in words] == [("ab", 0.08, 0.16, 0.6), ("c", 0.36, 0.4, 0.3)]
    assert [w.start for w in emitted_words(ids, [2, 3, 5, 9], [1.0] * 4, "ab c d", chars, 0.04)] == [None] * 3


def test_the_checkpoint_is_safetensors_and_loads_safely(learnt):
    from safetensors import safe_open

    with safe_open(str(learnt["ckpt"]), "pt") as f:
        assert all(k.startswith(("model/", "data/")) for k in f.keys())
        assert any(k.startswith("model/predictor.") for k in f.keys())
    payload = checkpoint.load(learnt["ckpt"])
    assert payload["model"]["kind"] == "rnnt" and payload["model"]["options"]["predictor"] == "stateless"


@pytest.fixture(scope="module")
def streaming(handful_shards, tmp_path_factory) -> Path:
    """A streaming conformer-tiny transducer with fresh seeded weights, its joiner's outputs made
    sharp, so it spells a long string for any clip (a wrong chunk, cache or state changes it)."""
    out = tmp_path_factory.mktemp("rnnt-stream")
    ckpt = first_step(handful_shards, out / "run", {"streaming": True})
    torch.manual_seed(0)
    weights = build_model(checkpoint.load(ckpt)["model"]).state_dict()
    weights["joiner.out.weight"] *= 8
    return with_weights(ckpt, weights, out / "chatty.pt")


@pytest.mark.parametrize("beam", [None, 3])
def test_a_stream_gives_the_masked_whole_file_text(streaming, learnt, beam):
    """rec.stream() at 320 ms = the whole file decoded under the 320 ms chunk mask; with
    endpoints every 400 ms the greedy text is still the same (the prediction network goes on
    across segments), and greedy partials only ever grow."""
    rec = Recognizer.load(streaming, device="cpu", chunk_ms=320, beam=beam)
    clip = learnt["clips"][0]
    mask_chunks(rec.transcriber.model, 320)
    whole = rec.transcribe(clip).text
    mask_chunks(rec.transcriber.model, None)
    partials = []
    streamed = stream_file(rec.stream(endpoint_ms=None), clip, on_partial=lambda p, s: partials.append(p.text))
    assert streamed.text == whole and len(whole) > 20
    if beam is None:
        assert all(b.startswith(a) for a, b in zip(partials, partials[1:]))
        segmented = stream_file(rec.stream(endpoint_ms=400), clip)
        assert segmented.text.replace(" ", "") == whole.replace(" ", "")
        assert all(w.start is not None for w in segmented.words)


def test_onnx_gives_pytorchs_text(learnt, streaming, tmp_path):
    """The learnt model's export: greedy and beam texts of the 6 clips equal PyTorch's; the
    streaming export streams as PyTorch does."""
    summary = export_onnx(learnt["ckpt"], tmp_path / "m.onnx")
    assert len(summary["graphs"]) == 2 and all(Path(p).is_file() for p in summary["graphs"])
    for beam in (None, 4):
        torch_rec = Recognizer.load(learnt["ckpt"], device="cpu", beam=beam)
        onnx_rec = Recognizer.load(tmp_path / "m.onnx", beam=beam)
        assert [onnx_rec.transcribe(c).text for c in learnt["clips"]] == \
            [torch_rec.transcribe(c).text for c in learnt["clips"]]
    export_onnx(streaming, tmp_path / "s.onnx", streaming=True, chunk_ms=320)
    clip = learnt["clips"][1]
    texts = [stream_file(Recognizer.load(p, device="cpu", chunk_ms=320).stream(), clip).text
             for p in (streaming, tmp_path / "s.onnx")]
    assert texts[0] == texts[1] and len(texts[0]) > 20
    (tmp_path / "m.joiner.onnx").unlink()
    with pytest.raises(checkpoint.CheckpointError, match="keep them together"):
        Recognizer.load(tmp_path / "m.onnx")


def test_train_takes_rnnt_options_and_refuses_others(shards_dir, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["train", "--shards", str(shards_dir), "--out", str(tmp_path / "c"), "--pred-dim", "8"])
    assert result.exit_code != 0 and "--pred-dim applies to --model rnnt only" in result.output
    result = runner.invoke(app, ["train", "--shards", str(shards_dir), "--out", str(tmp_path / "r"), "--model", "rnnt",
                                 "--upsample", "2"])
    assert result.exit_code != 0 and "--upsample applies to --model ctc only" in result.output
    result = runner.invoke(app, ["train", "--shards", str(shards_dir), "--out", str(tmp_path / "ok"), "--model", "rnnt",
                                 "--preset", "conformer-tiny", "--predictor", "lstm", "--max-steps", "2",
                                 "--eval-every", "2", "--eval-utts", "2", "--workers", "0", "--no-progress",
                                 "--batch-frames", "4000"])
    assert result.exit_code == 0, result.output
    assert checkpoint.load(tmp_path / "ok" / "best.pt")["model"]["options"]["predictor"] == "lstm"


def test_the_live_page_streams_a_transducer(streaming, learnt):
    """serve's WebSocket /stream with the streaming transducer: its "done" text is what
    Recognizer.stream() makes of the same 8 kHz blocks (short, slow-rate audio is what real
    callers send)."""
    import numpy as np
    import soundfile as sf
    import soxr
    from fastapi.testclient import TestClient

    from asr.apps.serve import ServeConfig, create_app
    from asr.decoding.options import LiveOptions

    x, sr = sf.read(learnt["clips"][2], dtype="float32")
    pcm = np.round(np.clip(soxr.resample(x, sr, 8000), -1, 1) * 32767).astype("<i2")
    blocks = [pcm[i: i + 2000] for i in range(0, len(pcm), 2000)]
    s = Recognizer.load(streaming, device="cpu", chunk_ms=320).stream()
    for b in blocks:
        s.accept(b, 8000)
    expected = s.finish().text
    with TestClient(create_app(ServeConfig(streaming, live=LiveOptions(chunk_ms=320)))) as c:
        with c.websocket_connect("/stream") as ws:
            ws.send_json({"type": "config", "sample_rate": 8000, "mode": "greedy"})
            assert ws.receive_json()["type"] == "ready"
            for b in blocks:
                ws.send_bytes(b.tobytes())
            ws.send_json({"type": "end"})
            messages = []
            while not messages or messages[-1]["type"] != "done":
                messages.append(ws.receive_json())
    assert messages[-1]["text"] == expected and len(expected) > 10

