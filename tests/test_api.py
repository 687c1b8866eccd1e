"""The Python API (asr/inference/api.py): file, samples and batches, word times from the CTC alignment,
the CLI's --format txt|json|srt|vtt on top of it, and the README's example, run."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch

from asr import Recognizer
from asr.store import checkpoint
from asr.decoding.timestamps import Word
from asr.inference.api import TranscriptionError
from asr.inference.subtitles import cues
from asr.nets.models import build_model
from conftest import LANG, ROOT
from pipeline.audio import load_audio

SRT_TIME = r"(\d\d):(\d\d):(\d\d),(\d\d\d)"
VTT_TIME = SRT_TIME.replace(",", r"\.")


def clip_files(synth_root: Path, n: int) -> list[Path]:
    return sorted((synth_root / LANG / "clips").glob("*.mp3"))[:n]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), "transcribe", "--device", "cpu", *args],
                          capture_output=True, text=True, timeout=300)


def test_transcribe_equals_the_cli(chatty_ckpt, synth_root):
    clip = clip_files(synth_root, 1)[0]
    r = Recognizer.load(chatty_ckpt, device="cpu").transcribe(clip)
    assert r.ok and r.text and r.path == str(clip) and r.id == clip.stem
    plain = cli("--checkpoint", str(chatty_ckpt), str(clip))
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout == r.text + "\n"
    as_json = cli("--checkpoint", str(chatty_ckpt), "--format", "json", str(clip))
    obj = json.loads(as_json.stdout)
    assert obj["text"] == r.text and obj["words"] == [w.to_dict() for w in r.words]
    assert [w["word"] for w in obj["words"]] == r.text.split()
    assert set(obj["words"][0]) == {"word", "start", "end", "score"}
    alias = json.loads(cli("--checkpoint", str(chatty_ckpt), "--json", str(clip)).stdout)
    assert {**alias, "time": 0} == {**obj, "time": 0}  # --json: the same object (decoding time aside)


def test_transcribe_many_in_order_past_a_bad_file(chatty_ckpt, synth_root, tmp_path):
    good = clip_files(synth_root, 4)
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(np.random.default_rng(1).bytes(3000))
    paths = good[:2] + [bad] + good[2:]
    rec = Recognizer.load(chatty_ckpt, device="cpu")
    alone = [rec.transcribe(p) for p in good]
    assert len({r.text for r in alone}) == 4 and all(r.text for r in alone)
    for batch_size in (1, 2, 16):
        results = list(rec.transcribe_many(paths, batch_size=batch_size))
        assert [r.path for r in results] == list(map(str, paths))
        failure = results[2]
        assert not failure.ok and failure.text == "" and list(failure.words) == []
        assert failure.error.startswith("not a readable audio file")
        ok = results[:2] + results[3:]
        assert [r.text for r in ok] == [r.text for r in alone], batch_size
        assert [r.words for r in ok] == [r.words for r in alone], batch_size
    with pytest.raises(TranscriptionError, match=f"{bad}: not a readable audio file"):
        rec.transcribe(bad)


def test_with_options_shares_the_model_and_decodes_as_load(chatty_ckpt, synth_root):
    """`with_options` gives the decoding `load` would with those options, on the same model
    object (serve keeps one model per replica and a Recognizer per decoding mode)."""
    clips = clip_files(synth_root, 3)
    greedy = Recognizer.load(chatty_ckpt, device="cpu")
    beam = greedy.with_options(beam=4)
    assert beam.transcriber.model is greedy.transcriber.model
    assert beam.transcriber.decoder is not greedy.transcriber.decoder
    assert greedy.transcriber.decoder.beam is None and beam.transcriber.decoder.beam is not None
    loaded = Recognizer.load(chatty_ckpt, device="cpu", beam=4)
    assert [beam.transcribe(c).text for c in clips] == [loaded.transcribe(c).text for c in clips]
    assert [greedy.transcribe(c).text for c in clips] == [Recognizer.load(chatty_ckpt, device="cpu").transcribe(c).text
                                                            for c in clips]  # the original is unchanged
    with pytest.raises(TypeError, match="unknown decoding option.*bean"):
        greedy.with_options(bean=4)


def test_samples_at_44k_equal_the_file(chatty_ckpt, synth_root, tmp_path):
    clip = clip_files(synth_root, 1)[0]
    wave, _, _ = load_audio(clip)  # 16 kHz
    at44 = soxr.resample(wave, 16000, 44100).astype(np.float32)
    stereo = np.stack([at44, 0.5 * at44], axis=1)  # [n, 2]
    wav = tmp_path / "clip44.wav"
    sf.write(wav, stereo, 44100, subtype="FLOAT")
    rec = Recognizer.load(chatty_ckpt, device="cpu")
    from_file = rec.transcribe(wav)
    from_array = rec.transcribe(stereo, sample_rate=44100)
    assert from_file.text and from_array.text == from_file.text and from_array.words == from_file.words
    assert from_array.path == "<array>" and from_array.duration == pytest.approx(from_file.duration, abs=1e-3)
    assert rec.transcribe(np.zeros(8000, np.float32), sample_rate=16000).text == ""  # silence
    with pytest.raises(TranscriptionError, match="sample_rate"):
        rec.transcribe(stereo)
    with pytest.raises(TranscriptionError, match="non-finite"):
        rec.transcribe(np.full(1000, np.nan, np.float32), sample_rate=16000)


def concatenation(clips: list[Path], gaps: list[float], out: Path) -> list[tuple[float, float]]:
    """`clips` at 16 kHz in one WAV file, each after a gap of its own room tone (its first
    0.1 s, tiled: the fixture model has only heard the corpus's recording chain, never digital
    silence), and each clip's [start, end) in seconds."""
    parts, bounds, t = [], [], 0.0
    for clip, gap in zip(clips, gaps):
        wave, _, _ = load_audio(clip)
        parts += [np.resize(wave[:1600], round(gap * 16000)), wave]
        start = t + gap
        t = start + len(wave) / 16000
        bounds.append((start, t))
    sf.write(out, np.concatenate(parts), 16000, subtype="FLOAT")
    return bounds


