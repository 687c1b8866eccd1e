"""Third robustness pass: crafted shards, crafted ONNX metadata, run folders, live sessions,
speakers, files. Each test reproduces what a hostile input or a misuse did before the pass
(the docstrings say what) and checks what a user gets now."""

from __future__ import annotations

import io
import json
import shutil
import struct
import subprocess
import sys
import tarfile
import zlib

import numpy as np
import pytest

from asr.data.loader import LoaderConfig, ShardStream
from asr.tokens.tokenizer import CharTokenizer
from conftest import ROOT
from pipeline.feature_codecs import CODECS, FeatureDecodeError, decode_features, encode_features
from pipeline.shardformat import ShardReadError, ShardSet, read_dataset

QD = CODECS["qdelta"]


def qdelta_member(frames: int, n_mels: int, step: float = 0.125, escapes: int = 0, payload: bytes | None = None) -> bytes:
    """A qdelta member whose header says what it is told to, with a valid CRC32."""
    import pyarrow as pa

    payload = pa.Codec("zstd").compress(payload if payload is not None else bytes(16), asbytes=True)
    head = struct.pack("<4sIIfI", b"QD1\0", frames, n_mels, step, escapes)
    return head + struct.pack("<I", zlib.crc32(payload, zlib.crc32(head))) + payload


def rewrite_first(tar_path, ext: str, data: bytes) -> str:
    """The tar with its first `ext` member replaced by `data`: that sample's key."""
    with tarfile.open(tar_path) as t:
        members = [(m, t.extractfile(m).read()) for m in t.getmembers()]
    key = None
    with tarfile.open(tar_path, "w", format=tarfile.USTAR_FORMAT) as t:
        for m, old in members:
            if key is None and m.name.endswith("." + ext):
                key, old = m.name.split(".")[0], data
                m.size = len(old)
            t.addfile(m, io.BytesIO(old))
    return key


def crafted_copy(shards_dir, tmp_path, data: bytes) -> tuple:
    root = tmp_path / "shards"
    shutil.copytree(shards_dir, root)
    tar = root / read_dataset(root)["splits"]["train"]["shards"][0]["path"]
    return root, tar, rewrite_first(tar, QD.member, data)


# --------------------------------------------------------------------------------------
# 1-2. crafted qdelta members
# --------------------------------------------------------------------------------------
def test_a_qdelta_bomb_is_refused_before_anything_is_allocated():
    """A 60-byte member whose valid-CRC header claimed 5 M frames x 80 made the readers
    allocate gigabytes (one 5.96 GiB array)."""
    bomb = qdelta_member(5_000_000, 80)
    assert len(bomb) < 100
    with pytest.raises(FeatureDecodeError, match="5000000 frames"):
        decode_features({QD.member: bomb})
    with pytest.raises(FeatureDecodeError, match="escapes"):
        decode_features({QD.member: qdelta_member(10, 80, escapes=10**9)})


@pytest.mark.parametrize("member, words", [
    (qdelta_member(100, 80, step=1e30), "step"),
    (qdelta_member(0, 80), "0 frames"),
])
def test_other_lying_qdelta_headers_are_refused(member, words):
    with pytest.raises(FeatureDecodeError, match=words):
        decode_features({QD.member: member})


def test_features_of_another_width_than_the_dataset_are_refused():
    ext, data = encode_features(np.zeros((50, 40), np.float16), "qdelta")
    assert decode_features({ext: data}).shape == (50, 40)  # alone, a valid member
    with pytest.raises(FeatureDecodeError, match="40 mel bins, the dataset 80"):
        decode_features({ext: data}, n_mels=80)
    ext, data = encode_features(np.zeros((50, 40), np.float16), "float16")
    with pytest.raises(FeatureDecodeError, match="40 mel bins, the dataset 80"):
        decode_features({ext: data}, n_mels=80)
    with pytest.raises(FeatureDecodeError, match="the index says 60"):
        decode_features({ext: data}, frames=60)


