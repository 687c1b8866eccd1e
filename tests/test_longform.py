"""Long recordings (asr/inference/longform.py): block features, windowed decoding, stitched words,
partly readable files, and the CLI on a file longer than one window."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from asr import Recognizer
from asr.decoding.timestamps import Word
from asr.inference.longform import FeatureStream, keep, transcribe_stream, windows
from asr.inference.subtitles import srt, vtt
from conftest import LANG, ROOT
from pipeline.audio import compute_features, load_audio


def concatenation(synth_root, seconds: float, rate: int, channels: int) -> tuple[np.ndarray, list]:
    """Synthetic clips, 0.6 s of room tone between them, repeated up to `seconds`: float32
    [n, channels] at `rate`, and each clip's path."""
    clips = sorted((synth_root / LANG / "clips").glob("*.mp3"))
    parts, used, n = [], [], 0
    while n < seconds * 16000:
        clip = clips[len(used) % len(clips)]
        wave, _, _ = load_audio(clip)
        parts += [np.resize(wave[:1600], 9600), wave]
        used.append(clip)
        n += 9600 + len(wave)
    mono = np.concatenate(parts)
    if rate != 16000:
        import soxr
        mono = soxr.resample(mono, 16000, rate).astype(np.float32)
    x = mono[:, None] if channels == 1 else np.stack([mono, 0.5 * mono], axis=1)
    return x, used


@pytest.mark.parametrize("rate,channels,fmt", [(44100, 2, "FLAC"), (48000, 1, "WAV"), (16000, 1, "WAV")])
def test_block_features_equal_the_whole_file(synth_root, tmp_path, rate, channels, fmt):
    x, _ = concatenation(synth_root, 12, rate, channels)
    path = tmp_path / f"a.{fmt.lower()}"
    sf.write(path, x, rate, format=fmt, subtype="FLOAT" if fmt == "WAV" else "PCM_16")
    whole, info = compute_features(path)
    stream = FeatureStream(path, block_s=0.73)  # blocks of odd sizes: edges fall everywhere
    chunks = list(stream)
    assert len(chunks) > 10
    blocks = np.concatenate(chunks)
    assert blocks.shape == whole.shape and blocks.dtype == whole.dtype
    np.testing.assert_allclose(blocks.astype(np.float32), whole.astype(np.float32), atol=1e-2, rtol=0)
    assert stream.duration == pytest.approx(info["duration"], abs=1e-9) and stream.warning is None


def test_mp3_block_features_equal_the_whole_file_but_at_a_few_block_edges(synth_root, tmp_path):
    """libsndfile's MP3 decoding of a block-wise read differs from a whole read by up to 1e-2
    in the samples right after a few block edges (its mpg123 buffering): those frames only."""
    x, _ = concatenation(synth_root, 12, 48000, 1)
    path = tmp_path / "a.mp3"
    sf.write(path, x, 48000, format="MP3")
    whole, _ = compute_features(path)
    blocks = np.concatenate(list(FeatureStream(path, block_s=0.73)))
    assert blocks.shape == whole.shape
    off = np.abs(blocks.astype(np.float32) - whole.astype(np.float32)).max(axis=1) > 1e-2
    assert off.mean() < 0.05, off.sum()


def synthetic_stream(words: list[tuple[float, float]], seconds: float):
    """Feature frames (10 ms) loud inside the words, quiet between them."""
    frames = np.full((int(seconds * 100), 4), -10.0, np.float16)
    for a, b in words:
        frames[int(a * 100): int(b * 100)] = 0.0

    class Stream:
        peak, duration, warning = 1.0, seconds, None

        def __iter__(self):
            for i in range(0, len(frames), 37):
                yield frames[i: i + 37]
    return Stream(), frames


