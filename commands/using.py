"""Using a trained model: `eval`, `lm build`, `checkpoint upgrade|average`, `transcribe`, `serve`, `export`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from asr.apps.options import ServeConfig
from asr.decoding.options import DecodeOptions, LiveOptions
from asr.inference.options import EvalConfig, TranscribeOptions
from commands.base import app, bounded, config_options, fail, fields_of, shards_lang
from pipeline.atomic import os_error_message
from pipeline.shardformat import refuse_out_inside_shards


@app.command("eval")
@bounded
@config_options(EvalConfig, DecodeOptions)
def eval_(
    checkpoint: Path = typer.Option(..., help="Checkpoint made by `asr-cli train` (e.g. runs/fr-ctc/best.pt)."),
    shards: Path = typer.Option(..., help="Shard folder made by `asr-cli shards`."),
    **options,
):
    """CER / WER of a checkpoint on a split: per-utterance results, summary, real-time factor."""
    import os

    from asr.inference.evaluate import CoverageError, evaluate, format_summary
    from asr.store.checkpoint import CheckpointError
    from pipeline.lock import LockedError

    cfg = EvalConfig(checkpoint=checkpoint, shards=shards, decode=DecodeOptions(**fields_of(DecodeOptions, options)),
                     **fields_of(EvalConfig, options))
    try:
        if cfg.out is not None:  # the default, beside the checkpoint, is the run's own folder
            refuse_out_inside_shards(cfg.out)
        summary = evaluate(cfg)
    except (CheckpointError, CoverageError, FileNotFoundError, ValueError, LockedError) as e:
        fail(str(e))
    except OSError as e:  # a full disk: "no space left on <path>"
        fail(os_error_message(e))
    if int(os.environ.get("RANK", "0")) == 0:
        typer.echo(format_summary(summary))


lm_app = typer.Typer(no_args_is_help=True, help="Word n-gram language models for beam search.")
app.add_typer(lm_app, name="lm")


@lm_app.command("build")
@bounded
def lm_build(
    shards: Path = typer.Option(..., help="Shard folder: the LM is estimated on its train sentences only."),
    order: int = typer.Option(3, help="N-gram order."),
    out: Optional[Path] = typer.Option(None, help="ARPA file to write (default: lm/<lang>-<order>gram.arpa)."),
    extra_text: Optional[Path] = typer.Option(None, help="More raw text, one sentence per line (normalised here; "
                                                         "dev/test sentences dropped)."),
):
    """Interpolated modified Kneser-Ney n-gram LM (ARPA) from the shards' train text."""
    import time

    from asr.decoding.lm import build_lm_from_shards

    lang = shards_lang(shards)
    out = out or Path("lm") / f"{lang}-{order}gram.arpa"
    started = time.time()
    try:
        stats = build_lm_from_shards(shards, order, out, extra_text=extra_text)
    except (FileNotFoundError, ValueError) as e:
        fail(str(e))
    except OSError as e:  # a full disk, a read-only folder: one line, as every command says it
        fail(os_error_message(e))
    typer.echo(_format_lm_stats(stats, out, time.time() - started))


def _format_lm_stats(stats: dict, out: Path, seconds: float) -> str:
    lines = [f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) in {seconds:.1f}s",
             f"  sentences: {stats['sentences']} ({stats['train_sentences']} distinct train sentences"
             + (f", {stats['extra_sentences']} extra; {stats['extra_rejected']} extra lines rejected by the "
                f"normaliser, {stats['extra_heldout_dropped']} equal to a dev/test sentence dropped"
                if stats["extra_sentences"] or stats["extra_rejected"] or stats["extra_heldout_dropped"] else "")
             + ")",
             f"  vocabulary: {stats['vocab_size']} words"]
    for n, (count, d, fallback) in enumerate(zip(stats["ngrams"], stats["discounts"], stats["discount_fallback"]),
                                             start=1):
        lines.append(f"  {n}-grams: {count:>9}   discounts D1 {d[0]:.3f}  D2 {d[1]:.3f}  D3+ {d[2]:.3f}"
                     + ("  (fallback)" if fallback else ""))
    return "\n".join(lines)


checkpoint_app = typer.Typer(no_args_is_help=True, help="Checkpoint files.")
app.add_typer(checkpoint_app, name="checkpoint")


@checkpoint_app.command("upgrade")
def checkpoint_upgrade(
    old: Path = typer.Argument(..., help="A checkpoint written by an earlier cv-asr (a pickled .pt)."),
    out: Optional[Path] = typer.Option(None, help="Where to write it (default: OLD with .safe.pt)."),
):
    """Convert an earlier cv-asr checkpoint (a pickle, which can carry code) into the current
    format (safetensors + JSON). Only tensors and plain data are read from it: anything else
    is refused, not run."""
    from asr.store.checkpoint import CheckpointError, upgrade

    out = out or old.with_name(old.stem + ".safe.pt")
    try:
        upgrade(old, out)
    except CheckpointError as e:
        fail(str(e))
    except OSError as e:  # a full disk: "no space left on <path>"
        fail(os_error_message(e))
    typer.echo(f"wrote {out}")


