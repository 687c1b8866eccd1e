"""`asr-cli`: every command is a thin call into `pipeline/` (offline data) or `asr/` (models).

    asr-cli synth          synthetic French corpus in Common Voice's layout (espeak-ng)
    asr-cli shards         Common Voice release -> log-Mel webdataset shards (+ `verify`)
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from asr.decode_options import DecodeOptions
from asr.option_bounds import bounded as _bounded
from pipeline.atomic import os_error_message
from pipeline.shardformat import DATASET, INDEX, REJECTS, ShardReadError, dataset_path, read_dataset

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Train your own speech recogniser on Mozilla Common Voice: MP3 -> shards -> model -> text.",
)


def fail(message: str, code: int = 1) -> None:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


bounded = _bounded(lambda message: fail(message, 2))  # every numeric option: asr/option_bounds.py


# --------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------
@app.command()
@bounded
def synth(
    out: Path = typer.Option(Path("data/demo/fr"), help="Language folder to write (clips/ and the TSVs)."),
    lang: str = typer.Option("fr", help="Language (only French has a sentence generator)."),
    hours: float = typer.Option(5.0, help="Hours of audio to synthesise."),
    clips: Optional[int] = typer.Option(None, help="Number of clips (overrides --hours)."),
    seed: int = typer.Option(0, help="Same seed, same corpus."),
    jobs: int = typer.Option(0, help="Worker processes (0: every core)."),
):
    """Synthesise a French corpus with espeak-ng in Common Voice's own layout."""
    from pipeline.synth import synthesize

    try:
        summary = synthesize(out, lang=lang, hours=hours, seed=seed, jobs=jobs or None, num_clips=clips)
    except (ValueError, RuntimeError, FileNotFoundError) as e:
        fail(str(e))
    typer.echo(_format_synth(summary, out))


def _format_synth(summary: dict, out: Path) -> str:
    lines = [f"corpus in {out} (Common Voice root: {out.parent})"]
    for key, value in summary.items():
        lines.append(f"  {key}: {value}")
    return "\n".join(lines)


shards_app = typer.Typer(
    invoke_without_command=True,
    no_args_is_help=False,
    help="Turn a Common Voice release into log-Mel webdataset shards (`shards verify DIR` checks them).",
)
app.add_typer(shards_app, name="shards")