_LIMITED = """
import resource, sys
sys.path.insert(0, {root!r})
resource.setrlimit(resource.RLIMIT_AS, (1536 << 20, 1536 << 20))  # 1.5 GiB of address space
from pipeline.verify import verify
problems = verify({shards!r}, progress=False)
print("\\n".join(problems))
"""


def test_verify_train_and_eval_refuse_a_bomb_in_one_line_under_a_memory_limit(shards_dir, tmp_path):
    root, tar, key = crafted_copy(shards_dir, tmp_path, qdelta_member(5_000_000, 80))
    proc = subprocess.run([sys.executable, "-c", _LIMITED.format(root=str(ROOT), shards=str(root))],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in proc.stdout.splitlines() if key in line]
    assert len(lines) == 1 and "unreadable" in lines[0] and "5000000 frames" in lines[0], proc.stdout
    shards = ShardSet.open(root)
    stream = ShardStream([str(tar)], CharTokenizer(shards.vocab), shards.cmvn, LoaderConfig(workers=0), train=False)
    with pytest.raises(ShardReadError) as e:
        list(stream)
    assert "\n" not in str(e.value) and key in str(e.value) and "5000000 frames" in str(e.value)


def test_verify_does_not_open_a_shard_path_that_leaves_the_folder(shards_dir, tmp_path):
    """dataset.json listing `../../../tmp/x.tar` made verify hash a file outside the folder
    (training and eval refused it already)."""
    root = tmp_path / "shards"
    shutil.copytree(shards_dir, root)
    outside = tmp_path / "outside.tar"
    outside.write_bytes(b"not yours")
    dataset = json.loads((root / "dataset.json").read_text())
    dataset["splits"]["dev"]["shards"][0]["path"] = "../outside.tar"
    (root / "dataset.json").write_text(json.dumps(dataset))
    from pipeline.verify import verify

    problems = verify(root, progress=False)
    assert any("../outside.tar" in p and "not a shard of this format" in p for p in problems), problems
    assert not any("sha256" in p and "outside" in p for p in problems)


# --------------------------------------------------------------------------------------
# 3. a run folder is never overwritten silently, and a run started over keeps nothing old
# --------------------------------------------------------------------------------------
def _tiny(shards_dir, out, **kw):
    from asr.training.loop import TrainConfig, train

    kw = {"max_steps": 4, **kw}
    return train(TrainConfig(shards=str(shards_dir), out=str(out), preset="tiny", warmup=1, batch_frames=4000,
                             eval_every=0, workers=0, progress=False, log_every=2, **kw))


def test_a_folder_with_best_pt_but_no_last_pt_is_not_trained_over(shards_dir, tmp_path):
    """A run folder holding best.pt (or the user's summary.json) but no last.pt was trained over,
    with or without --resume, and best.pt replaced."""
    out = tmp_path / "run"
    _tiny(shards_dir, out)
    (out / "last.pt").unlink()
    best = (out / "best.pt").read_bytes()
    for resume in (False, True):
        with pytest.raises(FileExistsError, match="best.pt.*no last.pt.*--force"):
            _tiny(shards_dir, out, resume=resume)
    assert (out / "best.pt").read_bytes() == best
    only_summary = tmp_path / "mine"
    only_summary.mkdir()
    (only_summary / "summary.json").write_text("{}")
    with pytest.raises(FileExistsError, match="summary.json"):
        _tiny(shards_dir, only_summary)


def test_force_keeps_nothing_of_the_run_before(shards_dir, tmp_path):
    """--force kept the old run's metrics.jsonl lines and TensorBoard events."""
    out = tmp_path / "run"
    _tiny(shards_dir, out, max_steps=6)
    events_before = sorted(p.name for p in (out / "tb").glob("events.*"))
    _tiny(shards_dir, out, force=True)
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()
             if '"step"' in line]
    assert steps == sorted(steps) and max(steps) == 4, steps  # the new run's lines only
    events = sorted(p.name for p in (out / "tb").glob("events.*"))
    assert len(events) == 1 and events[0] not in events_before