@checkpoint_app.command("average")
def checkpoint_average(
    checkpoints: list[Path] = typer.Argument(..., help="Checkpoints of one model (e.g. runs/fr-ctc/avg/*.pt)."),
    out: Path = typer.Option(..., help="Where to write their mean."),
):
    """The mean of several checkpoints' weights (as `train --average` writes averaged.pt): a
    checkpoint for eval and transcribe, with the last one's model config, tokenizer and CMVN."""
    from asr.store.checkpoint import CheckpointError
    from asr.training.averaging import average_checkpoints

    try:
        average_checkpoints(checkpoints, out)
    except (CheckpointError, ValueError) as e:
        fail(str(e))
    except OSError as e:
        fail(os_error_message(e))
    typer.echo(f"wrote {out}: the mean of {len(checkpoints)} checkpoints")


_FORMATS = ("txt", "json", "srt", "vtt")


def streamed(rec, files: list[Path]):
    """Each file through rec.stream() (asr/inference/streaming.py): on a terminal its text is rewritten on
    one line as it grows (stderr), then the result as without --stream; failures as
    transcribe_many gives them."""
    import sys

    from asr.inference.streaming import stream_file
    from asr.inference.transcribe import FileFailure
    from pipeline.audio import AudioError

    live = sys.stderr.isatty()

    def show(p, seconds):
        sys.stderr.write(f"\r\033[K{seconds:6.1f}s  {p.text[-150:]}")
        sys.stderr.flush()

    for path in files:
        try:
            result = stream_file(rec.stream(), path, show if live else None)
        except AudioError as e:
            result = FileFailure.of_audio_error(str(path), e)
        except OSError as e:
            result = FileFailure(str(path), e.strerror or type(e).__name__)
        except ValueError as e:  # samples the stream refuses (NaN, not audio): this file fails, the next goes on
            result = FileFailure(str(path), str(e))
        if live:
            sys.stderr.write("\r\033[K")
        yield result


@app.command()
@bounded
@config_options(TranscribeOptions, DecodeOptions, LiveOptions)
def transcribe(
    files: list[Path] = typer.Argument(..., help="Audio files: MP3, WAV, FLAC ... any rate, mono or stereo."),
    checkpoint: Path = typer.Option(..., help="Checkpoint made by `asr-cli train`."),
    format: str = typer.Option("txt", "--format", help="txt: one line of text per file. json: one JSON object "
                               "per line and file: id, path, text, duration, time, words [{word, start, end, "
                               "score}] (seconds); id, path, error for a file that failed. srt / vtt: subtitles "
                               "(cues of at most 7 s / 42 characters) of ONE file on stdout; several files need "
                               "--out-dir."),
    json_lines: bool = typer.Option(False, "--json", help="Same as --format json."),
    out_dir: Optional[Path] = typer.Option(None, help="Write <out-dir>/<file name>.<format> per input (any "
                                           "format) and print the path written, one line per file."),
    **options,
):
    """Transcribe audio files: one line per file, in order: its text (or JSON object, or written
    path), or an empty line for a file that failed (the reason on stderr; the exit status is then 1).
    With --format srt / vtt and no --out-dir, the one file's subtitles."""
    import json

    from asr.store.checkpoint import CheckpointError
    from pipeline.atomic import write_text

    fmt = "json" if json_lines else format
    if fmt not in _FORMATS:
        fail(f"--format: {format!r} is not one of {', '.join(_FORMATS)}", 2)
    if fmt in ("srt", "vtt") and out_dir is None and len(files) > 1:
        fail(f"--format {fmt} prints the subtitles of one file; for {len(files)} files give --out-dir "
             f"(one .{fmt} file per input)", 2)
    if out_dir is not None:
        if out_dir.exists() and not out_dir.is_dir():
            fail(f"--out-dir: {out_dir} is a file, not a folder", 2)
        stems = [f.stem for f in files]
        twice = sorted({s for s in stems if stems.count(s) > 1})
        if twice:
            fail(f"--out-dir: several inputs are named {twice[0]}.*; their outputs would overwrite each other", 2)
        inputs = {f.resolve() for f in files}
        clash = next((f for f in files if (out_dir / f"{f.stem}.{fmt}").resolve() in inputs), None)
        if clash is not None:
            fail(f"--out-dir: the transcript of {clash} would be written to {out_dir / f'{clash.stem}.{fmt}'}, "
                 "which is one of the inputs: give another --out-dir or --format", 2)

    def render(result) -> str:
        from asr.inference import subtitles

        if fmt == "txt":
            return result.text
        if fmt == "json":
            return json.dumps(result.to_dict(words=True), ensure_ascii=False)
        return (subtitles.srt if fmt == "srt" else subtitles.vtt)(result.words, result.duration)

    from asr.inference.api import Recognizer

    failures = 0
    try:
        run = TranscribeOptions(**fields_of(TranscribeOptions, options))
        live = LiveOptions(**fields_of(LiveOptions, options))
        device, batch_size, stream = run.device, run.batch_size, run.stream
        rec = Recognizer.load(checkpoint, device=device, timestamps=fmt != "txt",  # txt: no word alignment
                              chunk_ms=live.chunk_ms, endpoint_ms=live.endpoint_ms or None,
                              **fields_of(DecodeOptions, options))
        if stream and not rec.streaming:
            fail(f"--stream: {checkpoint} was not trained with --streaming (train a conformer-*-streaming preset)")
        results = streamed(rec, files) if stream else rec.transcribe_many(files, batch_size=batch_size)
        for result in results:
            if not result.ok:
                failures += 1
                typer.secho(f"error: {result}", fg=typer.colors.RED, err=True)
                typer.echo(json.dumps(result.to_dict(), ensure_ascii=False) if fmt == "json" and out_dir is None
                           else "")  # its line
                continue
            if getattr(result, "warning", None):  # a long file read only in part
                typer.secho(f"warning: {result.path}: {result.warning}", fg=typer.colors.YELLOW, err=True)
            text = render(result)
            if out_dir is not None:
                path = out_dir / f"{Path(result.path).stem}.{fmt}"
                out_dir.mkdir(parents=True, exist_ok=True)
                write_text(path, text if fmt in ("srt", "vtt") else text + "\n")
                typer.echo(str(path))
            elif fmt in ("srt", "vtt"):
                typer.echo(text, nl=False)
            else:
                typer.echo(text)
    except (CheckpointError, FileNotFoundError, ValueError) as e:
        fail(str(e))
    except OSError as e:  # --out-dir: a full disk, a read-only folder
        fail(os_error_message(e))
    if failures:
        fail(f"{failures} of {len(files)} file(s) could not be transcribed")