@shards_app.callback()
@bounded
def shards(
    ctx: typer.Context,
    cv_root: Path = typer.Option(Path("data/cv"), help="Folder holding the extracted language folder (<cv-root>/<lang>/clips, *.tsv)."),
    lang: str = typer.Option("fr", help="Common Voice locale: fr, en, de, zh-CN, ..."),
    out: Optional[Path] = typer.Option(None, help="Output folder [default: shards/<lang>]."),
    jobs: int = typer.Option(0, help="Worker processes (0: every core)."),
    shard_size: int = typer.Option(1000, help="Clips per shard (about 70 MB of features at 5 s a clip)."),
    seed: int = typer.Option(0, help="Seed of the train shuffle."),
    min_duration: float = typer.Option(0.5, help="Clips shorter than this (seconds) are rejected."),
    max_duration: float = typer.Option(20.0, help="Clips longer than this (seconds) are rejected."),
    train_set: str = typer.Option("train", help="'train' (train.tsv) or 'validated' (validated minus dev and test)."),
    force: bool = typer.Option(False, "--force", help="Rebuild everything instead of resuming."),
    speed: Optional[str] = typer.Option(None, help="Speed perturbation: comma-separated factors, e.g. 0.9,1.1 (each in 0.5-2.0): resampled copies of the train split, ids <id>_sp0p9."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
):
    """Build shards/<lang>/ from a Common Voice release; a rerun resumes where it stopped."""
    if ctx.invoked_subcommand is not None:
        return
    from pipeline.cv import ReleaseError
    from pipeline.build import BuildConfig, build, format_summary, parse_speeds
    from pipeline.lock import LockedError

    if shard_size < 1:
        fail("--shard-size must be at least 1")
    if not 0 <= min_duration < max_duration:
        fail("need 0 <= --min-duration < --max-duration")
    try:
        speeds = parse_speeds(speed)
    except ValueError as e:
        fail(str(e))
    cfg = BuildConfig(cv_root=cv_root, lang=lang, out=out or Path("shards") / lang, jobs=jobs,
                      shard_size=shard_size, seed=seed, min_duration=min_duration,
                      max_duration=max_duration, train_set=train_set, force=force, progress=progress,
                      speeds=speeds)
    try:
        summary = build(cfg)
    except (ReleaseError, LockedError) as e:
        fail(str(e))
    except OSError as e:  # a full disk, a read-only --out
        fail(os_error_message(e))
    typer.echo(format_summary(summary))
    typer.echo(f"shards, {INDEX}, {REJECTS} and {DATASET} are in {cfg.out}")


@shards_app.command("verify")
def shards_verify(
    root: Path = typer.Argument(..., help="Shard folder, e.g. shards/fr."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
):
    """Re-hash every shard and check that the tars, index.parquet and dataset.json agree."""
    from pipeline.verify import verify

    problems = verify(root, progress=progress)
    if problems:
        for p in problems:
            typer.secho(p, fg=typer.colors.RED, err=True)
        fail(f"{len(problems)} problem(s) in {root}")
    typer.echo(f"{root}: all shards, {INDEX} and {DATASET} agree")


# --------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------
@app.command()
@bounded
def train(
    shards: Path = typer.Option(..., help=f"Shard folder made by `asr-cli shards` (holds {DATASET})."),
    out: Optional[Path] = typer.Option(None, help="Run folder for checkpoints and logs [default: runs/<lang>-<model>]."),
    model: str = typer.Option("ctc", help="ctc (Graves) or las (Listen, Attend and Spell)."),
    preset: str = typer.Option("small", help="Model size: tiny, small, lab, conformer-tiny, conformer-small (3.0 M), conformer-base (32.8 M) (ctc); tiny, small, small-pyramid, lab, conformer-small (3.7 M) (las); see asr/models.py."),
    max_steps: int = typer.Option(20000, help="Training steps (the learning-rate schedule ends there)."),
    epochs: int = typer.Option(0, help="Stop after this many epochs (0: only --max-steps)."),
    batch_frames: int = typer.Option(20000, help="Padded feature frames per batch (10 ms each)."),
    max_batch: int = typer.Option(256, help="Utterances per batch at most."),
    max_frames: int = typer.Option(2000, help="Skip training utterances longer than this many frames."),
    lr: float = typer.Option(1e-3, help="Peak learning rate (AdamW)."),
    warmup: int = typer.Option(500, help="Warm-up steps before the cosine decay."),
    weight_decay: float = typer.Option(0.01, help="AdamW weight decay."),
    clip: float = typer.Option(5.0, help="Gradient norm clipping."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:1 ..."),
    precision: str = typer.Option("auto", help="auto (bf16 on CUDA, fp32 on CPU), bf16, fp16, fp32."),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the model."),
    eval_every: int = typer.Option(500, help="Dev loss / CER and checkpoints every N steps."),
    eval_utts: int = typer.Option(200, help="Dev utterances used for the periodic CER."),
    log_every: int = typer.Option(20, help="TensorBoard / metrics.jsonl every N steps."),
    workers: int = typer.Option(2, help="DataLoader worker processes."),
    threads: int = typer.Option(0, help="CPU threads per process (0: cores / processes)."),
    procs: int = typer.Option(1, help="Data-parallel processes on this machine (gloo; faster than threads for small models on a CPU); --batch-frames is per process."),
    seed: int = typer.Option(0, help="Seed of everything (initial weights, data order, masks)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from <out>/last.pt."),
    force: bool = typer.Option(False, "--force", help="Start over even if <out> holds a run."),
    steps_this_run: int = typer.Option(0, help="Stop with a checkpoint after N steps of this invocation."),
    time_budget: float = typer.Option(0.0, help="Stop with a checkpoint after this many seconds (0: none)."),
    anneal_by_time: bool = typer.Option(False, "--anneal-by-time", help="With --time-budget: decay the learning rate by steps or time, whichever is further along, so a run the clock cuts short still ends annealed."),
    shard_url: Optional[str] = typer.Option(None, help="Read tars from this URL prefix or '{path}' template (http://..., pipe:...)."),
    rnn: Optional[str] = typer.Option(None, help="Encoder RNN: gru or lstm [preset]."),
    rnn_layers: Optional[int] = typer.Option(None, help="Encoder RNN layers [preset]."),
    rnn_hidden: Optional[int] = typer.Option(None, help="Encoder RNN units per direction [preset]."),
    conv_channels: Optional[int] = typer.Option(None, help="Channels of the conv front [preset]."),
    proj_dim: Optional[int] = typer.Option(None, help="Conv features projected to this size [preset]."),
    dropout: Optional[float] = typer.Option(None, help="Dropout [preset]."),
    encoder: Optional[str] = typer.Option(None, help="Encoder: rnn (conv front + BiRNN) or conformer [preset]."),
    d_model: Optional[int] = typer.Option(None, help="conformer: model size [preset]."),
    blocks: Optional[int] = typer.Option(None, help="conformer: blocks [preset]."),
    heads: Optional[int] = typer.Option(None, help="conformer: attention heads [preset]."),
    conv_kernel: Optional[int] = typer.Option(None, help="conformer: depthwise conv kernel, odd [preset]."),
    subsampling: Optional[int] = typer.Option(None, help="conformer: time reduction of the front, 4 or 8 [preset]."),
    tokens: str = typer.Option("char", help="Output units: char, or unigram:N (SentencePiece, N pieces, trained on the train text)."),
    ctc_weight: float = typer.Option(0.3, help="las: weight w of the joint CTC loss, w * ctc + (1 - w) * attention (0: no CTC head)."),
    label_smoothing: float = typer.Option(0.1, help="las: label smoothing of the attention loss."),
    sampling_rate: float = typer.Option(0.0, help="las: scheduled sampling probability, ramped from 0 to this over training."),
    listener: Optional[str] = typer.Option(None, help="las: conv (conv front x4 + BiRNN) or pyramid (pyramidal BiRNN, x8) [preset]."),
    frame_stack: Optional[int] = typer.Option(None, help="las pyramid: input frames stacked before the first layer [preset]."),
    pyramid_layers: Optional[int] = typer.Option(None, help="las pyramid: top BiRNN layers that halve time [preset]."),
    attention: Optional[str] = typer.Option(None, help="las: location (location-aware) or content attention [preset]."),
    att_dim: Optional[int] = typer.Option(None, help="las: attention size [preset]."),
    att_norm: Optional[str] = typer.Option(None, help="las: softmax, or sigmoid (smoothed) attention normalisation [preset]."),
    att_temperature: Optional[float] = typer.Option(None, help="las: attention energies divided by this (>1 flatter) [preset]."),
    decoder_layers: Optional[int] = typer.Option(None, help="las: speller LSTM layers [preset]."),
    decoder_hidden: Optional[int] = typer.Option(None, help="las: speller LSTM units [preset]."),
    embed_dim: Optional[int] = typer.Option(None, help="las: speller unit embedding size [preset]."),
    freq_masks: int = typer.Option(2, help="SpecAugment frequency masks per utterance (0: off)."),
    freq_width: int = typer.Option(27, help="SpecAugment: widest frequency mask, in bins."),
    time_masks: int = typer.Option(2, help="SpecAugment time masks per utterance (0: off)."),
    time_width: int = typer.Option(40, help="SpecAugment: widest time mask, in frames."),
    time_ratio: float = typer.Option(0.2, help="SpecAugment: a time mask covers at most this fraction."),
    freq_warp: float = typer.Option(0.0, help="VTLP-style random stretch of the mel axis by up to this fraction, e.g. 0.1 (0: off)."),
    specaug_start: int = typer.Option(0, help="SpecAugment's masks from this step on (0: from the first step)."),
    average: int = typer.Option(0, help="Keep the weights of the last N evaluations (<out>/avg) and write their mean, <out>/averaged.pt, at the end (0: off)."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
):
    """Train a CTC or attention model on shards, on the GPU if any (torchrun for several)."""
    from asr.specaug import SpecAugmentConfig
    from asr.train import TrainConfig, train_local

    options = {"rnn": rnn, "rnn_layers": rnn_layers, "rnn_hidden": rnn_hidden, "conv_channels": conv_channels,
               "proj_dim": proj_dim, "dropout": dropout, "encoder": encoder, "d_model": d_model, "blocks": blocks,
               "heads": heads, "conv_kernel": conv_kernel, "subsampling": subsampling}
    las_options = {"listener": listener, "frame_stack": frame_stack, "pyramid_layers": pyramid_layers,
                   "attention": attention, "att_dim": att_dim, "att_norm": att_norm,
                   "att_temperature": att_temperature, "decoder_layers": decoder_layers,
                   "decoder_hidden": decoder_hidden, "embed_dim": embed_dim}
    if model == "las":
        options.update(las_options, ctc_weight=ctc_weight)
    elif any(v is not None for v in las_options.values()):
        fail(f"--{next(k for k, v in las_options.items() if v is not None).replace('_', '-')} applies to --model las only")
    if rnn is not None and rnn not in ("gru", "lstm"):
        fail("--rnn must be gru or lstm")
    if encoder is not None and encoder not in ("rnn", "conformer"):
        fail("--encoder must be rnn or conformer")
    if batch_frames < max_frames:  # a batch holds at least one utterance of up to --max-frames frames
        fail(f"--batch-frames ({batch_frames}) must be at least --max-frames ({max_frames}): a batch holds at least "
             "one whole utterance; lower --max-frames too to train on short clips in small batches", 2)
    lang = _shards_lang(shards)
    cfg = TrainConfig(
        shards=str(shards), out=str(out or Path("runs") / f"{lang}-{model}"), model=model, preset=preset,
        model_options={k: v for k, v in options.items() if v is not None}, shard_url=shard_url,
        max_steps=max_steps, epochs=epochs, steps_this_run=steps_this_run, time_budget=time_budget,
        anneal_by_time=anneal_by_time,
        batch_frames=batch_frames, max_batch=max_batch, max_frames=max_frames, lr=lr, warmup=warmup,
        weight_decay=weight_decay, clip=clip, device=device, precision=precision, compile=compile,
        eval_every=eval_every, eval_utts=eval_utts, log_every=log_every, seed=seed, workers=workers,
        threads=threads, resume=resume, force=force, progress=progress, tokens=tokens, ctc_weight=ctc_weight,
        label_smoothing=label_smoothing, sampling_rate=sampling_rate,
        specaug=SpecAugmentConfig(freq_masks, freq_width, time_masks, time_width, time_ratio, freq_warp),
        specaug_start=specaug_start, average=average,
    )
    try:
        summary = train_local(cfg, procs)
    except (FileNotFoundError, FileExistsError, ValueError, RuntimeError) as e:
        fail(str(ShardReadError.within(e) or e))  # a shard error from a spawned process: its one line
    except OSError as e:  # a full disk: "no space left on <path>"
        fail(os_error_message(e))
    if int(__import__("os").environ.get("RANK", "0")) == 0:
        dev = summary["dev"]
        typer.echo(f"stopped at step {summary['step']} ({summary['stopped_by']}) after {summary['seconds']:.0f}s; "
                   f"dev loss {dev['loss']:.3f}, dev CER {dev['cer']:.3f}, WER {dev['wer']:.3f} "
                   f"on {dev['utterances']} utterances; skipped batches {summary['skipped_batches']}")
        if "averaged" in summary:
            typer.echo(f"averaged.pt (steps {', '.join(map(str, summary['averaged']['steps']))}): dev CER "
                       f"{summary['averaged']['dev']['cer']:.3f}; best.pt: {summary['best_dev_cer']:.3f}")
        typer.echo(f"checkpoints: {cfg.out}/best.pt, {cfg.out}/last.pt; TensorBoard: tensorboard --logdir {cfg.out}/tb")


@app.command("bench-loader")
@bounded
def bench_loader(
    shards: Path = typer.Option(..., help="Shard folder made by `asr-cli shards`."),
    workers: int = typer.Option(2, help="DataLoader workers for both paths."),
    batch_frames: int = typer.Option(20000, help="Padded frames per batch of the shard loader."),
    utterances: int = typer.Option(2000, help="Utterances to time the shard loader on."),
    seconds: float = typer.Option(30.0, help="Time limit per row."),
    train_preset: str = typer.Option("small", help="CTC preset whose training rate is shown ('' to skip)."),
):
    """Shard loader throughput side by side with decoding MP3s on the fly."""
    import runpy

    bench = runpy.run_path(str(Path(__file__).parent / "bench" / "bench_loader.py"))  # not in the package
    run, format_rows = bench["bench_loader"], bench["format_rows"]
    try:
        rows = run(shards, workers=workers, batch_frames=batch_frames, utterances=utterances, seconds=seconds,
                   train_preset=train_preset or None)
    except (FileNotFoundError, ValueError) as e:
        fail(str(e))
    typer.echo(format_rows(rows))


@app.command()
@bounded
def plot(
    shards: Optional[Path] = typer.Option(None, help="Shard folder made by `asr-cli shards`."),
    split: str = typer.Option("dev", help="Split to draw utterances from."),
    out: Path = typer.Option(Path("spectro.png"), help="PNG file to write."),
    n: int = typer.Option(4, help="Utterances to draw."),
    augment: bool = typer.Option(False, "--augment", help="Apply SpecAugment as training does."),
    attention: bool = typer.Option(False, "--attention", help="Draw attention weights of --checkpoint (las)."),
    checkpoint: Optional[Path] = typer.Option(None, help="Attention model checkpoint for --attention."),
):
    """Draw log-Mel spectrograms with their transcripts (or attention weights with --attention)."""
    if shards is None:
        fail("--shards is required")
    try:
        if attention:
            if checkpoint is None:
                fail("--attention needs --checkpoint (an attention model, --model las)")
            from asr.plot import plot_attention

            path = plot_attention(checkpoint, shards, split, out, n=n)
        else:
            from asr.plot import plot_spectrograms

            path = plot_spectrograms(shards, split, out, n=n, augment=augment)
    except (FileNotFoundError, ValueError) as e:
        fail(str(e))
    typer.echo(f"wrote {path}")


# --------------------------------------------------------------------------------------
# evaluation, language model, transcription
# --------------------------------------------------------------------------------------
_BEAM_HELP = (f"Beam search with this many hypotheses (default: greedy; with --lm or --ctc-weight: "
              f"{DecodeOptions.ctc_beam} for ctc, {DecodeOptions.las_beam} for las).")
_LM_HELP = "Word n-gram LM (ARPA, from `asr-cli lm build`) for beam search."
_LM_WEIGHT_HELP = f"Weight of the LM's log10 probability; tune on dev (default: {DecodeOptions.lm_weight:g})."
_WORD_SCORE_HELP = f"Score added per word with --lm; tune on dev (default: {DecodeOptions.word_score:g})."
_CTC_WEIGHT_HELP = "las only: CTC weight of joint CTC/attention beam search (default: the training weight)."


def _decode_options(beam, lm, lm_weight, word_score, ctc_weight) -> DecodeOptions:
    """DecodeOptions from the shared eval / transcribe options (None: the tuned default)."""
    given = {"lm_weight": lm_weight, "word_score": word_score}
    return DecodeOptions(beam=beam, lm=lm, ctc_weight=ctc_weight, **{k: v for k, v in given.items() if v is not None})


@app.command("eval")
@bounded
def eval_(
    checkpoint: Path = typer.Option(..., help="Checkpoint made by `asr-cli train` (e.g. runs/fr-ctc/best.pt)."),
    shards: Path = typer.Option(..., help="Shard folder made by `asr-cli shards`."),
    split: str = typer.Option("test", help="Split to evaluate (every utterance, once)."),
    beam: Optional[int] = typer.Option(None, help=_BEAM_HELP),
    lm: Optional[Path] = typer.Option(None, help=_LM_HELP),
    lm_weight: Optional[float] = typer.Option(None, help=_LM_WEIGHT_HELP, show_default=False),
    word_score: Optional[float] = typer.Option(None, help=_WORD_SCORE_HELP, show_default=False),
    ctc_weight: Optional[float] = typer.Option(None, help=_CTC_WEIGHT_HELP),
    out: Optional[Path] = typer.Option(None, help="Output folder (default: <checkpoint folder>/eval-<split>-<mode>)."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:1 ..."),
    batch_frames: int = typer.Option(20000, help="Padded feature frames per batch."),
    max_batch: int = typer.Option(256, help="Utterances per batch at most."),
    workers: int = typer.Option(1, help="DataLoader workers reading the shards."),
    threads: int = typer.Option(0, help="CPU threads per process (0: cores / processes)."),
    shard_url: Optional[str] = typer.Option(None, help="Read tars from this URL prefix or '{path}' template."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
):
    """CER / WER of a checkpoint on a split: per-utterance results, summary, real-time factor."""
    import os

    from asr.checkpoint import CheckpointError
    from asr.evaluate import CoverageError, EvalConfig, evaluate, format_summary
    from pipeline.lock import LockedError

    cfg = EvalConfig(checkpoint=checkpoint, shards=shards, split=split,
                     decode=_decode_options(beam, lm, lm_weight, word_score, ctc_weight), out=out, device=device,
                     batch_frames=batch_frames, max_batch=max_batch, workers=workers, threads=threads,
                     shard_url=shard_url, progress=progress)
    try:
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

    from asr.lm import build_lm_from_shards

    lang = _shards_lang(shards)
    out = out or Path("lm") / f"{lang}-{order}gram.arpa"
    started = time.time()
    try:
        stats = build_lm_from_shards(shards, order, out, extra_text=extra_text)
    except (FileNotFoundError, ValueError) as e:
        fail(str(e))
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
    from asr.checkpoint import CheckpointError, upgrade

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
    from asr.averaging import average_checkpoints
    from asr.checkpoint import CheckpointError

    try:
        average_checkpoints(checkpoints, out)
    except (CheckpointError, ValueError) as e:
        fail(str(e))
    except OSError as e:
        fail(os_error_message(e))
    typer.echo(f"wrote {out}: the mean of {len(checkpoints)} checkpoints")


_FORMATS = ("txt", "json", "srt", "vtt")


@app.command()
@bounded
def transcribe(
    files: list[Path] = typer.Argument(..., help="Audio files: MP3, WAV, FLAC ... any rate, mono or stereo."),
    checkpoint: Path = typer.Option(..., help="Checkpoint made by `asr-cli train`."),
    beam: Optional[int] = typer.Option(None, help=_BEAM_HELP),
    lm: Optional[Path] = typer.Option(None, help=_LM_HELP),
    lm_weight: Optional[float] = typer.Option(None, help=_LM_WEIGHT_HELP, show_default=False),
    word_score: Optional[float] = typer.Option(None, help=_WORD_SCORE_HELP, show_default=False),
    ctc_weight: Optional[float] = typer.Option(None, help=_CTC_WEIGHT_HELP),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:1 ..."),
    format: str = typer.Option("txt", "--format", help="txt: one line of text per file. json: one JSON object "
                               "per line and file: id, path, text, duration, time, words [{word, start, end, "
                               "score}] (seconds); id, path, error for a file that failed. srt / vtt: subtitles "
                               "(cues of at most 7 s / 42 characters) of ONE file on stdout; several files need "
                               "--out-dir."),
    json_lines: bool = typer.Option(False, "--json", help="Same as --format json."),
    out_dir: Optional[Path] = typer.Option(None, help="Write <out-dir>/<file name>.<format> per input (any "
                                           "format) and print the path written, one line per file."),
    batch_size: int = typer.Option(1, help="Files padded into one batch through the model."),
):
    """Transcribe audio files: one line per file, in order: its text (or JSON object, or written
    path), or an empty line for a file that failed (the reason on stderr; the exit status is then 1).
    With --format srt / vtt and no --out-dir, the one file's subtitles."""
    import json

    from asr.checkpoint import CheckpointError
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

    def render(result) -> str:
        from asr import subtitles

        if fmt == "txt":
            return result.text
        if fmt == "json":
            return json.dumps(result.to_dict(words=True), ensure_ascii=False)
        return (subtitles.srt if fmt == "srt" else subtitles.vtt)(result.words, result.duration)

    from asr.api import Recognizer

    failures = 0
    try:
        rec = Recognizer.load(checkpoint, device=device, timestamps=fmt != "txt",  # txt: no word alignment
                              **vars(_decode_options(beam, lm, lm_weight, word_score, ctc_weight)))
        for result in rec.transcribe_many(files, batch_size=batch_size):
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
def serve(
    checkpoint: Path = typer.Option(..., help="Checkpoint made by `asr-cli train` (or `asr-cli export`'s .onnx)."),
    lm: Optional[Path] = typer.Option(None, help=_LM_HELP + " Adds the beam-lm mode (the default then)."),
    beam: Optional[int] = typer.Option(None, help="Hypotheses of the beam and beam-lm modes (default: the "
                                       "model kind's)."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on; 0.0.0.0 for every interface (reachable "
                             "from other machines)."),
    port: int = typer.Option(8000, help="TCP port."),
    max_mb: float = typer.Option(50.0, help="Uploads larger than this many MB are refused (413)."),
    max_seconds: float = typer.Option(600.0, help="Audio longer than this many seconds is refused (413)."),
    workers: int = typer.Option(1, help="Model replicas decoding at once (each one a copy of the model in memory)."),
    device: str = typer.Option("cpu", help="cpu, cuda, cuda:1, auto ..."),
):
    """A web page (and JSON API) to try a model: upload or record audio, see the words and their times."""
    import os

    from asr.checkpoint import CheckpointError
    from asr.serve import ServeConfig, run

    if workers < 1:
        fail("--workers must be at least 1 (one model replica)", 2)
    if lm is not None and not lm.is_file():
        fail(f"language model {lm} not found (build one with `asr-cli lm build`)")
    cfg = ServeConfig(checkpoint=checkpoint, lm=lm, device=device, beam=beam, max_mb=max_mb,
                      max_seconds=max_seconds, workers=workers)
    try:
        run(cfg, host=host, port=port)
    except (CheckpointError, FileNotFoundError, ValueError) as e:
        fail(str(e))
    except OSError as e:  # the port is taken, a host that is not ours
        fail(f"cannot serve on {host}:{port}: {os.strerror(e.errno) if e.errno else e}")


@app.command()
def export(
    checkpoint: Path = typer.Option(..., help="CTC checkpoint made by `asr-cli train` (e.g. runs/fr-ctc/best.pt)."),
    out: Path = typer.Option(..., help="ONNX file to write (e.g. model.onnx); a readable copy of its metadata "
                                       "goes beside it (model.onnx.json)."),
):
    """CTC checkpoint -> ONNX model (dynamic batch and time) for onnxruntime: `transcribe` and `eval`
    take it as --checkpoint."""
    from asr.checkpoint import CheckpointError
    from asr.export import ExportError, export_onnx, format_summary

    try:
        summary = export_onnx(checkpoint, out)
    except (CheckpointError, ExportError) as e:
        fail(str(e))
    except OSError as e:  # a full disk, a read-only folder
        fail(os_error_message(e))
    typer.echo(format_summary(summary))


@app.command()
@bounded
def demo(
    model: str = typer.Option("ctc", help="ctc or las."),
    hours: float = typer.Option(5.0, help="Hours of synthetic speech."),
    minutes: float = typer.Option(15.0, help="Training time budget (a fast machine finishes its steps sooner)."),
    data: Path = typer.Option(Path("data/demo"), help="Common Voice root of the synthetic corpus."),
    shards: Path = typer.Option(Path("shards/demo-fr"), help="Shard folder to build."),
    runs: Path = typer.Option(Path("runs"), help="Runs folder: the model goes to <runs>/demo-<model>."),
    jobs: int = typer.Option(0, help="Worker processes for synthesis and shards (0: every core)."),
    device: str = typer.Option("auto", help="auto, cpu, cuda ..."),
    retrain: bool = typer.Option(False, "--retrain", help="Train again even if the run folder holds a finished model."),
    max_steps: Optional[int] = typer.Option(None, help="Train this many steps instead of the demo recipe's."),
    seed: int = typer.Option(0, help="Seed of the synthetic corpus."),
    preset: str = typer.Option("", help="Another model's demo recipe: conformer-small (ctc, las); run folder <runs>/demo-<model>-<preset>."),
    progress: bool = typer.Option(True, help="Show progress bars."),
):
    """The whole product on a synthetic French corpus: synth, shards, train, LM, eval, transcribe."""
    from asr.demo import DemoConfig, run_demo

    if model not in ("ctc", "las"):
        fail("--model must be ctc or las")
    cfg = DemoConfig(model=model, hours=hours, minutes=minutes, data=data, shards=shards, runs=runs, jobs=jobs,
                     device=device, retrain=retrain, max_steps=max_steps, seed=seed, progress=progress,
                     preset=preset)
    try:
        run_demo(cfg)
    except (RuntimeError, FileNotFoundError, FileExistsError, ValueError) as e:
        fail(str(e))


def _shards_lang(shards: Path) -> str:
    try:
        return read_dataset(shards)["lang"]
    except (OSError, ValueError, KeyError):
        fail(f"{dataset_path(shards)} not found: --shards must be a folder made by `asr-cli shards`")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
