"""`asr-cli serve`: a trained model behind a web page and a small JSON API (FastAPI + uvicorn).

    asr-cli serve --checkpoint runs/demo-ctc/best.pt --lm runs/demo-ctc/lm-3gram.arpa --port 8000

    GET  /            the page (asr/apps/static/: upload or record, transcript with word times,
                      spectrogram, attention for LAS models); nothing fetched from elsewhere
    GET  /health      {"status": "ok"}
    GET  /model       what is served: kind, preset, language, units, steps, dev CER, modes
    POST /transcribe  multipart: `file` (any audio soundfile reads: MP3, WAV, FLAC, OGG ...),
                      optional `mode` (greedy, beam, beam-lm) and `plots` (1: PNG figures too)
                      -> {"text", "words": [{"word", "start", "end"}], "duration",
                          "decode_seconds", "mode"} (+ "spectrogram", "attention": data: URLs)
    WS   /stream      live recognition of a --streaming model: config, binary PCM, partial / final
                      results (the protocol: asr/apps/serve_stream.py)

Bad input gets a 4xx and {"error": "<one line>"}: not multipart or no `file` (400), a file
name with a control character (400), an empty file or one that is not audio (422), a body
over --max-mb (413, refused while it streams in: at most the limit is ever read), a body not
sent in full within `body_timeout` seconds (408: a slow or short-sent upload never holds a
connection for ever), audio longer than --max-seconds (413), an unknown mode (400).

Decoding runs in worker threads, never on the event loop, at most one thread per replica
(a capacity limiter): the model is shared through a pool of `workers` replicas (one by
default), a request takes a replica, decodes and gives it back, so no two threads ever run one
model (or one beam-search decoder) at once, and other requests wait on the loop without taking
a thread. `/`, `/health` and `/model` run on the loop itself, so they answer at once however
many uploads wait. bench/bench_serve.py measures 1 vs 2 replicas. FastAPI's `/docs` and
`/redoc` pages are off: they load their scripts from a CDN, and nothing here is fetched from
the internet (`/openapi.json` still describes the API).

The browser records the microphone as PCM (Web Audio) and sends a 16-bit WAV it encodes
itself: MediaRecorder's webm/opus would need ffmpeg (libsndfile cannot read webm), and a WAV
is read by the same soundfile path as every other upload.
"""

from __future__ import annotations

import asyncio
import base64
import io
import queue
import re
import tempfile
import time
from pathlib import Path

import anyio
import numpy as np
import soundfile as sf
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.requests import ClientDisconnect

from asr.apps.options import ServeConfig  # noqa: F401  (every serve default: a module without torch)
from asr.apps.serve_stream import add_stream_route
from asr.decoding.decoder import modes
from asr.decoding.las import LASGreedyDecoder
from asr.decoding.options import DecodeOptions
from asr.inference.api import Recognizer, TranscriptionError
from pipeline.audio import AudioError, compute_features

STATIC = Path(__file__).parent / "static"
MODES = ("greedy", "beam", "beam-lm")
FORM_OVERHEAD = 64 * 1024  # multipart boundaries, part headers and the small fields, beyond the file


class BodyTooLarge(Exception):
    pass


class BodyTimeout(Exception):
    pass


_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,10}")  # what of an upload's name the temporary file keeps


def load_replica(cfg: ServeConfig) -> dict[str, Recognizer]:
    """One model, as a Recognizer per decoding mode (beam-lm only with an LM)."""
    greedy = Recognizer.load(cfg.checkpoint, device=cfg.device, chunk_ms=cfg.live.chunk_ms,
                             endpoint_ms=cfg.live.endpoint_ms or None)
    kind = greedy.transcriber.decoder.kind
    beam = cfg.beam or DecodeOptions().search_beam(kind)
    out = {}
    for mode in modes(kind):  # the decoding registry's modes of this kind; a search also with the LM
        out[mode] = greedy if mode == "greedy" else greedy.with_options(beam=beam)
        if mode != "greedy" and cfg.lm is not None:
            out[f"{mode}-lm"] = greedy.with_options(beam=beam, lm=cfg.lm)
    return out