def test_no_word_lost_or_doubled_at_window_edges():
    """Words every ~0.5 s for 100 s; the fake decoder returns the words it sees wholly inside its
    window, times jittered by 20 ms, and misses those cut by the window's edges: the stitched
    words are each word once, in order, at its time."""
    rng = np.random.default_rng(0)
    spans, t = [], 0.3
    while t < 99:
        d = rng.uniform(0.2, 0.6)
        spans.append((round(t, 2), round(t + d, 2)))
        t += d + rng.uniform(0.1, 0.5)
    stream, frames = synthetic_stream(spans, 100.0)
    seen = []

    def decode(feats):
        start = next(w.start for w in wins if w.feats is feats) / 100
        end = start + len(feats) / 100
        seen.append((start, end))
        out = []
        for i, (a, b) in enumerate(spans):
            if a >= start and b <= end:
                j = rng.uniform(-0.02, 0.02)
                out.append(Word(f"w{i}", round(a - start + j, 3), round(b - start + j, 3), 0.9))
        return out, 0.0

    wins = []
    orig = windows

    def recording(*args, **kw):
        for w in orig(*args, **kw):
            wins.append(w)
            yield w
    import asr.inference.longform as lf
    lf.windows, saved = recording, lf.windows
    try:
        result = transcribe_stream(stream, decode, 0.01, window_s=10.0, context_s=1.0, search_s=2.0, align=4)
    finally:
        lf.windows = saved
    assert len(seen) > 10  # many windows, many edges
    assert [w.word for w in result.words] == [f"w{i}" for i in range(len(spans))]
    for w, (a, b) in zip(result.words, spans):
        assert abs(w.start - a) <= 0.021 and abs(w.end - b) <= 0.021
    cuts = [w.own_to for w in wins[:-1]]
    assert all(c % 4 == 0 for c in cuts) and cuts == sorted(cuts)
    # the cuts fall in the quiet between words
    assert all(frames[c].max() < -5 for c in cuts)


def test_keep_assigns_each_word_to_one_window():
    words = [Word("a", 0.0, 0.4, 1.0), Word("b", 0.5, 1.1, 1.0), Word("x", None, None, None), Word("c", 1.2, 1.6, 1.0)]
    left = keep(words, 10.0, 0.0, 10.8, 2.0)
    right = keep(words, 10.0, 10.8, None, 2.0)
    assert [w.word for w in left] == ["a"] and [w.word for w in right] == ["b", "x", "c"]
    assert right[0] == Word("b", 10.5, 11.1, 1.0)
    unplaced = [Word(c, None, None, None) for c in "abcd"]  # spread evenly: centres 10.25, 10.75, 11.25, 11.75
    assert [w.word for w in keep(unplaced, 10.0, 0.0, 11.0, 2.0)] == ["a", "b"]
    assert [w.word for w in keep(unplaced, 10.0, 11.0, None, 2.0)] == ["c", "d"]


def edit_distance(a: list[str], b: list[str]) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


@pytest.fixture(scope="module")
def learnt_long(learnt, synth_root, tmp_path_factory):
    """The 6 clips the `learnt` model spells right, each after 0.8 s of its room tone, twice
    over (~50 s) at 16 kHz."""
    clips = [synth_root / LANG / "clips" / r["path"] for r in learnt["rows"]] * 2
    parts = []
    for clip in clips:
        wave, _, _ = load_audio(clip)
        parts += [np.resize(wave[:1600], 12800), wave]
    path = tmp_path_factory.mktemp("learnt-long") / "long.wav"
    sf.write(path, np.concatenate(parts), 16000, subtype="FLOAT")
    return path


