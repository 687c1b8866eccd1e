"""`asr-cli serve`'s live recognition: the WebSocket `/stream` (a model trained with --streaming).

The protocol (any WebSocket client can speak it; the page's "Live" button does):

 1. The client opens ws://HOST:PORT/stream and sends one JSON text message
        {"type": "config", "sample_rate": 16000, "mode": "greedy"}
    sample_rate: an integer from 8000 to 192000 (Hz) that every audio frame after it is at
    (the server resamples it to the model's 16 kHz); mode: optional, "greedy" (the default),
    "beam" or "beam-lm" (the latter only when the server was started with --lm). Keys other
    than these three are ignored.
    The server answers
        {"type": "ready", "sample_rate": 16000, "chunk_ms": 640, "mode": "greedy"}
    chunk_ms: the audio the model takes at a time: text can change once per chunk_ms of audio.
 2. The client sends the audio as binary messages: mono, 16-bit signed little-endian PCM at
    sample_rate, any whole number of samples per message (the page sends 100 ms). It need not
    wait for "ready": messages are handled in order.
 3. After each audio message whose decoding changed anything, the server sends, in this order,
        {"type": "final", "segment": {"text": "...", "start": 0.42, "end": 2.96,
                                      "words": [{"word": "...", "start": 0.42, "end": 0.8, "score": 0.93}, ...]}}
    for each segment that closed (an endpoint: a run of blanks after words, `Recognizer.load`'s
    endpoint_ms; times in seconds from the session's first sample; start, end and a word's
    times may be null where a word could not be placed), then
        {"type": "partial", "text": "<the whole session's text so far>", "partial": "<the open segment's>"}
    when that pair differs from the last one sent (or, the first time, from ("", "")).
    "partial" may still change (it is provisional); a final segment never does.
 4. The client sends {"type": "end"}. The server decodes the last frames, sends a "final" for
    each segment still open, then
        {"type": "done", "text": "...", "words": [{"word", "start", "end", "score"}, ...], "duration": 5.12}
    (the whole session: the text of every segment, duration in seconds of audio received) and
    closes the connection with code 1000.

Errors: the server sends ONE message {"type": "error", "error": "<one line saying why>"} and closes
with a code that says which kind (its reason repeats the line, cut to 123 bytes):
    1003  data it cannot take: a text message that is not JSON, audio before the config, an
          audio message of an odd number of bytes, audio the recogniser refuses
    1008  a message against the protocol: the first message is not a config, JSON that is not
          an object with a "type", an unknown "type", a second config, a sample_rate that is not
          an integer from 8000 to 192000, an unknown mode, beam-lm without --lm, a model that
          cannot stream (not trained with --streaming), no message for `ServeConfig.stream_idle`
          seconds (30 by default)
    1009  the session's audio is over --max-seconds
    1011  an error in the server itself
    1013  the server already holds --max-sessions live sessions: try again later
Audio received before an error is dropped with its session. The socket is read all the time,
whatever the decoder's pace: audio sent faster than real time waits (bounded by --max-seconds)
and every message is answered in order, so keepalive pings never time out on a fast client. A message over 16 MiB is refused by
uvicorn itself (close 1009, no error message). Other sessions and requests go on either way.

How sessions share the model: each session takes the replica (asr/apps/serve.py's pool) with the
fewest open sessions and makes its own `Recognizer.stream()` from that replica's Recognizer of
its mode (greedy; beam; beam-lm: prefix beam search with the LM). A session holds only its
decoding state: the weights are shared and read only, so sessions do not take a replica out of
the pool the way an upload does, and a live session never waits behind a long upload for its
replica. Making a session, each accept() and finish() run in worker threads, never on the
event loop, so /health and every other session's messages are answered while one decodes; at
most `workers` such threads run at once for all sessions together (a capacity limiter of their
own: the uploads' limiter never makes a live session wait behind a long file). A client that
goes away mid-session loses its session once the block being decoded is done: no thread waits
on it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass

import anyio
import numpy as np
from fastapi import FastAPI, WebSocket
from starlette.websockets import WebSocketDisconnect

from asr.inference.api import Recognizer

MIN_RATE, MAX_RATE = 8000, 192000  # telephone audio to studio audio; anything else is a client's mistake
DEFAULT_MODE = "greedy"  # the lightest: a live session costs little unless it asks for more

NORMAL, UNSUPPORTED, POLICY, TOO_BIG, INTERNAL, AGAIN = 1000, 1003, 1008, 1009, 1011, 1013  # RFC 6455 codes
CONFIG_FIRST = 'send {"type": "config", "sample_rate": N} first, then the audio'

log = logging.getLogger(__name__)


class Refused(Exception):
    """A message the protocol refuses: its one-line reason (str) and the close code."""

    def __init__(self, reason: str, code: int):
        super().__init__(reason)
        self.code = code


@dataclass
class Config:
    sample_rate: int
    mode: str


def add_stream_route(app: FastAPI, cfg, replicas: list[dict[str, Recognizer]], info: dict) -> None:
    """Register `/stream` on `app` (made by asr/apps/serve.py's create_app, which serves `cfg` with
    `replicas`) and say in `info` (its /model answer) whether and how the model streams."""
    first = replicas[0]["greedy"]
    info["streaming"] = first.streaming
    # the chunk a session really takes (a whole number of encoder frames), not the one asked for
    info["chunk_ms"] = _ms(first.stream().chunk_ms) if first.streaming else None
    info["stream_modes"] = list(replicas[0]) if first.streaming else []
    sessions = [0] * len(replicas)  # open sessions per replica: a new one goes to the least busy
    threads = anyio.CapacityLimiter(len(replicas))
    app.state.stream_sessions = sessions  # tests watch them go back to 0 after a client leaves
    app.state.stream_threads = threads

    def parse_config(message: dict) -> Config:
        if message.get("type") != "config":
            raise Refused(CONFIG_FIRST, POLICY)
        rate = message.get("sample_rate")
        if isinstance(rate, bool) or not isinstance(rate, int) or not MIN_RATE <= rate <= MAX_RATE:
            raise Refused(f"config: sample_rate must be an integer from {MIN_RATE} to {MAX_RATE} (Hz), "
                          f"got {json.dumps(rate)[:40]}", POLICY)
        mode = message.get("mode")
        mode = DEFAULT_MODE if mode is None else mode
        if not isinstance(mode, str) or mode not in replicas[0]:
            if mode == "beam-lm":
                raise Refused("mode beam-lm needs a language model: start asr-cli serve with --lm", POLICY)
            raise Refused(f"unknown mode {json.dumps(mode)[:40]}: use one of {', '.join(replicas[0])}", POLICY)
        return Config(rate, mode)

    async def session(ws: WebSocket, replica: int) -> None:
        config = parse_config(await receive(ws, cfg.stream_idle, config_first=True))
        try:
            stream = await anyio.to_thread.run_sync(replicas[replica][config.mode].stream, limiter=threads)
        except ValueError as e:  # a model that cannot stream
            raise Refused(str(e), POLICY) from None
        await send(ws, {"type": "ready", "sample_rate": config.sample_rate, "chunk_ms": _ms(stream.chunk_ms),
                        "mode": config.mode})
        shown, finals = ("", ""), 0  # shown: the last (text, partial) sent
        inbox: asyncio.Queue = asyncio.Queue()
        reader = asyncio.create_task(read_audio(ws, inbox, int(cfg.max_seconds * config.sample_rate),
                                                cfg.max_seconds, cfg.stream_idle))
        try:
            await decode_session(ws, inbox, stream, config, shown, finals)
        finally:
            reader.cancel()

    async def decode_session(ws: WebSocket, inbox: asyncio.Queue, stream, config: Config, shown, finals) -> None:
        """The session's messages, as `read_audio` queued them, through the stream."""
        while True:
            message = await inbox.get()
            if isinstance(message, BaseException):  # what the reader met: the client left, a refusal
                raise message
            if isinstance(message, bytes):
                pcm = np.frombuffer(message, dtype="<i2")
                try:
                    p = await anyio.to_thread.run_sync(stream.accept, pcm, config.sample_rate, limiter=threads)
                except ValueError as e:
                    raise Refused(str(e), UNSUPPORTED) from None
                for segment in p.closed:
                    await send(ws, {"type": "final", "segment": segment.to_dict()})
                finals += len(p.closed)
                if (p.text, p.partial) != shown:
                    shown = p.text, p.partial
                    await send(ws, {"type": "partial", "text": p.text, "partial": p.partial})
            elif message.get("type") == "end":
                t = await anyio.to_thread.run_sync(stream.finish, limiter=threads)
                for segment in stream.segments[finals:]:
                    await send(ws, {"type": "final", "segment": segment.to_dict()})
                await send(ws, {"type": "done", "text": t.text, "words": [w.to_dict() for w in t.words],
                                "duration": t.duration})
                await ws.close(NORMAL)
                return
            elif message.get("type") == "config":
                raise Refused("config was already sent: one per session (open another connection for another)",
                              POLICY)
            else:
                raise Refused(f"unknown message type {json.dumps(message.get('type'))[:40]}: "
                              'expected binary audio or {"type": "end"}', POLICY)

    @app.websocket("/stream")
    async def stream_route(ws: WebSocket) -> None:
        await ws.accept()
        if cfg.max_sessions and sum(sessions) >= cfg.max_sessions:
            await refuse(ws, f"the server holds its {cfg.max_sessions} live sessions (asr-cli serve --max-sessions): "
                             "try again later", AGAIN)
            return
        replica = min(range(len(sessions)), key=sessions.__getitem__)
        sessions[replica] += 1
        try:
            await session(ws, replica)
        except Refused as e:
            await refuse(ws, str(e), e.code)
        except WebSocketDisconnect:  # the client left (or its connection broke): its session goes with it
            pass
        except Exception as e:  # a bug: the client hears of it, the server goes on
            log.exception("/stream session failed")
            await refuse(ws, f"internal error: {type(e).__name__}: {e}".splitlines()[0], INTERNAL)
        finally:
            sessions[replica] -= 1


