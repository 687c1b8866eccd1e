"""`asr-cli serve` (asr/apps/serve.py): the JSON API against the Python API's results, its errors,
the upload limits, 20 concurrent requests, and the command itself."""

from __future__ import annotations

import asyncio
import base64
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
import soxr
import torch
from fastapi.testclient import TestClient

from asr import Recognizer
from asr.store import checkpoint
from asr.apps.serve import ServeConfig, create_app
from asr.nets.models import build_model, model_config
from conftest import LANG, ROOT, serve_in_thread


def clips(synth_root: Path, n: int) -> list[Path]:
    return sorted((synth_root / LANG / "clips").glob("*.mp3"))[:n]


@pytest.fixture(scope="module")
def app(chatty_ckpt, lm):
    return create_app(ServeConfig(chatty_ckpt, lm=lm, beam=8))


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app) as c:
        yield c


def post(client, path: Path, **fields):
    return client.post("/transcribe", files={"file": (path.name, path.read_bytes())}, data=fields)


def expected(rec: Recognizer, path: Path) -> dict:
    r = rec.transcribe(path)
    return {"text": r.text, "words": [{"word": w.word, "start": w.start, "end": w.end} for w in r.words],
            "duration": r.duration}


def test_health_and_model(client, chatty_ckpt):
    assert client.get("/health").json() == {"status": "ok"}
    m = client.get("/model").json()
    ckpt = checkpoint.load(chatty_ckpt, train_state=False)
    assert (m["checkpoint"], m["kind"], m["preset"], m["lang"]) == ("chatty.pt", "ctc", "tiny", "fr")
    assert m["units"] == f"char ({len(ckpt['tokenizer']['vocab']) + 2})"  # + <blank>, <eos>
    assert m["steps"] == ckpt["position"]["step"] == 30
    assert m["modes"] == {"greedy": "greedy", "beam": "beam search, 8 hypotheses",
                          "beam-lm": "beam search, 8 hypotheses, + LM lm-3gram.arpa (weight 1, word score 1)"}
    assert (m["default_mode"], m["lm"], m["max_mb"], m["max_seconds"]) == ("beam-lm", "lm-3gram.arpa", 50.0, 600.0)


def test_transcribe_returns_what_the_python_api_gives(client, chatty_ckpt, lm, synth_root):
    recs = {"greedy": Recognizer.load(chatty_ckpt, device="cpu"),
            "beam": Recognizer.load(chatty_ckpt, device="cpu", beam=8),
            "beam-lm": Recognizer.load(chatty_ckpt, lm=lm, device="cpu", beam=8)}
    texts = {}
    for clip in clips(synth_root, 2):
        for mode, rec in recs.items():
            r = post(client, clip, mode=mode)
            assert r.status_code == 200, r.text
            body = r.json()
            assert set(body) == {"text", "words", "duration", "decode_seconds", "mode"}
            assert body["mode"] == mode and body["decode_seconds"] >= 0
            assert {k: body[k] for k in ("text", "words", "duration")} == expected(rec, clip)
            assert body["text"] and len(body["words"]) == len(body["text"].split())
            texts[clip, mode] = body["text"]
        assert post(client, clip).json()["text"] == texts[clip, "beam-lm"]  # the default mode with an LM
    assert texts[clips(synth_root, 2)[0], "greedy"] != texts[clips(synth_root, 2)[1], "greedy"]


def png(data_url: str) -> bytes:
    prefix = "data:image/png;base64,"
    assert data_url.startswith(prefix)
    raw = base64.b64decode(data_url[len(prefix):])
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    return raw


def test_plots_spectrogram_and_no_attention_for_ctc(client, synth_root):
    body = post(client, clips(synth_root, 1)[0], mode="greedy", plots="1").json()
    assert len(png(body["spectrogram"])) > 5000
    assert "attention" not in body


@pytest.fixture(scope="module")
def las_ckpt(tiny_ctc, tmp_path_factory) -> Path:
    """An untrained (seeded) tiny LAS model with tiny_ctc's features, units and CMVN."""
    ckpt = checkpoint.load(tiny_ctc)
    torch.manual_seed(0)
    ckpt["model"] = model_config("las", "tiny", len(ckpt["tokenizer"]["vocab"]) + 2, ckpt["model"]["n_mels"])
    ckpt["state_dict"] = build_model(ckpt["model"]).state_dict()
    path = tmp_path_factory.mktemp("las") / "las.pt"
    checkpoint.save(path, {k: v for k, v in ckpt.items() if k not in ("format", "optimizer", "scheduler")})
    return path