# --------------------------------------------------------------------------------------
# 4. an ONNX export's metadata is checked as a checkpoint's is
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def exports(tiny_ctc, streaming_ckpt, tmp_path_factory) -> dict:
    from asr.inference.export import export_onnx

    folder = tmp_path_factory.mktemp("onnx")
    export_onnx(tiny_ctc, folder / "whole.onnx")
    export_onnx(streaming_ckpt, folder / "stream.onnx", streaming=True, chunk_ms=160)
    return {"whole": folder / "whole.onnx", "stream": folder / "stream.onnx"}


def _recrafted(src, dst, change) -> None:
    import onnx

    proto = onnx.load(str(src))
    entry = next(p for p in proto.metadata_props if p.key == "cv-asr")
    entry.value = change(json.loads(entry.value))
    onnx.save(proto, str(dst))


def _set(path: str, value):
    def change(meta):
        keys = path.split(".")
        target = meta
        for k in keys[:-1]:
            target = target[k]
        target[keys[-1]] = value
        return json.dumps(meta)
    return change


CRAFTED = [
    ("whole", _set("time_reduction", 1000), "time_reduction"),
    ("whole", _set("upsample", 0), "upsample"),
    ("whole", _set("features", None), "features"),
    ("whole", _set("features.hop_ms", 0), "hop_ms"),
    ("whole", _set("features.sample_rate", 10**9), "sample_rate"),
    ("whole", lambda m: json.dumps({**m, "cmvn": {**m["cmvn"], "mean": [float("nan")] * 80}}), "cmvn"),
    ("whole", lambda m: json.dumps({**m, "tokenizer": {**m["tokenizer"], "vocab": m["tokenizer"]["vocab"][:5]}}),
     "units"),
    ("whole", lambda m: "[" * 100000 + "]" * 100000, "not one made by"),
    ("stream", _set("left", 3 * 10**7), "'left'"),
    ("stream", _set("left_chunks", 10**6), "left_chunks"),
]


@pytest.mark.parametrize("which, change, field", CRAFTED, ids=[c[2] for c in CRAFTED])
def test_crafted_onnx_metadata_is_refused_in_one_line(exports, tmp_path, which, change, field):
    """48 of 93 crafted exports raised raw exceptions or decoded wrongly (a 7 GiB cache from
    left=3e7, word ends past the clip from time_reduction=1000)."""
    from asr.inference.loading import open_model
    from asr.store.checkpoint import CheckpointError

    crafted = tmp_path / "crafted.onnx"
    _recrafted(exports[which], crafted, change)
    with pytest.raises(CheckpointError) as e:
        open_model(crafted)
    message = str(e.value)
    assert "\n" not in message and str(crafted) in message and field in message, message
    assert open_model(exports[which]).onnx  # the export as written loads


# --------------------------------------------------------------------------------------
# 5, 11. /stream: fast clients, hostile messages, a session cap
# --------------------------------------------------------------------------------------
def _pcm(seconds: float, rate: int = 16000) -> bytes:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 0.7 * t) > 0) + 0.01 * rng.standard_normal(len(t))
    return (wave * 32767).astype("<i2").tobytes()


