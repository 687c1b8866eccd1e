"""`asr-cli serve`'s WebSocket /stream (asr/apps/serve_stream.py) with a real streaming checkpoint:
what a session gets against `Recognizer.stream()` fed the same blocks, every refusal (one error
message, then a close with its code), three sessions at once on two replicas, clients that
leave mid-session."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
import soxr
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from asr import Recognizer
from asr.apps.serve import ServeConfig, create_app
from asr.decoding.options import DecodeOptions
from conftest import LANG, serve_in_thread
from pipeline.audio import compute_features

BLOCK_S = 0.25  # seconds of audio per binary message the tests send
PAUSE_S = 1.2  # the silence between the two copies of a clip in the tests' audio


def pcm16(x: np.ndarray) -> np.ndarray:
    return np.round(np.clip(x, -1, 1) * 32767).astype("<i2")


def with_pause(clip: Path, rate: int = 16000) -> np.ndarray:
    """The clip at `rate`, PAUSE_S of silence and the clip again: float32 [n]."""
    x, sr = sf.read(clip, dtype="float32")
    y = soxr.resample(x, sr, rate).astype(np.float32)
    return np.concatenate([y, np.zeros(int(PAUSE_S * rate), np.float32), y])


def speaking_ckpt(streaming_ckpt: Path, speech_wav: Path, out: Path) -> Path:
    """conftest's `streaming_ckpt` (seeded fresh weights: it spells something for any input)
    with its blank logit rewired so that it says letters on speech and blanks on silence, as a
    trained model does: then a pause closes a segment. Its blank row is negated where silence
    draws it further from the blank than speech does (as it does for these weights), and its
    blank bias set half way between the speech and the silence of `speech_wav` (a `with_pause`
    clip)."""
    import torch

    from asr.store import checkpoint
    from asr.tokens.units import BLANK

    t = Recognizer.load(streaming_ckpt, device="cpu").transcriber
    feats, _ = compute_features(speech_wav, t.features)
    x = torch.from_numpy((feats.astype(np.float32) - t.mean) / t.std)[None]
    vocab = t.model.head.out_features // t.model.upsample
    with torch.no_grad():
        z = t.model.head(t.model.encoder(x, torch.tensor([len(feats)]))[0])[0].reshape(-1, vocab)
    blank = z[:, BLANK].numpy()
    other = torch.cat([z[:, :BLANK], z[:, BLANK + 1:]], 1).max(1).values.numpy()
    whole = sf.info(speech_wav).duration
    clip = (whole - PAUSE_S) / 2
    at = np.arange(len(z)) * whole / len(z)  # each frame's time in speech_wav
    silent = (at > clip + 0.1) & (at < clip + PAUSE_S - 0.1)
    ckpt = checkpoint.load(streaming_ckpt)
    weight, bias = ckpt["state_dict"]["head.weight"], ckpt["state_dict"]["head.bias"]
    rows = slice(BLANK, None, vocab)
    margin = blank - other  # > 0: the frame is a blank
    if np.median(margin[silent]) < np.median(margin[~silent]):  # silence is less blank than speech: flip it
        weight[rows] *= -1
        bias[rows] *= -1
        margin = -blank - other
    assert np.median(margin[silent]) > np.median(margin[~silent]), "these weights cannot be made to pause"
    bias[rows] -= float(np.median(margin[silent]) + np.median(margin[~silent])) / 2
    out.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.save(out, {k: v for k, v in ckpt.items() if k != "format"})
    return out


def two_clips(synth_root: Path) -> list[Path]:
    return sorted((synth_root / LANG / "clips").glob("*.mp3"))[:2]


def speaking(streaming_ckpt: Path, synth_root: Path, tmp_path_factory) -> Path:
    """`speaking_ckpt` calibrated on the first of `two_clips`, once a test session."""
    out = tmp_path_factory.getbasetemp() / "speaking" / "speaking.pt"
    if not out.is_file():
        wav = tmp_path_factory.mktemp("calibrate") / "speech.wav"
        sf.write(wav, with_pause(two_clips(synth_root)[0]), 16000, subtype="FLOAT")
        speaking_ckpt(streaming_ckpt, wav, out)
    return out


@pytest.fixture(scope="module")
def clips(synth_root) -> list[Path]:
    return two_clips(synth_root)


@pytest.fixture(scope="module")
def speech(clips) -> list[np.ndarray]:
    """Two clips of the corpus as 16 kHz int16, each with a pause in the middle (`with_pause`)."""
    return [pcm16(with_pause(c)) for c in clips]


@pytest.fixture(scope="module")
def stream_ckpt(streaming_ckpt, synth_root, tmp_path_factory) -> Path:
    return speaking(streaming_ckpt, synth_root, tmp_path_factory)


def blocks(pcm: np.ndarray, rate: int = 16000) -> list[np.ndarray]:
    n = int(BLOCK_S * rate)
    return [pcm[i: i + n] for i in range(0, len(pcm), n)]


def reference(rec: Recognizer, pcm: np.ndarray, rate: int = 16000) -> dict:
    """What the API gives for `pcm` fed in the tests' blocks: the (text, partial) pairs in the
    order they change, the closed segments, and the finished transcript."""
    s = rec.stream()
    pairs, finals = [], []
    for b in blocks(pcm, rate):
        p = s.accept(b, rate)
        finals += [seg.to_dict() for seg in p.closed]
        if (p.text, p.partial) != (pairs[-1] if pairs else ("", "")):
            pairs.append((p.text, p.partial))
    t = s.finish()
    finals += [seg.to_dict() for seg in s.segments[len(finals):]]
    return {"partials": pairs, "finals": finals, "text": t.text, "words": [w.to_dict() for w in t.words],
            "duration": t.duration}


@pytest.fixture(scope="module")
def app(stream_ckpt, lm):
    return create_app(ServeConfig(stream_ckpt, lm=lm, max_seconds=60.0))


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app) as c:
        yield c


def test_model_info_says_the_model_streams(client, chatty_ckpt):
    m = client.get("/model").json()
    assert (m["streaming"], m["chunk_ms"], m["stream_modes"]) == (True, 640, ["greedy", "beam", "beam-lm"])
    with TestClient(create_app(ServeConfig(chatty_ckpt))) as c:
        m = c.get("/model").json()
        assert (m["streaming"], m["chunk_ms"], m["stream_modes"]) == (False, None, [])


def test_the_page_scripts_are_served_and_fetch_nothing_from_elsewhere(client):
    from conftest import ROOT

    assert '<script src="/static/live.js"></script>' in client.get("/").text
    assert 'addModule("/static/pcm-worklet.js")' in client.get("/static/live.js").text
    for asset in ("live.js", "pcm-worklet.js"):
        body = client.get(f"/static/{asset}").text
        assert body == (ROOT / "asr" / "apps" / "static" / asset).read_text()
        assert "http://" not in body and "https://" not in body


def collect(ws) -> list[dict]:
    """Every message up to and including "done"."""
    out = []
    while not out or out[-1]["type"] != "done":
        out.append(ws.receive_json())
        assert out[-1]["type"] in ("partial", "final", "done"), out[-1]
    return out


def assert_consistent(messages: list[dict]) -> None:
    """Each partial's text is the finals so far and then its open segment's."""
    closed = []
    for m in messages:
        if m["type"] == "final":
            closed.append(m["segment"]["text"])
        elif m["type"] == "partial":
            assert m["text"] == " ".join(closed + ([m["partial"]] if m["partial"] else [])), (m, closed)


def test_a_session_gets_what_the_api_gives(client, stream_ckpt, speech):
    pcm = speech[0]
    want = reference(Recognizer.load(stream_ckpt, device="cpu"), pcm)
    # the model says something, and the pause closes a segment before the end
    assert want["text"] and len(want["finals"]) >= 2 and len(want["partials"]) >= 3
    with client.websocket_connect("/stream") as ws:
        ws.send_json({"type": "config", "sample_rate": 16000})
        assert ws.receive_json() == {"type": "ready", "sample_rate": 16000, "chunk_ms": 640, "mode": "greedy"}
        parts = blocks(pcm)
        half = len(parts) // 2
        for b in parts[:half]:
            ws.send_bytes(b.tobytes())
        early = ws.receive_json()  # no "end" sent yet: text comes as the audio does
        assert early["type"] == "partial" and early["text"]
        for b in parts[half:]:
            ws.send_bytes(b.tobytes())
        ws.send_json({"type": "end"})
        got = [early] + collect(ws)
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == 1000
    assert [(m["text"], m["partial"]) for m in got if m["type"] == "partial"] == want["partials"]
    assert [m["segment"] for m in got if m["type"] == "final"] == want["finals"]
    assert_consistent(got)
    done = got[-1]
    assert done == {"type": "done", "text": want["text"], "words": want["words"], "duration": want["duration"]}
    assert done["text"] == " ".join(f["text"] for f in want["finals"])
    assert abs(done["duration"] - len(pcm) / 16000) < 0.01
    # each final comes before the partial of the same block, which no longer holds its words
    first_final = next(i for i, m in enumerate(got) if m["type"] == "final")
    after, before = got[first_final + 1], got[first_final - 1]
    assert after["type"] == before["type"] == "partial" and after["partial"] != before["partial"]


@pytest.mark.parametrize("mode, rate", [("beam", 44100), ("beam-lm", 16000)])
def test_the_beam_modes_at_any_sample_rate(client, stream_ckpt, lm, speech, mode, rate):
    """Prefix beam search (with the word LM in beam-lm), on audio at `rate` (the server
    resamples it), as the API gives it."""
    pcm = speech[1] if rate == 16000 else pcm16(soxr.resample(speech[1].astype(np.float32) / 32768, 16000, rate))
    beam = DecodeOptions().search_beam("ctc")  # what serve's beam modes take without --beam
    rec = Recognizer.load(stream_ckpt, device="cpu", beam=beam, lm=lm if mode == "beam-lm" else None)
    want = reference(rec, pcm, rate)
    with client.websocket_connect("/stream") as ws:
        ws.send_json({"type": "config", "sample_rate": rate, "mode": mode})
        assert ws.receive_json() == {"type": "ready", "sample_rate": rate, "chunk_ms": 640, "mode": mode}
        for b in blocks(pcm, rate):
            ws.send_bytes(b.tobytes())
        ws.send_json({"type": "end"})
        got = collect(ws)
    assert [m["segment"] for m in got if m["type"] == "final"] == want["finals"]
    assert {k: got[-1][k] for k in ("text", "words", "duration")} == {k: want[k] for k in ("text", "words", "duration")}
    assert got[-1]["text"] and abs(got[-1]["duration"] - len(pcm) / rate) < 0.01
    # a beam's best hypothesis mid-segment differs between two runs of the same stream (ties), so
    # its partials are not compared one to one with the API's; they hold together all the same
    assert any(m["type"] == "partial" for m in got)
    assert_consistent(got)


def refusal(client, *messages) -> tuple[str, int]:
    """Send `messages` (dict: JSON, str: text, bytes: audio) and return the one error message
    and the close code that follow."""
    with client.websocket_connect("/stream") as ws:
        for m in messages:
            if isinstance(m, dict):
                ws.send_json(m)
            elif isinstance(m, str):
                ws.send_text(m)
            else:
                ws.send_bytes(m)
        got = ws.receive()
        while got.get("text") and json.loads(got["text"])["type"] in ("ready", "partial", "final"):
            got = ws.receive()
        error = json.loads(got["text"])
        assert set(error) == {"type", "error"} and error["type"] == "error", error
        assert "\n" not in error["error"]
        closed = ws.receive()
        assert closed["type"] == "websocket.close", closed  # one error, then the close: nothing else
        assert closed["reason"] == error["error"][:123]
        return error["error"], closed["code"]


CONFIG = {"type": "config", "sample_rate": 16000}
BAD = [
    (["hello"], 1003, 'a text message must be JSON, e.g. {"type": "end"}; audio goes in binary messages'),
    ([b"\x00\x01" * 800], 1003, 'send {"type": "config", "sample_rate": N} first, then the audio'),
    ([{"type": "end"}], 1008, 'send {"type": "config", "sample_rate": N} first, then the audio'),
    (["[1, 2]"], 1008, 'a JSON message must be an object with a "type" (config or end)'),
    ([{"type": "config"}], 1008, "config: sample_rate must be an integer from 8000 to 192000 (Hz), got null"),
    ([{"type": "config", "sample_rate": 0}], 1008,
     "config: sample_rate must be an integer from 8000 to 192000 (Hz), got 0"),
    ([{"type": "config", "sample_rate": 10**9}], 1008,
     "config: sample_rate must be an integer from 8000 to 192000 (Hz), got 1000000000"),
    ([{"type": "config", "sample_rate": 16000.5}], 1008,
     "config: sample_rate must be an integer from 8000 to 192000 (Hz), got 16000.5"),
    ([{"type": "config", "sample_rate": "16000"}], 1008,
     'config: sample_rate must be an integer from 8000 to 192000 (Hz), got "16000"'),
    ([{"type": "config", "sample_rate": True}], 1008,
     "config: sample_rate must be an integer from 8000 to 192000 (Hz), got true"),
    ([dict(CONFIG, mode="fast")], 1008, 'unknown mode "fast": use one of greedy, beam'),
    ([dict(CONFIG, mode=["greedy"])], 1008, 'unknown mode ["greedy"]: use one of greedy, beam'),
    ([dict(CONFIG, mode="beam-lm")], 1008, "mode beam-lm needs a language model: start asr-cli serve with --lm"),
    ([CONFIG, b"\x00" * 3201], 1003,
     "audio must be 16-bit PCM: a message of 3201 bytes is not a whole number of samples"),
    ([CONFIG, CONFIG], 1008, "config was already sent: one per session (open another connection for another)"),
    ([CONFIG, {"type": "pause"}], 1008, 'unknown message type "pause": expected binary audio or {"type": "end"}'),
    ([CONFIG, b"\x00\x00" * 1600, "not json"], 1003,
     'a text message must be JSON, e.g. {"type": "end"}; audio goes in binary messages'),
]


def test_each_bad_message_gets_one_error_and_a_close(stream_ckpt, chatty_ckpt, speech):
    app = create_app(ServeConfig(stream_ckpt, max_seconds=2.0, stream_idle=0.5))
    with TestClient(app) as c:
        for messages, code, error in BAD:
            assert refusal(c, *messages) == (error, code), messages
        # 1.5 s, then 1 s more: over the 2 s limit (what came before it was decoded)
        assert refusal(c, CONFIG, speech[0][:24000].tobytes(), speech[0][24000:40000].tobytes()) == (
            "the session's audio is over the 2 s limit (asr-cli serve --max-seconds)", 1009)
        assert refusal(c, CONFIG) == ("no message for 0.5 s: the session is closed", 1008)
        assert c.get("/health").json() == {"status": "ok"}
        with c.websocket_connect("/stream") as ws:  # and a good session still goes through
            ws.send_json(CONFIG)
            assert ws.receive_json()["type"] == "ready"
            ws.send_bytes(speech[0][:16000].tobytes())
            ws.send_json({"type": "end"})
            assert collect(ws)[-1]["duration"] == 1.0
        with c.websocket_connect("/stream") as ws:  # as does one without audio
            ws.send_json(CONFIG)
            ws.receive_json()
            ws.send_json({"type": "end"})
            assert ws.receive_json() == {"type": "done", "text": "", "words": [], "duration": 0.0}
        assert app.state.stream_sessions == [0]
    with TestClient(create_app(ServeConfig(chatty_ckpt))) as c:  # a model trained without --streaming
        assert refusal(c, CONFIG) == ("this model cannot stream: train a Conformer CTC or transducer model with "
                                      "--streaming (e.g. --preset conformer-small-streaming)", 1008)


def ws_url(port: int) -> str:
    return f"ws://127.0.0.1:{port}/stream"


def run_session(port: int, pcm: np.ndarray, opened: threading.Barrier | None = None) -> dict:
    """One session through a real socket (websockets' client); with `opened`, every session
    waits there once ready, so that they all stream at once."""
    from websockets.sync.client import connect

    with connect(ws_url(port)) as ws:
        ws.send(json.dumps(CONFIG))
        assert json.loads(ws.recv(10))["type"] == "ready"
        if opened is not None:
            opened.wait(30)
        for b in blocks(pcm):
            ws.send(b.tobytes())
            time.sleep(0.01)  # interleave with the other session
        ws.send(json.dumps({"type": "end"}))
        got = []
        while not got or got[-1]["type"] != "done":
            got.append(json.loads(ws.recv(60)))
    return got[-1]


@pytest.fixture(scope="module")
def two_replicas(stream_ckpt):
    app = create_app(ServeConfig(stream_ckpt, workers=2))
    with serve_in_thread(app) as port:
        yield app, port


def test_three_sessions_at_once_share_two_replicas(two_replicas, stream_ckpt, speech):
    app, port = two_replicas
    rec = Recognizer.load(stream_ckpt, device="cpu")
    audio = [speech[0], speech[1], speech[0]]
    want = [reference(rec, pcm)["text"] for pcm in audio]
    assert want[0] != want[1]
    opened = threading.Barrier(len(audio) + 1)
    results = [None] * len(audio)

    def one(i):
        results[i] = run_session(port, audio[i], opened)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(audio))]
    for t in threads:
        t.start()
    opened.wait(30)
    assert sorted(app.state.stream_sessions) == [1, 2]  # all open at once, spread over the replicas
    assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).json() == {"status": "ok"}
    for t in threads:
        t.join(120)
    assert [r["text"] for r in results] == want
    assert app.state.stream_sessions == [0, 0]


def test_a_client_that_leaves_mid_session_leaves_nothing_behind(two_replicas, stream_ckpt, speech, caplog):
    from websockets.sync.client import connect

    app, port = two_replicas
    caplog.set_level(logging.INFO)

    def leave(n: int) -> None:
        for _ in range(n):
            with connect(ws_url(port)) as ws:
                ws.send(json.dumps(CONFIG))
                json.loads(ws.recv(10))
                for b in blocks(speech[0])[:6]:
                    ws.send(b.tobytes())
                ws.socket.shutdown(socket.SHUT_RDWR)  # gone without a close frame, its audio not yet decoded
        deadline = time.time() + 20
        while app.state.stream_sessions != [0, 0] and time.time() < deadline:
            time.sleep(0.1)
        assert app.state.stream_sessions == [0, 0]
        assert app.state.stream_threads.borrowed_tokens == 0  # no thread still decoding for them

    leave(2)  # the server's decoding threads exist now (idle ones are kept for the next session)
    threads = threading.active_count()
    leave(4)
    assert threading.active_count() == threads  # no thread per session left behind
    want = reference(Recognizer.load(stream_ckpt, device="cpu"), speech[1])["text"]
    assert run_session(port, speech[1])["text"] == want  # the server goes on
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []  # nothing failed