def test_windowed_decoding_agrees_with_whole_file_decoding(learnt, learnt_long):
    """test_api's `learnt` model (it spells its 6 clips right) on its clips twice over (~50 s),
    decoded whole and in 8 s windows (a cut every 4 to 6 s: about 10 cuts). A cut falls in the
    quiet between words and each word is kept by exactly one window, so the transcripts may
    differ only where a window's edge changed what the BiGRU heard: at most one word edit per
    cut, and none on average (measured: 0 to 1 edits in all)."""
    whole = Recognizer.load(learnt["ckpt"], device="cpu", window_s=None).transcribe(learnt_long)
    rec = Recognizer.load(learnt["ckpt"], device="cpu", window_s=8.0)
    windowed = rec.transcribe(learnt_long)
    a, b = whole.text.split(), windowed.text.split()
    assert len(a) > 40
    cuts = int(np.ceil(whole.duration / 4.0))
    assert edit_distance(a, b) <= max(2, cuts // 4), (edit_distance(a, b), len(a), whole.text, windowed.text)
    assert [w.word for w in windowed.words] == b
    starts = [w.start for w in windowed.words]
    assert starts == sorted(starts) and starts[-1] < windowed.duration
    assert windowed.duration == whole.duration
    # a file shorter than the window is decoded whole: exactly today's output
    short = learnt_long.parent / "short.wav"
    sf.write(short, sf.read(learnt_long, dtype="float32")[0][: 7 * 16000], 16000, subtype="FLOAT")
    today, now = Recognizer.load(learnt["ckpt"], device="cpu", window_s=None).transcribe(short), rec.transcribe(short)
    assert (now.text, now.words, now.duration) == (today.text, today.words, today.duration) and now.text


def test_windows_of_an_upsampling_ctc_head_start_on_encoder_frames(learnt, learnt_long, tmp_path):
    """A CTC head with two output frames per encoder frame (ctc/small's upsample 2): windows must
    start on a multiple of the encoder's x4, not of the 2 input frames of a CTC frame, or a
    window's encoder frames are not the whole file's. The twin of `learnt` whose head repeats
    each frame's posteriors (CTC collapses the repeats) spells exactly what `learnt` spells."""
    from asr.store import checkpoint

    ckpt = checkpoint.load(learnt["ckpt"])
    ckpt["model"] = {**ckpt["model"], "options": {**ckpt["model"]["options"], "upsample": 2}}
    for name in ("head.weight", "head.bias"):
        ckpt["state_dict"][name] = torch.cat([ckpt["state_dict"][name]] * 2)
    twin = tmp_path / "twin.pt"
    checkpoint.save(twin, ckpt)
    from asr.inference.longform import CONTEXT_S, SEARCH_S, FeatureStream, windows

    rec = Recognizer.load(twin, device="cpu", window_s=8.0)
    assert rec.transcriber.encoder_stride() == 4 and rec.transcriber.shift == pytest.approx(0.02)
    base = Recognizer.load(learnt["ckpt"], device="cpu", window_s=8.0)
    assert base.transcriber.encoder_stride() == 4
    # the same windows for both (starts and cuts on the encoder's x4), and in each the same text
    # (which window keeps a word near a cut goes by its aligned centre, 20 ms finer on the twin:
    # the stitched texts may differ there, the windows' may not)
    t, b = rec.transcriber, base.transcriber
    frames = lambda s: round(s * 100)  # noqa: E731  (10 ms frames)
    layout = list(windows(iter(FeatureStream(learnt_long, t.features)), frames(8.0), frames(CONTEXT_S),
                          frames(SEARCH_S), t.encoder_stride()))
    assert len(layout) >= 3 and all(w.start % 4 == 0 and (w.own_to is None or w.own_to % 4 == 0) for w in layout)
    for w in layout:
        twin_words, _ = t._window_words(w.feats)
        base_words, _ = b._window_words(w.feats)
        assert [x.word for x in twin_words] == [x.word for x in base_words]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), "transcribe", "--device", "cpu", *args],
                          capture_output=True, text=True, timeout=300)