@pytest.fixture(scope="module")
def long_file(learnt, handful_shards, synth_root, tmp_path_factory) -> dict:
    clips = [synth_root / LANG / "clips" / r["path"] for r in learnt["rows"][:3]]
    out = tmp_path_factory.mktemp("long") / "long.wav"
    bounds = concatenation(clips, [0.7, 1.3, 2.1], out)
    return {"path": out, "clips": clips, "bounds": bounds}


def reference_spikes(ckpt: Path, clip: Path, text: str) -> list[tuple[float, float]]:
    """Each word's (first, last) CTC spike in seconds, by torchaudio's forced_align and
    merge_tokens of the reference text, computed here apart from asr/decoding/timestamps.py (20 ms
    frames: ctc/small's 10 ms hop x its x4 conv front / its two CTC frames per encoder frame)."""
    from torchaudio.functional import forced_align, merge_tokens

    from asr.nets.models import load_model
    from pipeline.audio import compute_features

    model, tokenizer, ck = load_model(ckpt)
    shift = 0.01 * model.encoder.time_reduction / model.upsample
    mean, std = ck.card.cmvn_arrays()
    feats, _ = compute_features(clip)
    x = torch.from_numpy((feats.astype(np.float32) - mean) / std)[None]
    with torch.no_grad():
        log_probs, _ = model.log_probs(x, torch.tensor([x.shape[1]]))
    ids = tokenizer.encode(text)
    labels, scores = forced_align(log_probs, torch.tensor([ids], dtype=torch.int32), blank=0)
    spans = merge_tokens(labels[0], scores[0].exp())
    assert len(spans) == len(ids)
    space = tokenizer.encode(" ")[0]
    words, current = [], []
    for span in spans + [None]:
        if span is None or span.token == space:
            words.append((current[0].start * shift, current[-1].end * shift))
            current = []
        else:
            current.append(span)
    return words