def test_a_client_faster_than_real_time_gets_its_transcript(streaming_ckpt):
    """A client sending faster than real time was closed with 1011 "keepalive ping timeout"
    after 23-40 s (its pings went unanswered while decoding was behind) and lost its transcript.
    Here: beam mode, a minute of audio sent at once, pings every 0.25 s due within 0.5 s."""
    from websockets.sync.client import connect

    from asr.apps.options import ServeConfig
    from asr.apps.serve import create_app
    from conftest import serve_in_thread

    app = create_app(ServeConfig(streaming_ckpt, max_seconds=600.0))
    pcm = _pcm(60.0)
    with serve_in_thread(app) as port, connect(f"ws://127.0.0.1:{port}/stream", ping_interval=0.25,
                                               ping_timeout=0.5, max_size=None) as ws:
        ws.send(json.dumps({"type": "config", "sample_rate": 16000, "mode": "beam"}))
        assert json.loads(ws.recv(30))["type"] == "ready"
        for i in range(0, len(pcm), 3200):
            ws.send(pcm[i:i + 3200])
        ws.send(json.dumps({"type": "end"}))
        last = None
        while last is None or last["type"] != "done":
            last = json.loads(ws.recv(120))
        assert last["duration"] == pytest.approx(60.0, abs=0.01)
    assert ws.close_code == 1000


def test_hostile_stream_messages_get_their_error_and_the_session_cap_holds(streaming_ckpt):
    """A 100,000-deep JSON array gave RecursionError and 1011 with a traceback in the log; a
    5,000-digit sample_rate was "must be JSON"; nothing capped the sessions."""
    from starlette.testclient import TestClient

    from asr.apps.options import ServeConfig
    from asr.apps.serve import create_app

    with TestClient(create_app(ServeConfig(streaming_ckpt, max_sessions=1))) as client:
        with client.websocket_connect("/stream") as ws:
            ws.send_text("[" * 100000 + "]" * 100000)
            assert "must be JSON" in ws.receive_json()["error"]
            assert ws.receive()["code"] == 1003
        with client.websocket_connect("/stream") as ws:
            ws.send_text('{"type": "config", "sample_rate": ' + "9" * 5000 + "}")
            message = ws.receive_json()["error"]
            assert "sample_rate must be an integer from 8000" in message and ws.receive()["code"] == 1008
        with client.websocket_connect("/stream") as first:
            first.send_text(json.dumps({"type": "config", "sample_rate": 16000}))
            assert first.receive_json()["type"] == "ready"
            with client.websocket_connect("/stream") as second:
                assert "--max-sessions" in second.receive_json()["error"]
                assert second.receive()["code"] == 1013


# --------------------------------------------------------------------------------------
# 6. speakers: a leak is said loudly, a corpus that shares speakers on purpose can say so
# --------------------------------------------------------------------------------------
def _one_speaker_corpus(synth_root, dst, client: str | None, drop_column: bool = False):
    """The synthetic corpus with every row's client_id set to `client` (None: left empty), or
    the column dropped: one voice in every split, as a user's own recordings are."""
    from conftest import LANG

    lang = dst / LANG
    lang.mkdir(parents=True)
    (lang / "clips").symlink_to(synth_root / LANG / "clips")
    for tsv in (synth_root / LANG).glob("*.tsv"):
        lines = tsv.read_text().splitlines()
        header = lines[0].split("\t")
        at = header.index("client_id") if "client_id" in header else None
        out = []
        for line in lines:
            cells = line.split("\t")
            if at is not None and line is not lines[0]:
                cells[at] = client or ""
            if drop_column and at is not None:
                del cells[at]
            out.append("\t".join(cells))
        (lang / tsv.name).write_text("\n".join(out) + "\n")
    return dst


def test_speakers_that_cannot_be_told_apart_are_a_warning_and_no_speaker(synth_root, tmp_path):
    """Without a client_id column, or with empty ids, dev/test speakers reached train with no
    warning, and the dry run counted "" as one speaker."""
    from conftest import LANG
    from pipeline.build import BuildConfig, build, dry_run, format_summary
    from pipeline.estimate import format_dry_run

    for name, kwargs in (("no-column", {"client": "x", "drop_column": True}), ("empty", {"client": None})):
        cv = _one_speaker_corpus(synth_root, tmp_path / name, **kwargs)
        cfg = BuildConfig(cv_root=cv, lang=LANG, out=tmp_path / f"shards-{name}", jobs=1, progress=False)
        report = format_dry_run(dry_run(cfg))
        summary = build(cfg)
        text = format_summary(summary)
        for out in (report, text):
            assert "WARNING" in out and ("no client_id column" in out or "without a client_id" in out), out
        assert all(s["speakers"] == 0 for s in summary["splits"].values()), summary["splits"]