def model_info(cfg: ServeConfig, replica: dict[str, Recognizer]) -> dict:
    """What /model says: the checkpoint's model, units, training and the decoding modes."""
    t = replica["greedy"].transcriber
    info = {"checkpoint": Path(cfg.checkpoint).name, "kind": t.decoder.kind, "preset": None, "lang": t.loaded.lang,
            "units": f"{type(t.tokenizer).__name__.replace('Tokenizer', '').lower()} ({len(t.tokenizer)})",
            "steps": None, "dev_cer": None}
    loaded = t.loaded
    info["preset"], info["steps"] = loaded.card.preset, loaded.step
    cer = loaded.best_cer if loaded.best_cer is not None else loaded.dev_cer
    info["dev_cer"] = None if cer is None or not np.isfinite(cer) else round(float(cer), 4)
    info["modes"] = {name: _describe(rec) for name, rec in replica.items()}
    info["default_mode"] = "beam-lm" if "beam-lm" in replica else "greedy"
    info["lm"] = None if cfg.lm is None else Path(cfg.lm).name
    info.update(sample_rate=replica["greedy"].sample_rate, max_mb=cfg.max_mb, max_seconds=cfg.max_seconds,
                workers=cfg.workers, device=str(t.device))
    return info


def _describe(rec: Recognizer) -> str:
    d = rec.transcriber.decoder
    if d.beam is None:
        return "greedy"
    o = d.options
    if o.lm is None:
        return f"beam search, {d.beam} hypotheses"
    return (f"beam search, {d.beam} hypotheses, + LM {Path(o.lm).name} (weight {o.lm_weight:g}, "
            f"word score {o.word_score:g})")


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _limited(receive, limit: int, timeout: float | None = None):
    """An ASGI `receive` that raises BodyTooLarge once more than `limit` body bytes came in, and
    BodyTimeout when the body is not complete `timeout` seconds after the first call (a client
    sending a byte a second, or less than its Content-Length, is cut off then)."""
    seen = 0
    deadline = None

    async def wrapped():
        nonlocal seen, deadline
        loop = asyncio.get_running_loop()
        if timeout is not None:
            deadline = deadline or loop.time() + timeout
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0.001))
            except asyncio.TimeoutError:
                raise BodyTimeout from None
        else:
            message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge
        return message

    return wrapped


def create_app(cfg: ServeConfig, replicas: list[dict[str, Recognizer]] | None = None) -> FastAPI:
    """The app serving `cfg.checkpoint`; `replicas` (from load_replica) are loaded when not given."""
    replicas = replicas or [load_replica(cfg) for _ in range(cfg.workers)]
    pool: queue.Queue = queue.Queue()
    for r in replicas:
        pool.put(r)
    info = model_info(cfg, replicas[0])
    too_large = f"file too large: the limit is {cfg.max_mb:g} MB (asr-cli serve --max-mb)"

    slow = f"the upload did not arrive within {cfg.body_timeout:g} s; send it again"
    decoding = anyio.CapacityLimiter(len(replicas))  # threads waiting for a replica would starve the others

    # no /docs or /redoc: FastAPI's pages load their scripts from a CDN
    app = FastAPI(title="cv-asr", description="Speech recognition with a cv-asr checkpoint.", docs_url=None,
                  redoc_url=None)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.state.pool = pool  # the idle replicas (tests hold one back to see requests wait off the loop)
    add_stream_route(app, cfg, replicas, info)  # WebSocket /stream: live recognition (asr/apps/serve_stream.py)

    # async: answered on the event loop, never queued behind the uploads in the thread pool
    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC / "index.html")

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/model")
    async def model():
        return info

    @app.post("/transcribe")
    async def transcribe(request: Request):
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > cfg.max_bytes + FORM_OVERHEAD:
            return error(413, too_large)
        request = Request(request.scope, _limited(request.receive, cfg.max_bytes + FORM_OVERHEAD, cfg.body_timeout))
        try:
            form = await request.form(max_files=1, max_fields=8)
        except BodyTooLarge:
            return error(413, too_large)
        except BodyTimeout:
            return error(408, slow)
        except ClientDisconnect:
            return error(400, "the upload was cut off")
        except Exception as e:  # starlette's MultiPartException, a bad content type
            return error(400, f"expected a multipart/form-data upload with a field 'file' ({e})"
                         if str(e) else "expected a multipart/form-data upload with a field 'file'")
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            return error(400, "no file: send the audio as the multipart field 'file'")
        mode = str(form.get("mode") or info["default_mode"])
        if mode not in MODES:
            return error(400, f"unknown mode {mode!r}: use one of {', '.join(MODES)}")
        if mode not in replicas[0]:
            return error(400, "mode beam-lm needs a language model: start asr-cli serve with --lm")
        if upload.size is not None and upload.size > cfg.max_bytes:
            return error(413, too_large)
        name = upload.filename or "upload"
        if not name.isprintable():  # a NUL or a newline: no file is named so, and it would reach a path
            return error(400, f"the file name {name[:80]!r} holds a control character; rename the file")
        plots = str(form.get("plots", "0")).lower() in ("1", "true", "yes", "on")
        data = await upload.read()
        await upload.close()
        return await anyio.to_thread.run_sync(_decode, data, name, mode, plots, limiter=decoding)

    def _decode(data: bytes, name: str, mode: str, plots: bool) -> JSONResponse:
        if not data:
            return error(422, f"{name}: empty file (0 bytes)")
        suffix = Path(name).suffix
        with tempfile.NamedTemporaryFile(suffix=suffix if _SUFFIX.fullmatch(suffix) else "") as f:
            f.write(data)
            f.flush()
            try:
                seconds = sf.info(f.name).duration
            except (RuntimeError, sf.LibsndfileError):
                seconds = None  # not audio: the recogniser says why
            if seconds is not None and seconds > cfg.max_seconds:
                return error(413, f"{name}: {seconds:.0f} s of audio is over the {cfg.max_seconds:g} s limit "
                                  "(asr-cli serve --max-seconds)")
            replica = pool.get()
            try:
                rec = replica[mode]
                try:
                    r = rec.transcribe(f.name)
                except TranscriptionError as e:
                    return error(422, f"{name}: {e.failure.reason}")
                out = {"text": r.text,
                       "words": [{"word": w.word, "start": w.start, "end": w.end} for w in r.words],
                       "duration": r.duration, "decode_seconds": r.time, "mode": mode}
                if plots:
                    out.update(_figures(rec, Path(f.name), r.duration))
            finally:
                pool.put(replica)
        if r.duration > cfg.max_seconds:  # a file whose header understated its length
            return error(413, f"{name}: {r.duration:.0f} s of audio is over the {cfg.max_seconds:g} s limit "
                              "(asr-cli serve --max-seconds)")
        return JSONResponse(out)

    return app