def test_word_times(learnt, long_file):
    """Word times against the CTC spikes of the reference text's forced alignment (computed
    apart, with torchaudio). Not against the audio itself, nor in a concatenation of clips:
    the overfit fixture model memorised 6 utterances, so its emissions run up to ~0.4 s ahead
    of the speech (a BiGRU sees the whole clip) and it hallucinates in the gaps between
    clips; no fixture model recognises a concatenation reliably."""
    rec = Recognizer.load(learnt["ckpt"], device="cpu")
    for clip, row in zip(long_file["clips"], learnt["rows"]):
        r = rec.transcribe(clip)
        assert len(r.text.split()) == len(row["text"].split())  # word for word (a letter may be off)
        assert sum(a != b for a, b in zip(r.text, row["text"])) <= 3, (r.text, row["text"])
        spikes = reference_spikes(learnt["ckpt"], clip, row["text"])
        assert len(r.words) == len(spikes) == len(row["text"].split())
        for (word, start, end, score), (first, last) in zip(r.words, spikes):  # Words unpack as tuples
            assert start == pytest.approx(first, abs=0.2) and end == pytest.approx(last, abs=0.2), (word, clip)
            assert 0 < score <= 1
        starts = [w.start for w in r.words]
        assert starts == sorted(starts) and all(w.start < w.end for w in r.words)
        assert 0 <= r.words[0].start and r.words[-1].end <= r.duration + 0.04
        # the known text placed by forced alignment (Recognizer.align; the raw sentence normalised)
        aligned = rec.align(clip, row["sentence"])
        assert [w.word for w in aligned] == row["text"].split()
        assert [(w.start, w.end) for w in aligned] == [(round(a, 3), round(b, 3)) for a, b in spikes]


def parse_cues(text: str, vtt: bool) -> list[tuple[float, float, str]]:
    stamp = VTT_TIME if vtt else SRT_TIME
    blocks = text.strip("\n").split("\n\n")
    if vtt:
        assert blocks[0] == "WEBVTT"
        blocks = blocks[1:]
    out = []
    for n, block in enumerate(blocks, start=1):
        lines = block.split("\n")
        if not vtt:
            assert lines[0] == str(n)
            lines = lines[1:]
        m = re.fullmatch(f"{stamp} --> {stamp}", lines[0])
        assert m, lines[0]
        g = list(map(int, m.groups()))
        out.append((g[0] * 3600 + g[1] * 60 + g[2] + g[3] / 1000, g[4] * 3600 + g[5] * 60 + g[6] + g[7] / 1000,
                    " ".join(lines[1:])))
    return out


def test_srt_and_vtt(learnt, long_file, tmp_path):
    path = str(long_file["path"])
    text = Recognizer.load(learnt["ckpt"], device="cpu").transcribe(path).text
    for fmt in ("srt", "vtt"):
        result = cli("--checkpoint", str(learnt["ckpt"]), "--format", fmt, path)
        assert result.returncode == 0, result.stderr
        parsed = parse_cues(result.stdout, fmt == "vtt")
        assert " ".join(c[2] for c in parsed) == text
        for (s, e, t), nxt in zip(parsed, parsed[1:] + [None]):
            assert s < e and e - s <= 7.0 and len(t) <= 42
            assert nxt is None or e <= nxt[0]
        assert parsed[-1][1] <= long_file["bounds"][-1][1] + 0.2
    # several files: one subtitle file each with --out-dir, refused without
    clips = [str(c) for c in long_file["clips"][:2]]
    refused = cli("--checkpoint", str(learnt["ckpt"]), "--format", "srt", *clips)
    assert refused.returncode == 2 and "give --out-dir" in refused.stderr and refused.stdout == ""
    out = tmp_path / "subs"
    written = cli("--checkpoint", str(learnt["ckpt"]), "--format", "vtt", "--out-dir", str(out), *clips)
    assert written.returncode == 0, written.stderr
    files = [out / f"{Path(c).stem}.vtt" for c in clips]
    assert written.stdout.splitlines() == list(map(str, files))
    for f in files:
        assert parse_cues(f.read_text(encoding="utf-8"), vtt=True)


def test_cues_are_cut_at_7_seconds_and_42_characters():
    words = [Word(f"mot{i}", 0.5 * i, 0.5 * i + 0.3, 0.9) for i in range(40)]
    got = cues(words, 20.0)
    assert " ".join(c[2] for c in got) == " ".join(w.word for w in words)
    assert all(e - s <= 7.0 and len(t) <= 42 for s, e, t in got) and len(got) > 3
    assert cues([Word("sans", None, None, None), Word("temps", None, None, None)], 3.0) == [(0.0, 3.0, "sans temps")]