@app.command()
@bounded
@config_options(ServeConfig, LiveOptions)
def serve(
    checkpoint: Path = typer.Option(..., help="Checkpoint made by `asr-cli train` (or `asr-cli export`'s .onnx)."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on; 0.0.0.0 for every interface (reachable "
                             "from other machines)."),
    port: int = typer.Option(8000, help="TCP port."),
    **options,
):
    """A web page (and JSON API) to try a model: upload or record audio, see the words and their times."""
    import os

    from asr.apps.serve import run
    from asr.store.checkpoint import CheckpointError

    cfg = ServeConfig(checkpoint=checkpoint, live=LiveOptions(**fields_of(LiveOptions, options)),
                      **fields_of(ServeConfig, options))
    if cfg.lm is not None and not cfg.lm.is_file():
        fail(f"language model {cfg.lm} not found (build one with `asr-cli lm build`)")
    try:
        run(cfg, host=host, port=port)
    except (CheckpointError, FileNotFoundError, ValueError) as e:
        fail(str(e))
    except OSError as e:  # the port is taken, a host that is not ours
        fail(f"cannot serve on {host}:{port}: {os.strerror(e.errno) if e.errno else e}")


@app.command()
@bounded
def export(
    checkpoint: Path = typer.Option(..., help="CTC checkpoint made by `asr-cli train` (e.g. runs/fr-ctc/best.pt)."),
    out: Path = typer.Option(..., help="ONNX file to write (e.g. model.onnx); a readable copy of its metadata "
                                       "goes beside it (model.onnx.json)."),
    streaming: bool = typer.Option(False, "--streaming", help="A model trained with --streaming: export one chunk "
                                   "step of the encoder with its caches as inputs and outputs, for live streams "
                                   "(rec.stream(), transcribe --stream) with onnxruntime."),
    chunk_ms: Optional[float] = typer.Option(None, help="--streaming: the chunk in ms the export is checked at and "
                                             "decodes whole files with (default: 640; streams may take any)."),
):
    """CTC checkpoint -> ONNX model (dynamic batch and time) for onnxruntime: `transcribe` and `eval`
    take it as --checkpoint. With --streaming, the chunk step of a streaming model instead."""
    from asr.inference.export import ExportError, export_onnx, format_summary
    from asr.store.checkpoint import CheckpointError

    try:
        summary = export_onnx(checkpoint, out, streaming=streaming, chunk_ms=chunk_ms)
    except (CheckpointError, ExportError) as e:
        fail(str(e))
    except OSError as e:  # a full disk, a read-only folder
        fail(os_error_message(e))
    typer.echo(format_summary(summary))