def test_cli_srt_and_vtt_of_a_long_file(learnt, learnt_long):
    rec = Recognizer.load(learnt["ckpt"], device="cpu")  # the CLI's 30 s window: 2 windows on ~50 s
    r = rec.transcribe(learnt_long)
    for fmt, render, sep in (("srt", srt, ","), ("vtt", vtt, ".")):
        proc = cli("--checkpoint", str(learnt["ckpt"]), "--format", fmt, str(learnt_long))
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == render(r.words, r.duration)
        stamps = re.findall(rf"(\d\d):(\d\d):(\d\d){re.escape(sep)}(\d\d\d) --> (\d\d):(\d\d):(\d\d){re.escape(sep)}(\d\d\d)",
                            proc.stdout)
        assert len(stamps) > 6
        times = [(int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000, int(h2) * 3600 + int(m2) * 60 + int(s2)
                  + int(ms2) / 1000) for h, m, s, ms, h2, m2, s2, ms2 in stamps]
        assert all(a < b for a, b in times)
        assert all(b1 <= a2 for (_, b1), (a2, _) in zip(times, times[1:]))
        assert times[-1][1] > 30  # past the first window


def test_a_long_mp3_damaged_mid_file_is_transcribed_up_to_the_damage(chatty_ckpt, synth_root, tmp_path):
    x, _ = concatenation(synth_root, 70, 48000, 1)
    good = tmp_path / "good.mp3"
    sf.write(good, x, 48000, format="MP3")
    data = good.read_bytes()
    half = len(data) // 2
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(data[:half] + bytes(5000) + data[half + 5000:])  # zeros over a stretch of frames
    proc = cli("--checkpoint", str(chatty_ckpt), "--json", str(bad))
    assert proc.returncode == 0, proc.stderr
    import json
    o = json.loads(proc.stdout)
    m = re.fullmatch(r"audio unreadable after (\d+\.\d\d)s of (\d+\.\d\d)s: transcribed up to there", o["warning"])
    assert m, o["warning"]
    read, total = float(m.group(1)), float(m.group(2))
    assert 20 < read < 50 and total == pytest.approx(len(x) / 48000, abs=0.1)
    assert o["duration"] == pytest.approx(read, abs=0.05)
    assert o["text"] and max(w["end"] for w in o["words"]) <= read + 0.05  # the last frame is centred on the end
    assert f"warning: {bad}: {o['warning']}" in proc.stderr


def test_las_long_files_in_windows_with_a_ctc_head_whole_without(tiny_ctc, synth_root, tmp_path):
    from test_api import las_checkpoint

    x, _ = concatenation(synth_root, 14, 16000, 1)
    path = tmp_path / "long.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    with_head = Recognizer.load(las_checkpoint(tiny_ctc, tmp_path / "las-ctc.pt", 0.3), device="cpu", window_s=6.0)
    assert with_head.transcriber.window_s == 6.0
    r = with_head.transcribe(path)
    assert r.text and [w.word for w in r.words] == r.text.split()
    placed = [w.start for w in r.words if w.start is not None]  # the untrained model's text rarely aligns
    assert placed == sorted(placed) and r.duration == pytest.approx(len(x) / 16000, abs=1e-3)
    without = Recognizer.load(las_checkpoint(tiny_ctc, tmp_path / "las.pt", 0.0), device="cpu", window_s=6.0)
    assert without.transcriber.window_s is None  # no word times to stitch windows by: decoded whole
    whole = without.transcribe(path)
    assert whole.text == Recognizer.load(tmp_path / "las.pt", device="cpu", window_s=None).transcribe(path).text


def test_a_missing_lm_is_one_line(chatty_ckpt, synth_root, tmp_path):
    clip = sorted((synth_root / LANG / "clips").glob("*.mp3"))[0]
    proc = cli("--checkpoint", str(chatty_ckpt), "--lm", str(tmp_path / "absent.arpa"), str(clip))
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip() == (f"language model {tmp_path / 'absent.arpa'} not found "
                                   "(build one with `asr-cli lm build`)")
    with pytest.raises(FileNotFoundError, match="absent.arpa not found"):
        Recognizer.load(chatty_ckpt, lm=tmp_path / "absent.arpa", device="cpu")