async def read_audio(ws: WebSocket, inbox: asyncio.Queue, limit: int, max_seconds: float, idle: float) -> None:
    """Every message of a session into `inbox` as it arrives, checked (whole 16-bit samples, the
    session under --max-seconds), while the decoder works through them at its own pace. The
    socket is drained all the time, so the client's and the server's keepalive pings are
    answered however far decoding is behind (a client sending faster than real time was closed
    with 1011 "keepalive ping timeout" when the unread messages filled websockets' queue); what
    waits here is bounded by --max-seconds of audio."""
    samples = 0
    try:
        while True:
            message = await receive(ws, idle)
            if isinstance(message, bytes):
                if len(message) % 2:
                    raise Refused(f"audio must be 16-bit PCM: a message of {len(message)} bytes is not a whole "
                                  "number of samples", UNSUPPORTED)
                samples += len(message) // 2
                if samples > limit:
                    raise Refused(f"the session's audio is over the {max_seconds:g} s limit "
                                  "(asr-cli serve --max-seconds)", TOO_BIG)
            await inbox.put(message)
            if isinstance(message, dict) and message.get("type") == "end":
                return
    except (Refused, WebSocketDisconnect) as e:
        await inbox.put(e)


def _bounded_int(text: str) -> int | float:
    return int(text) if len(text) <= 30 else float("inf")