def test_las_model_gets_an_attention_plot(las_ckpt, synth_root):
    with TestClient(create_app(ServeConfig(las_ckpt))) as c:
        m = c.get("/model").json()
        assert (m["kind"], m["default_mode"], set(m["modes"])) == ("las", "greedy", {"greedy", "beam"})
        body = post(c, clips(synth_root, 1)[0], plots="1").json()
        png(body["spectrogram"]), png(body["attention"])
        r = post(c, clips(synth_root, 1)[0], mode="beam-lm")
        assert (r.status_code, r.json()) == (400, {"error": "mode beam-lm needs a language model: start asr-cli "
                                                            "serve with --lm"})


def test_bad_input_gets_a_4xx_with_one_line_and_the_server_goes_on(chatty_ckpt, synth_root, tmp_path):
    clip = clips(synth_root, 1)[0]
    seconds = sf.info(clip).duration
    assert 1.5 < seconds < 10
    with TestClient(create_app(ServeConfig(chatty_ckpt, max_mb=0.05, max_seconds=1.0))) as c:
        def status(files=None, data=None, **kw):
            r = c.post("/transcribe", files=files, data=data, **kw)
            return r.status_code, r.json()

        assert status({"file": ("notes.txt", b"hello, not audio\n" * 20)}) == (
            422, {"error": "notes.txt: not a readable audio file (MP3, WAV, FLAC, OGG ...) "
                           "(Format not recognised)"})
        assert status({"file": ("empty.wav", b"")}) == (422, {"error": "empty.wav: empty file (0 bytes)"})
        big = np.random.default_rng(0).bytes(60_000)  # 0.06 MB > 0.05 MB, small enough for the form overhead
        assert status({"file": ("big.mp3", big)}) == (
            413, {"error": "file too large: the limit is 0.05 MB (asr-cli serve --max-mb)"})
        assert status({"file": (clip.name, clip.read_bytes())}) == (
            413, {"error": f"{clip.name}: {seconds:.0f} s of audio is over the 1 s limit (asr-cli serve --max-seconds)"})
        assert status({"file": (clip.name, clip.read_bytes())}, {"mode": "fast"}) == (
            400, {"error": "unknown mode 'fast': use one of greedy, beam, beam-lm"})
        assert status(None, {"file": "just text"}) == (
            400, {"error": "no file: send the audio as the multipart field 'file'"})
        assert status(content=b"raw bytes", headers={"content-type": "audio/mpeg"}) == (
            400, {"error": "no file: send the audio as the multipart field 'file'"})
        # still up: a short clip of the same corpus goes through
        wav = tmp_path / "short.wav"
        x, sr = sf.read(clip, dtype="float32")
        sf.write(wav, soxr.resample(x[: int(0.8 * sr)], sr, 16000), 16000, subtype="PCM_16")  # 26 kB
        code, body = status({"file": (wav.name, wav.read_bytes())})
        assert code == 200 and body["duration"] == 0.8


def test_an_oversized_body_is_refused_while_it_streams_in(chatty_ckpt, app):
    """No Content-Length, 1 MB chunks without end: the app stops reading just past the limit."""
    small = create_app(ServeConfig(chatty_ckpt, max_mb=2.0))
    chunk, pulled, sent = b"x" * 1_000_000, [], []
    boundary = b"b0undary"
    head = b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'

    async def receive():
        pulled.append(1)
        if len(pulled) > 100:
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": head if len(pulled) == 1 else chunk, "more_body": True}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/transcribe", "raw_path": b"/transcribe",
             "query_string": b"", "root_path": "", "scheme": "http", "server": ("test", 80), "client": ("c", 1),
             "http_version": "1.1", "asgi": {"version": "3.0"},
             "headers": [(b"content-type", b"multipart/form-data; boundary=" + boundary)]}
    asyncio.run(small(scope, receive, send))
    assert sent[0]["status"] == 413
    assert b"file too large: the limit is 2 MB" in b"".join(m.get("body", b"") for m in sent[1:])
    assert len(pulled) == 4  # the head, then 3 MB: over 2 MB + the form allowance, and no more