def test_a_corpus_that_shares_speakers_on_purpose_can_say_so(synth_root, tmp_path):
    """One voice in every split got "no usable training clip" and no way to say so."""
    from conftest import LANG
    from pipeline.build import BuildConfig, build
    from pipeline.cv import ReleaseError
    from pipeline.selection import Selection

    cv = _one_speaker_corpus(synth_root, tmp_path / "mine", client="me")
    cfg = BuildConfig(cv_root=cv, lang=LANG, out=tmp_path / "strict", jobs=1, progress=False)
    with pytest.raises(ReleaseError, match="--allow-shared-speakers"):
        build(cfg)
    cfg = BuildConfig(cv_root=cv, lang=LANG, out=tmp_path / "shared", jobs=1, progress=False,
                      selection=Selection(shared_speakers=True))
    summary = build(cfg)
    assert summary["splits"]["train"]["utterances"] > 0 and summary["splits"]["train"]["speakers"] == 1
    dev_sentences = {r["text"] for r in read_index_rows(tmp_path / "shared", "dev")}
    assert not {r["text"] for r in read_index_rows(tmp_path / "shared", "train")} & dev_sentences


def read_index_rows(root, split):
    from pipeline.shardformat import read_index

    return read_index(root, split=split)


# --------------------------------------------------------------------------------------
# 7-10. live streams: stable beam partials, bounded segments, bad blocks refused alone
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def live(streaming_ckpt):
    from asr import Recognizer

    return Recognizer.load(streaming_ckpt, device="cpu", chunk_ms=160)


def _partials(rec, pcm: np.ndarray, **kw) -> list[str]:
    s = rec.stream(**kw)
    out = [s.accept(pcm[i:i + 1600], 16000).text for i in range(0, len(pcm), 1600)]
    return out + [s.finish().text]


def test_beam_partials_are_the_same_every_run(live):
    """partial() showed flashlight's first hypothesis, not the best one: two runs of the same
    audio gave different partials."""
    beam = live.with_options(beam=8)
    pcm = np.frombuffer(_pcm(6.0), "<i2")
    runs = [_partials(beam, pcm) for _ in range(3)]
    assert runs[0] == runs[1] == runs[2] and any(runs[0])


def test_an_open_segment_is_cut_without_an_endpoint(live):
    """With no endpoint the open segment grew without bound (a beam's partial cost and memory
    with it): now it closes at its first blank past MAX_SEGMENT_S."""
    from asr.inference import streaming

    s = live.stream(endpoint_ms=0)
    pcm = np.frombuffer(_pcm(75.0), "<i2")
    longest = 0
    for i in range(0, len(pcm), 16000):
        s.accept(pcm[i:i + 16000], 16000)
        longest = max(longest, sum(len(p) for p in s.seg_frames))
    s.finish()
    assert longest <= 3 * s.max_segment // 2 + 4 * s.chunk and s.max_segment == round(streaming.MAX_SEGMENT_S / s.shift)
    assert len(s.segments) >= 2


def test_a_bad_block_is_refused_and_the_stream_goes_on(live):
    """A block of 1e30 raised AudioError (not ValueError) and killed the session; True was taken
    as 1 Hz; inf or a string for chunk_ms / endpoint_ms gave OverflowError / TypeError; a refused
    block still fixed the stream's sample rate."""
    s = live.stream()
    with pytest.raises(ValueError, match="not audio"):
        s.accept(np.full(4000, 1e30, np.float32), 16000)
    with pytest.raises(ValueError, match="sample rate"):
        s.accept(np.zeros(4000, np.float32), True)
    good = np.frombuffer(_pcm(2.0), "<i2")
    s.accept(good, 16000)  # the first rate taken is this one's
    with pytest.raises(ValueError, match="one rate per stream"):
        s.accept(good, 44100)
    assert s.finish().duration == pytest.approx(2.0)
    for bad in (float("inf"), "fast", True):
        with pytest.raises(ValueError, match="chunk_ms"):
            live.stream(chunk_ms=bad)
        with pytest.raises(ValueError, match="endpoint_ms"):
            live.stream(endpoint_ms=bad)


