"""Streaming (asr/nets/encoders/conformer.py's "Streaming", asr/inference/streaming.py): the cached chunk path
equals the chunk-masked whole sequence, nothing after a chunk's edge changes it, the conv is
causal, training draws its chunks, a live session's text is the masked whole-file text for any
block size and rate, endpoints close segments without losing a word, and the CLI and the
refusals."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from asr import Recognizer
from asr.inference.streaming import Partial, StreamingSession, chunk_frames, mask_chunks, stream_file
from asr.nets.encoders import EncoderConfig, make_encoder
from asr.nets.encoders.conformer import FRONT_CONTEXT, MAX_TRAIN_CHUNK, ConvModule, chunk_attention_mask
from asr.tokens.units import BLANK

ROOT = Path(__file__).resolve().parents[1]


def stream_cfg(**kw) -> EncoderConfig:
    return EncoderConfig(**{**dict(encoder="conformer", n_mels=40, conv_channels=8, d_model=32, blocks=2, heads=4,
                                   ff_mult=2, conv_kernel=7, subsampling=4, dropout=0.1, streaming=True,
                                   layer_scale=0.1), **kw})


def chunked(enc, feats: torch.Tensor, chunk: int, left: int) -> torch.Tensor:
    """feats [1, T, F] through `forward_chunk`, C encoder frames at a time -> [1, T', D]."""
    t = feats.shape[1]
    att, conv = enc.stream_caches(left)
    padded = torch.cat([torch.zeros(1, FRONT_CONTEXT, feats.shape[2]), feats,
                        torch.zeros(1, 4 * chunk + 8, feats.shape[2])], dim=1)
    frames = int(enc.output_lengths(torch.tensor([t])))
    outs, offset = [], 0
    while offset < frames:
        last = 4 * (offset + chunk) >= t
        window = padded[:, 4 * offset: 4 * offset + 4 * chunk + FRONT_CONTEXT]
        y, valid, att, conv = enc.forward_chunk(window, torch.tensor(offset), torch.tensor(t if last else 10 ** 9),
                                                att, conv)
        outs.append(y[:, valid])
        offset += chunk
    return torch.cat(outs, dim=1)


@pytest.mark.parametrize("left_chunks", [-1, 0, 2])
def test_cached_chunks_equal_the_chunk_masked_whole_sequence(left_chunks):
    """The test that proves the caches: every length (each remainder mod 4), chunk sizes of 1
    to 8 encoder frames, all or a few chunks of left context."""
    torch.manual_seed(0)
    enc = make_encoder(stream_cfg(left_chunks=left_chunks)).eval()
    for t in (203, 200, 201, 202, 37, 5):
        for chunk in (1, 3, 8):
            feats = torch.randn(1, t, 40)
            enc.decode_chunk = chunk
            with torch.no_grad():
                whole, _ = enc(feats, torch.tensor([t]))
                left = 64 if left_chunks < 0 else left_chunks * chunk  # 64 >= every frame: all
                streamed = chunked(enc, feats, chunk, left)
            assert streamed.shape == whole.shape, (t, chunk)
            torch.testing.assert_close(streamed, whole, atol=2e-5, rtol=1e-4)


def test_a_chunk_never_peeks_past_its_edge():
    """Changing the features after a chunk's last frame (4 C (k + 1) feature frames) changes
    none of that chunk's outputs, nor any before; it does change the next chunk's (the test
    can fail)."""
    torch.manual_seed(1)
    enc = make_encoder(stream_cfg()).eval()
    chunk, t = 4, 160
    enc.decode_chunk = chunk
    feats = torch.randn(1, t, 40)
    with torch.no_grad():
        base, _ = enc(feats, torch.tensor([t]))
        for k in (0, 3, 6):
            edge = 4 * chunk * (k + 1)  # the first feature frame after chunk k
            other = feats.clone()
            other[:, edge:] = 10 * torch.randn(1, t - edge, 40)
            changed, _ = enc(other, torch.tensor([t]))
            upto = chunk * (k + 1)
            torch.testing.assert_close(changed[:, :upto], base[:, :upto], atol=1e-6, rtol=0)
            assert (changed[:, upto: upto + chunk] - base[:, upto: upto + chunk]).abs().max() > 1e-3


def test_full_context_sees_the_future_and_chunk_masks_do_not():
    """decode_chunk None (the whole-file default) is full context: there a change at the end
    reaches the first frames."""
    torch.manual_seed(2)
    enc = make_encoder(stream_cfg()).eval()
    feats = torch.randn(1, 120, 40)
    other = feats.clone()
    other[:, 100:] += 5
    with torch.no_grad():
        a, _ = enc(feats, torch.tensor([120]))
        b, _ = enc(other, torch.tensor([120]))
    assert (a[:, :5] - b[:, :5]).abs().max() > 1e-4


def test_causal_conv_reads_only_the_past():
    torch.manual_seed(3)
    conv = ConvModule(16, 7, 0.0, causal=True).eval()
    x = torch.randn(1, 40, 16)
    mask = torch.ones(1, 40, dtype=torch.bool)
    y = x.clone()
    y[:, 25:] = torch.randn(1, 15, 16)
    with torch.no_grad():
        a, b = conv(x, mask), conv(y, mask)
    torch.testing.assert_close(a[:, :25], b[:, :25])
    assert (a[:, 25:] - b[:, 25:]).abs().max() > 1e-3
    centred = ConvModule(16, 7, 0.0).eval()
    centred.load_state_dict(conv.state_dict())
    with torch.no_grad():
        assert (centred(x, mask)[:, :25] - centred(y, mask)[:, :25]).abs().max() > 1e-4  # the centred one peeks


def test_chunk_mask():
    m = chunk_attention_mask(torch.tensor([7, 5]), 7, chunk=3, left_chunks=1)[:, 0]  # [B, T, T]
    # frame 4 (chunk 1) sees chunks 0 and 1: frames 0-5; frame 7 would be chunk 2
    assert m[0, 4].tolist() == [True] * 6 + [False]
    assert m[0, 6].tolist() == [False] * 3 + [True] * 4  # chunk 2 sees chunks 1, 2 (left 1)
    assert m[1, 4].tolist() == [True] * 5 + [False] * 2  # padded keys never
    assert chunk_attention_mask(torch.tensor([7]), 7).shape == (1, 1, 1, 7)


def test_training_draws_full_context_or_a_chunk_per_batch():
    torch.manual_seed(4)
    enc = make_encoder(stream_cfg()).train()
    draws = [enc.chunk() for _ in range(400)]
    full = sum(d is None for d in draws)
    sizes = {d for d in draws if d is not None}
    assert 150 < full < 250  # FULL_CONTEXT_P 0.5
    assert min(sizes) == 1 and max(sizes) == MAX_TRAIN_CHUNK and len(sizes) == MAX_TRAIN_CHUNK
    enc.eval()
    assert enc.chunk() is None
    enc.decode_chunk = 5
    assert enc.chunk() == 5
    assert make_encoder(stream_cfg(streaming=False)).train().chunk() is None


def speech(broken_root: Path, n: int = 3) -> list[Path]:
    """`n` clips of speech of 2 s or more (the broken corpus has short and damaged ones too)."""
    clips = []
    for p in sorted((broken_root / "fr" / "clips").glob("*.mp3")):
        try:
            if "broken" not in p.name and sf.info(p).duration > 2.0:
                clips.append(p)
        except (sf.LibsndfileError, RuntimeError):
            continue
    return clips[:n]


def masked_text(rec: Recognizer, source, chunk_ms: float, sample_rate=None) -> str:
    """The whole-file decode under the chunk mask a stream of `chunk_ms` sees."""
    model = rec.transcriber.model
    mask_chunks(model, chunk_ms)
    try:
        return rec.transcribe(source, sample_rate=sample_rate).text
    finally:
        mask_chunks(model, None)


def fed(session: StreamingSession, wave: np.ndarray, rate: int, block: int) -> tuple[list[Partial], str]:
    partials = [session.accept(wave[i: i + block], rate) for i in range(0, len(wave), block)]
    return partials, session.finish().text


@pytest.mark.parametrize("chunk_ms", [160, 640])
def test_a_stream_gives_the_masked_whole_file_text(streaming_ckpt, broken_root, chunk_ms):
    """Any block size (a few samples, odd sizes, seconds): the final text is the chunk-masked
    whole-file decode's; full context differs (the model is causal in its chunks)."""
    rec = Recognizer.load(streaming_ckpt, device="cpu", chunk_ms=chunk_ms)
    assert rec.streaming
    differs, spelt = 0, 0
    for clip in speech(broken_root):
        wave, rate = sf.read(clip, dtype="float32")
        want = masked_text(rec, clip, chunk_ms)
        spelt += len(want)
        for block in (333, 4800, 10 ** 6):
            _, text = fed(rec.stream(), wave, rate, block)
            assert text == want, (clip.name, block)
        differs += rec.transcribe(clip).text != want
    assert spelt > 20  # the chatty model spells something
    assert differs  # full context is another decode


def test_a_stream_at_another_rate_equals_the_whole_file_at_that_rate(streaming_ckpt, broken_root):
    """The session resamples incrementally (soxr streamed) to the same features as a whole-file
    read: a 44.1 kHz and an 8 kHz stereo int16 version give the masked whole decode of the same
    samples."""
    import soxr

    rec = Recognizer.load(streaming_ckpt, device="cpu", chunk_ms=320)
    wave, rate = sf.read(speech(broken_root, 1)[0], dtype="float32")
    for new_rate in (44100, 8000):
        other = soxr.resample(wave, rate, new_rate).astype(np.float32)
        pcm = (np.clip(np.stack([other, 0.5 * other], axis=1), -1, 1) * 32767).astype(np.int16)
        want = masked_text(rec, pcm, 320, sample_rate=new_rate)
        _, text = fed(rec.stream(), pcm, new_rate, 1234)
        assert text == want and len(text) > 3, new_rate


def test_greedy_partials_only_grow_into_the_final_text(streaming_ckpt, broken_root):
    """Each partial is a prefix of the final text (greedy never revises: a word from the future
    would break it), and partials appear before the audio ends."""
    rec = Recognizer.load(streaming_ckpt, device="cpu", chunk_ms=160, endpoint_ms=None)
    wave, rate = sf.read(speech(broken_root, 1)[0], dtype="float32")
    partials, final = fed(rec.stream(), wave, rate, 1600)
    texts = [p.text for p in partials]
    assert all(final.startswith(t.rstrip()) for t in texts)
    assert texts[len(texts) // 2] and len(texts[len(texts) // 2]) < len(final)


def test_beam_with_the_lm_streams_as_it_decodes_whole(streaming_ckpt, broken_root, lm):
    """flashlight fed chunk by chunk ends where the whole-utterance search ends."""
    rec = Recognizer.load(streaming_ckpt, device="cpu", lm=lm, chunk_ms=320, endpoint_ms=None, beam=8)
    for clip in speech(broken_root, 2):
        wave, rate = sf.read(clip, dtype="float32")
        assert fed(rec.stream(), wave, rate, 2400)[1] == masked_text(rec, clip, 320)


class ScriptedRunner:
    """A runner that replays scripted CTC frames (unit ids, one per frame) as log-probs."""

    def __init__(self, ids: list[int], vocab: int, per_chunk: int):
        self.ids, self.vocab, self.per_chunk, self.pos = ids, vocab, per_chunk, 0

    def step(self, window, offset, total):
        ids = self.ids[self.pos: self.pos + self.per_chunk]
        self.pos += len(ids)
        lp = torch.full((len(ids), self.vocab), -20.0)
        lp[torch.arange(len(ids)), torch.tensor(ids, dtype=torch.long)] = 0.0
        return lp


def scripted_session(rec: Recognizer, words: list[str], gap_frames: int, endpoint_ms) -> StreamingSession:
    tok = rec.transcriber.tokenizer
    ids: list[int] = [BLANK] * 5
    for w in words:
        for u in tok.encode(w + " "):  # a real model spells the space between words too
            ids += [u, BLANK]
        ids += [BLANK] * gap_frames
    s = rec.stream(endpoint_ms=endpoint_ms)
    s.runner = ScriptedRunner(ids, len(tok), s.chunk * rec.transcriber.model.upsample)
    return s


def test_an_endpoint_closes_a_segment_and_loses_no_word(streaming_ckpt):
    """Words 1.2 s apart, the endpoint at 800 ms: one segment per word, closed as the blanks
    pass, the final text every word; no endpoint: one segment. A long silence holds no frame."""
    rec = Recognizer.load(streaming_ckpt, device="cpu", chunk_ms=160)
    shift = rec.transcriber.shift
    words = ["le", "chat", "dort", "ici"]
    gap = round(1.2 / shift)
    for endpoint_ms, segments in ((800, 4), (None, 1)):
        s = scripted_session(rec, words, gap, endpoint_ms)
        closed = []
        samples = np.zeros(16000 * 8, np.float32)
        samples[::50] = 0.1  # audible (a silent stream transcribes as "")
        for i in range(0, len(samples), 1600):
            p = s.accept(samples[i: i + 1600], 16000)
            closed += p.closed
            assert len(s.seg_frames) < 60  # bounded: a closed segment's frames are let go
        t = s.finish()
        assert t.text == " ".join(words)
        assert [seg.text for seg in s.segments] == (words if segments == 4 else [" ".join(words)])
        assert len(closed) == (4 if segments == 4 else 0)  # finish closes the last when no endpoint
        starts = [w.start for w in t.words]
        assert starts == sorted(starts) and starts[-1] > 3 * 1.2 * 0.9  # times from the stream's start


def test_short_stereo_blocks_keep_their_channels(streaming_ckpt, broken_root):
    """A block of 3 frames of 2 channels ([3, 2]: both axes short) reads as the stream's
    channels said earlier, so a file's last few samples are not refused."""
    rec = Recognizer.load(streaming_ckpt, device="cpu", chunk_ms=320)
    wave, rate = sf.read(speech(broken_root, 1)[0], dtype="float32")
    stereo = np.stack([wave, wave], axis=1)
    a, b = rec.stream(), rec.stream()
    n = len(stereo) - 3
    a.accept(stereo[:n], rate)
    a.accept(stereo[n:], rate)
    b.accept(wave, rate)
    assert a.finish().text == b.finish().text


def test_refusals(chatty_ckpt, streaming_ckpt):
    rec = Recognizer.load(chatty_ckpt, device="cpu")
    assert not rec.streaming
    with pytest.raises(ValueError, match="--streaming"):
        rec.stream()
    srec = Recognizer.load(streaming_ckpt, device="cpu")
    s = srec.stream()
    s.accept(np.zeros(100, np.float32), 16000)
    with pytest.raises(ValueError, match="16000 Hz"):
        s.accept(np.zeros(100, np.float32), 44100)
    with pytest.raises(ValueError, match="non-finite"):
        s.accept(np.array([np.nan], np.float32), 16000)
    with pytest.raises(ValueError, match="sample rate"):
        srec.stream().accept(np.zeros(10, np.float32), 0)
    assert s.finish().text == ""  # silence
    with pytest.raises(ValueError, match="finished"):
        s.accept(np.zeros(10, np.float32), 16000)
    with pytest.raises(ValueError, match="chunk_ms"):
        srec.stream(chunk_ms=10)
    with pytest.raises(ValueError, match="chunk_ms"):
        Recognizer.load(streaming_ckpt, device="cpu", chunk_ms=0)
    with pytest.raises(ValueError, match="endpoint_ms"):
        srec.stream(endpoint_ms=-5)
    assert chunk_frames(640) == 16 and chunk_frames(100) == 2


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], capture_output=True, text=True, cwd=ROOT)