def test_a_declared_oversized_body_is_refused_before_it_is_read(chatty_ckpt):
    with TestClient(create_app(ServeConfig(chatty_ckpt, max_mb=1.0))) as c:
        r = c.post("/transcribe", content=b"x" * 10, headers={"content-length": "5000000",
                                                                "content-type": "multipart/form-data; boundary=b"})
        assert (r.status_code, r.json()) == (413, {"error": "file too large: the limit is 1 MB (asr-cli serve --max-mb)"})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def live(app):
    """`app` served by uvicorn in a thread: its URL."""
    with serve_in_thread(app) as port:
        yield f"http://127.0.0.1:{port}"


def test_20_concurrent_requests_get_the_sequential_answers(live, synth_root):
    files = clips(synth_root, 5) * 4
    modes = ["greedy", "beam", "beam-lm", "greedy"] * 5

    def one(i):
        with open(files[i], "rb") as f:
            r = httpx.post(f"{live}/transcribe", files={"file": (files[i].name, f)}, data={"mode": modes[i]},
                           timeout=120)
        assert r.status_code == 200, r.text
        return {k: v for k, v in r.json().items() if k != "decode_seconds"}

    sequential = [one(i) for i in range(20)]
    with ThreadPoolExecutor(20) as pool:
        concurrent = list(pool.map(one, range(20)))
    assert concurrent == sequential
    assert len({r["text"] for r in sequential}) >= 5


def test_a_waiting_decode_does_not_hold_the_event_loop(live, app, synth_root):
    clip = clips(synth_root, 1)[0]
    replica = app.state.pool.get()  # every replica busy: the next transcription must wait
    result = {}
    waiting = threading.Thread(target=lambda: result.update(
        r=httpx.post(f"{live}/transcribe", files={"file": (clip.name, clip.read_bytes())}, timeout=60)))
    try:
        waiting.start()
        time.sleep(1.0)
        assert waiting.is_alive()
        assert httpx.get(f"{live}/health", timeout=5).json() == {"status": "ok"}  # the loop answers
        assert httpx.get(f"{live}/model", timeout=5).status_code == 200
        assert waiting.is_alive()
    finally:
        app.state.pool.put(replica)
    waiting.join(60)
    assert result["r"].status_code == 200 and result["r"].json()["text"]


def serve_cli(*args: str):
    """`asr-cli serve ARGS` in this process (it fails before serving): (exit code, stderr)."""
    from typer.testing import CliRunner

    from cli import app as cli_app

    r = CliRunner().invoke(cli_app, ["serve", *args])
    return r.exit_code, r.stderr.strip()


def test_serve_command_refuses_bad_options(chatty_ckpt, tmp_path):
    ckpt = ["--checkpoint", str(chatty_ckpt)]
    assert serve_cli(*ckpt, "--port", "70000") == (2, "--port: 70000 is out of range; allowed: 1<=x<=65535 (a TCP port)")
    assert serve_cli(*ckpt, "--workers", "0") == (
        2, "--workers: 0 is out of range; allowed: 1<=x<=64 (each replica is a copy of the model)")
    assert serve_cli(*ckpt, "--lm", str(tmp_path / "no.arpa")) == (
        1, f"language model {tmp_path / 'no.arpa'} not found (build one with `asr-cli lm build`)")
    code, err = serve_cli("--checkpoint", str(tmp_path / "none.pt"), "--port", str(free_port()))
    assert code == 1 and str(tmp_path / "none.pt") in err and len(err.splitlines()) == 1
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        assert serve_cli(*ckpt, "--port", str(port)) == (1, f"cannot serve on 127.0.0.1:{port}: Address already in use")


def test_serve_command_serves_the_page_and_the_api(chatty_ckpt, synth_root):
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "serve", "--checkpoint", str(chatty_ckpt),
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith(f"model {chatty_ckpt} loaded in ") and line.rstrip().endswith(
            f"open http://127.0.0.1:{port}/  (Ctrl-C stops)")
        url = f"http://127.0.0.1:{port}"
        page = httpx.get(url + "/").text
        assert "<title>cv-asr: try the model</title>" in page and "http" not in page.replace("http-equiv", "")
        for asset in ("app.js", "wav.js", "style.css"):
            body = httpx.get(f"{url}/static/{asset}").text
            assert body == (ROOT / "asr" / "apps" / "static" / asset).read_text()
            assert "http://" not in body and "https://" not in body  # nothing fetched from elsewhere
        clip = clips(synth_root, 1)[0]
        r = httpx.post(url + "/transcribe", files={"file": (clip.name, clip.read_bytes())}, timeout=60)
        assert r.json()["text"] == Recognizer.load(chatty_ckpt, device="cpu").transcribe(clip).text
    finally:
        proc.terminate()
        proc.wait(10)
