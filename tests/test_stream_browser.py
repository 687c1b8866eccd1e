"""The page's "Live" button in headless Chromium (tests/test_serve_browser.py's browser, skip and
CI rule): its fake microphone plays speech, the AudioWorklet sends 16 kHz PCM to /stream, the
text shows while the audio still plays, and the final text is what the API (and `asr-cli
transcribe --stream`) give for the audio the page sent."""

from __future__ import annotations

import base64
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import soxr

from asr import Recognizer
from conftest import ROOT
from test_serve_browser import chromium, open_page, pytestmark, served  # noqa: F401 (pytestmark: the skip rule)
from test_serve_stream import speaking, two_clips, with_pause

MIC_RATE = 48000  # what a microphone gives; the worklet brings it down to 16 kHz


@pytest.fixture(scope="module")
def stream_ckpt(streaming_ckpt, synth_root, tmp_path_factory):
    """tests/test_serve_stream.py's: letters on speech, blanks on silence (so pauses end segments)."""
    return speaking(streaming_ckpt, synth_root, tmp_path_factory)


@pytest.fixture(scope="module")
def mic(synth_root, tmp_path_factory):
    """A clip, a pause and the clip again (`with_pause`) as a 48 kHz WAV for the fake microphone
    (which plays it in a loop): (path, its seconds, the same at 16 kHz)."""
    audio = with_pause(two_clips(synth_root)[0], MIC_RATE)
    out = tmp_path_factory.mktemp("live-mic") / "mic.wav"
    sf.write(out, audio, MIC_RATE, subtype="PCM_16")
    return out, len(audio) / MIC_RATE, soxr.resample(audio, MIC_RATE, 16000)


SENT = """async () => {  // the PCM of the WAV the page made of what it sent: base64 of int16 LE
    const b = new Uint8Array(await (await fetch(document.getElementById("player").src)).arrayBuffer());
    let s = ""; for (let i = 44; i < b.length; i++) s += String.fromCharCode(b[i]);
    return [new DataView(b.buffer).getUint32(24, true), btoa(s)]; }"""


def test_live_shows_text_as_it_comes_and_ends_with_the_api_text(stream_ckpt, mic, tmp_path):
    path, seconds, reference_audio = mic
    with served("--checkpoint", str(stream_ckpt)) as url, chromium(path) as page:
        open_page(page, url)
        assert page.is_enabled("#live") and page.is_disabled("#live-stop")
        page.click("#live")
        page.wait_for_function("() => document.getElementById('live-text').textContent.trim().length > 0",
                               timeout=30_000)
        first = float(page.get_attribute("#live-text", "data-first-text-at"))
        assert 0 < first < seconds  # words showed while the microphone's audio still played
        assert page.is_visible("#live-partial")
        assert "provisional" in page.get_attribute("#live-partial", "class")
        # the whole of it once, and a little more, then Stop
        page.wait_for_function(f"() => live && live.samples >= {int((seconds + 0.5) * 16000)}",
                               timeout=int((seconds + 30) * 1000))
        assert page.locator("#segments li").count() >= 1  # the pause closed a segment, shown with word times
        page.click("#live-stop")
        page.wait_for_function("() => document.getElementById('live-status').textContent.includes('s of audio')")
        assert page.is_hidden("#error"), page.inner_text("#error")
        shown = page.inner_text("#live-text")
        assert page.inner_text("#live-partial") == ""
        rate, data = page.evaluate(SENT)
        assert rate == 16000
        sent = np.frombuffer(base64.b64decode(data), dtype="<i2")
        assert seconds + 0.5 <= len(sent) / 16000 < seconds + 5
        s = Recognizer.load(stream_ckpt, device="cpu").stream()
        s.accept(sent, 16000)
        assert shown == s.finish().text and shown
        wav = tmp_path / "sent.wav"  # and what `asr-cli transcribe --stream` prints for it
        sf.write(wav, sent, 16000, subtype="PCM_16")
        cli = subprocess.run([sys.executable, str(ROOT / "cli.py"), "transcribe", "--checkpoint", str(stream_ckpt),
                              "--stream", str(wav)], capture_output=True, text=True, timeout=120)
        assert cli.returncode == 0 and cli.stdout.strip() == shown, cli.stderr[-2000:]
        # what was sent is the microphone's audio, brought down to 16 kHz without damage: it
        # matches the clip (as soxr resamples it) at some lag, for a stretch of speech
        probe = reference_audio[: 16000]
        x = sent.astype(np.float32) / 32768
        corr = np.correlate(x[: 16000 * int(seconds + 1)], probe, "valid")
        lag = int(np.argmax(np.abs(corr)))
        got = x[lag: lag + len(probe)]
        assert np.dot(got, probe) / (np.linalg.norm(got) * np.linalg.norm(probe)) > 0.95
        segments = page.locator("#segments li")
        times = segments.first.locator(".seg-time").inner_text()
        assert times.endswith(" s") and "–" in times
        assert segments.first.locator(".word").count() >= 1
        # the upload path on the live recording: the whole file decoded at full context
        page.click("#transcribe")
        page.wait_for_selector("#result:not([hidden]), #error:not([hidden])")
        assert page.is_hidden("#error"), page.inner_text("#error")
        assert abs(float(page.inner_text("#stats").split(" s of audio")[0]) - len(sent) / 16000) < 0.01


def test_an_over_long_session_shows_the_reason_and_stops(stream_ckpt, mic):
    path, _, _ = mic
    with served("--checkpoint", str(stream_ckpt), "--max-seconds", "1") as url, chromium(path) as page:
        open_page(page, url)
        page.click("#live")
        page.wait_for_selector("#error:not([hidden])", timeout=30_000)
        assert page.inner_text("#error") == "the session's audio is over the 1 s limit (asr-cli serve --max-seconds)"
        page.wait_for_function("() => !document.getElementById('live').disabled")
        assert page.is_disabled("#live-stop") and page.evaluate("() => live") is None


def test_a_model_that_cannot_stream_has_no_live_button(chatty_ckpt):
    with served("--checkpoint", str(chatty_ckpt)) as url, chromium() as page:
        open_page(page, url)
        assert page.is_disabled("#live")
        assert "--streaming" in page.get_attribute("#live", "title")