def _figures(rec: Recognizer, path: Path, duration: float) -> dict:
    """The log-Mel spectrogram of `path` and, for a LAS model, its greedy attention: PNG data: URLs."""
    import torch
    from matplotlib.figure import Figure  # not pyplot: its global state is not thread-safe

    t = rec.transcriber
    try:
        feats, _ = compute_features(path, t.features)  # float16 [T, F]: what the model is given
    except AudioError:  # a silent clip
        return {}
    out = {}
    fps = t.features.frames_per_second()
    fig = Figure(figsize=(10, 2.6))
    ax = fig.subplots()
    ax.imshow(feats.astype(np.float32).T, origin="lower", aspect="auto", cmap="magma",
              extent=(0, len(feats) / fps, 0, feats.shape[1]))
    ax.set_xlabel("time (s)")
    ax.set_ylabel("Mel bin")
    ax.set_title("log-Mel spectrogram", fontsize=9)
    out["spectrogram"] = _png(fig)
    if t.decoder.kind == "las":
        x = torch.from_numpy((feats.astype(np.float32) - t.mean) / t.std)[None].to(t.device)
        with torch.no_grad():
            hyps, atts = LASGreedyDecoder(t.model, DecodeOptions()).with_attention(
                x, torch.tensor([len(feats)], device=t.device))
        att = atts[0].cpu().numpy()
        step_s = t.model.time_reduction / fps
        fig = Figure(figsize=(10, 2.8))
        ax = fig.subplots()
        ax.imshow(att, origin="upper", aspect="auto", cmap="viridis", interpolation="nearest",
                  extent=(0, att.shape[1] * step_s, att.shape[0] - 0.5, -0.5))
        ax.set_xlim(0, len(feats) / fps)
        ax.set_xlabel("time (s)")
        ax.set_ylabel("output unit")
        ax.set_title("attention (greedy decoding)", fontsize=9)
        out["attention"] = _png(fig)
    return out


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def run(cfg: ServeConfig, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Bind host:port (an OSError, before the model loads, when it is taken), load the model,
    then serve until Ctrl-C: uvicorn, one process, decoding in its thread pool."""
    import socket

    import uvicorn

    sock = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        started = time.perf_counter()
        app = create_app(cfg)
        shown = "localhost" if host in ("0.0.0.0", "::") else host
        print(f"model {cfg.checkpoint} loaded in {time.perf_counter() - started:.1f}s; "
              f"open http://{shown}:{sock.getsockname()[1]}/  (Ctrl-C stops)", flush=True)
        uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
    finally:
        sock.close()