def test_readme_example_runs(learnt, long_file, handful_shards, tmp_path):
    from asr.decoding.lm import build_lm_from_shards

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Python API"):]
    code = re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)
    lm = tmp_path / "fr-3gram.arpa"
    build_lm_from_shards(handful_shards, 3, lm)
    clip = long_file["clips"][0]
    for old, new in [("runs/fr-ctc/best.pt", learnt["ckpt"]), ("lm/fr-3gram.arpa", lm), ("clip.mp3", clip),
                     ("other.wav", tmp_path / "missing.wav")]:
        assert old in code
        code = code.replace(old, str(new))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    expected = Recognizer.load(learnt["ckpt"], lm=lm, device="cpu").transcribe(clip).text
    lines = result.stdout.splitlines()
    assert expected and lines[0] == expected
    assert f"{clip} {expected}" in lines and f"{tmp_path / 'missing.wav'} failed: file not found" in lines


def las_checkpoint(tiny_ctc: Path, out: Path, ctc_weight: float) -> Path:
    """`tiny_ctc`'s checkpoint (features, CMVN, units) around a seeded las/tiny model."""
    from asr.nets.models import model_config

    ckpt = checkpoint.load(tiny_ctc)
    config = model_config("las", "tiny", ckpt["model"]["vocab_size"], ckpt["model"]["n_mels"],
                          {"ctc_weight": ctc_weight})
    torch.manual_seed(0)
    ckpt["model"], ckpt["state_dict"] = config, build_model(config).state_dict()
    checkpoint.save(out, {k: v for k, v in ckpt.items() if k != "format"})
    return out


def test_las_words_have_times_only_with_a_ctc_head(tiny_ctc, synth_root, tmp_path):
    clip = clip_files(synth_root, 1)[0]
    with_head = Recognizer.load(las_checkpoint(tiny_ctc, tmp_path / "las-ctc.pt", 0.3), device="cpu")
    words = with_head.align(clip, "Il a dit oui.")
    assert [w.word for w in words] == ["il", "a", "dit", "oui"]
    assert all(w.start is not None and w.start < w.end for w in words)
    assert [w.start for w in words] == sorted(w.start for w in words)
    r = with_head.transcribe(clip)
    assert [w.word for w in r.words] == r.text.split()

    without = Recognizer.load(las_checkpoint(tiny_ctc, tmp_path / "las.pt", 0.0), device="cpu")
    assert [tuple(w) for w in without.align(clip, "Il a dit oui.")] == [
        ("il", None, None, None), ("a", None, None, None), ("dit", None, None, None), ("oui", None, None, None)]
    r = without.transcribe(clip)
    assert r.text and all(w.start is None and w.end is None and w.score is None for w in r.words)
    srt = cli("--checkpoint", str(tmp_path / "las.pt"), "--format", "srt", str(clip))
    assert srt.returncode == 0, srt.stderr
    assert re.fullmatch(rf"1\n00:00:00,000 --> {SRT_TIME}\n{re.escape(r.text)}\n\n", srt.stdout), srt.stdout


def test_cli_output_options_fail_in_one_line(chatty_ckpt, synth_root, tmp_path, monkeypatch):
    import errno

    from typer.testing import CliRunner

    import pipeline.atomic
    from cli import app

    clip = str(clip_files(synth_root, 1)[0])
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    other = tmp_path / "elsewhere"
    other.mkdir()
    twin = other / Path(clip).name
    twin.write_bytes(Path(clip).read_bytes())
    cases = [(["--format", "xml"], 2, "--format: 'xml' is not one of txt, json, srt, vtt"),
             (["--out-dir", str(a_file)], 2, f"--out-dir: {a_file} is a file, not a folder"),
             (["--out-dir", str(tmp_path / "o"), str(twin)], 2,
              f"--out-dir: several inputs are named {Path(clip).stem}.*")]
    for extra, code, message in cases:
        result = CliRunner().invoke(app, ["transcribe", "--checkpoint", str(chatty_ckpt), clip, *extra])
        assert result.exit_code == code, result.output
        assert result.stderr.strip() == message or result.stderr.startswith(message), result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""
    assert not (tmp_path / "o").exists()

    def full(path, text):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(pipeline.atomic, "write_text", full)
    out = tmp_path / "subs"
    result = CliRunner().invoke(app, ["transcribe", "--checkpoint", str(chatty_ckpt), clip, "--format", "srt",
                                      "--out-dir", str(out)])
    assert result.exit_code == 1 and "no space left" in result.stderr.lower() and str(out) in result.stderr
    assert "Traceback" not in result.output and not list(out.glob("*.srt"))