def test_transcribe_stream_cli_prints_the_api_text(streaming_ckpt, broken_root, chatty_ckpt, tmp_path):
    clips = speech(broken_root, 2)
    proc = run_cli("transcribe", "--checkpoint", str(streaming_ckpt), "--stream", "--chunk-ms", "320",
                   *map(str, clips))
    assert proc.returncode == 0, proc.stderr
    rec = Recognizer.load(streaming_ckpt, device="cpu", chunk_ms=320)
    want = [stream_file(rec.stream(), clip).text for clip in clips]
    assert proc.stdout.splitlines() == want and all(want)
    bad = run_cli("transcribe", "--checkpoint", str(chatty_ckpt), "--stream", str(clips[0]))
    assert bad.returncode != 0 and "--streaming" in bad.stderr
    missing = run_cli("transcribe", "--checkpoint", str(streaming_ckpt), "--stream", str(tmp_path / "no.mp3"),
                      str(clips[0]))
    assert missing.returncode == 1 and "file not found" in missing.stderr
    lines = missing.stdout.splitlines()
    assert len(lines) == 2 and lines[0] == "" and lines[1]  # the failed file's empty line, then the other's text


def test_train_refuses_streaming_where_it_cannot(shards_dir, tmp_path):
    for args, fragment in ((["--preset", "small"], "Conformer"), (["--model", "las", "--preset", "conformer-small"],
                                                                 "CTC")):
        proc = run_cli("train", "--shards", str(shards_dir), "--out", str(tmp_path / "x"), "--streaming",
                       "--max-steps", "1", "--no-progress", *args)
        assert proc.returncode != 0 and fragment in proc.stderr, proc.stderr