# --------------------------------------------------------------------------------------
# 9, 12, 13, 15. commands: per-file failures, inputs never overwritten, one-line disk
# errors, options that would be ignored
# --------------------------------------------------------------------------------------
def cli(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def test_transcribe_stream_fails_per_file(streaming_ckpt, tmp_path, synth_root):
    """A file with NaN samples stopped `transcribe --stream` (the next, good file never ran)."""
    import soundfile as sf

    from conftest import LANG

    nan = tmp_path / "nan.wav"
    sf.write(nan, np.full(16000, np.nan, np.float32), 16000, subtype="FLOAT")
    good = sorted((synth_root / LANG / "clips").glob("*.mp3"))[0]
    proc = cli("transcribe", "--checkpoint", streaming_ckpt, "--stream", "--device", "cpu", nan, good)
    assert proc.returncode == 1
    lines = proc.stdout.split("\n")
    assert lines[0] == "" and lines[1].strip(), proc.stdout  # the bad file's empty line, then the good one's text
    assert f"error: {nan}: non-finite samples" in proc.stderr and "1 of 2 file(s)" in proc.stderr


def test_out_dir_never_overwrites_an_input(tiny_ctc, tmp_path, synth_root):
    """`transcribe --out-dir D D/speech.txt` (audio named .txt) overwrote the input."""
    from conftest import LANG

    out = tmp_path / "D"
    out.mkdir()
    audio = out / "speech.txt"
    shutil.copy(sorted((synth_root / LANG / "clips").glob("*.mp3"))[0], audio)
    before = audio.read_bytes()
    proc = cli("transcribe", "--checkpoint", tiny_ctc, "--device", "cpu", "--out-dir", out, audio)
    assert proc.returncode == 2 and "one of the inputs" in proc.stderr and len(proc.stderr.splitlines()) == 1
    assert audio.read_bytes() == before


def test_a_bad_output_folder_is_one_line(shards_dir, tmp_path):
    """`lm build` (and plot, synth) on a full or read-only disk printed a traceback."""
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for args in (("lm", "build", "--shards", shards_dir, "--out", blocker / "lm.arpa"),
                 ("plot", "--shards", shards_dir, "--out", blocker / "p.png"),
                 ("synth", "--out", blocker / "fr", "--clips", "3")):
        proc = cli(*args)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, (args, proc.stderr[-500:])
        assert len(proc.stderr.strip().splitlines()) == 1 and str(blocker) in proc.stderr, (args, proc.stderr)


def test_options_a_run_would_ignore_are_refused(shards_dir, tmp_path):
    """`train --resume --lr 1` silently kept the old schedule; `--init-from ""` trained from scratch;
    `--init-from DIR` said "does not exist"."""
    out = tmp_path / "run"
    _tiny(shards_dir, out, lr=3e-3)
    with pytest.raises(ValueError, match="--lr 1.0, not 0.003"):
        _tiny(shards_dir, out, resume=True, lr=1.0, max_steps=6)
    _tiny(shards_dir, out, resume=True, max_steps=6)  # the same schedule: resumed
    proc = cli("train", "--shards", shards_dir, "--out", tmp_path / "new", "--init-from", "")
    assert proc.returncode == 2 and "--init-from needs a checkpoint file" in proc.stderr
    proc = cli("train", "--shards", shards_dir, "--out", tmp_path / "new", "--init-from", tmp_path)
    assert proc.returncode == 1 and "is a folder, not a checkpoint" in proc.stderr