def _ms(ms: float) -> float | int:
    return int(ms) if float(ms).is_integer() else ms  # 640, not 640.0


async def receive(ws: WebSocket, idle: float, config_first: bool = False) -> dict | bytes:
    """The next message: bytes (audio) or a JSON object with a "type". WebSocketDisconnect when
    the client left; Refused for a message the protocol cannot take or none within `idle` s."""
    try:
        message = await asyncio.wait_for(ws.receive(), idle)
    except asyncio.TimeoutError:
        raise Refused(f"no message for {idle:g} s: the session is closed", POLICY) from None
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    if message.get("bytes") is not None:
        if config_first:
            raise Refused(CONFIG_FIRST, UNSUPPORTED)
        return message["bytes"]
    try:  # an integer of thousands of digits is a number too large, not a message that is no JSON
        parsed = json.loads(message.get("text") or "", parse_int=_bounded_int)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than any message of the protocol
        raise Refused("a text message must be JSON, e.g. {\"type\": \"end\"}; audio goes in binary messages",
                      UNSUPPORTED) from None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("type"), str):
        raise Refused('a JSON message must be an object with a "type" (config or end)', POLICY)
    return parsed


async def send(ws: WebSocket, message: dict) -> None:
    await ws.send_text(json.dumps(message, ensure_ascii=False))


async def refuse(ws: WebSocket, reason: str, code: int) -> None:
    """The one error message, then the close; nothing when the client has already gone."""
    try:
        await send(ws, {"type": "error", "error": reason})
        await ws.close(code, reason.encode()[:123].decode(errors="ignore"))  # a close reason holds 123 bytes
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass
