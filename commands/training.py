"""Model commands: `train`, `bench-loader`, `plot` and `demo` (the whole product on synthetic speech)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from commands.base import app, bounded, fail, shards_lang
from pipeline.atomic import os_error_message
from pipeline.shardformat import DATASET, ShardReadError

BENCH_LOADER = Path(__file__).resolve().parents[1] / "bench" / "bench_loader.py"  # the checkout's bench/


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
    precision: str = typer.Option("auto", help="auto (bf16 on CUDA, fp32 on CPU), fast (bf16 wherever the hardware has it, a CPU with AVX512-BF16 or AMX too), bf16, fp16, fp32."),
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
    layer_scale: Optional[float] = typer.Option(None, help="conformer: initial LayerScale gain of each block's modules, 0: none (conformer-small: 0.1; it keeps deep CTC Conformers off the blank plateau) [preset]."),
    upsample: Optional[int] = typer.Option(None, help="ctc: output frames per encoder frame, 1 or 2 (small: 2, i.e. 50 a second behind the x4 front) [preset]."),
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
               "heads": heads, "conv_kernel": conv_kernel, "subsampling": subsampling,
               "layer_scale": layer_scale}
    las_options = {"listener": listener, "frame_stack": frame_stack, "pyramid_layers": pyramid_layers,
                   "attention": attention, "att_dim": att_dim, "att_norm": att_norm,
                   "att_temperature": att_temperature, "decoder_layers": decoder_layers,
                   "decoder_hidden": decoder_hidden, "embed_dim": embed_dim}
    if model == "las":
        if upsample is not None:
            fail("--upsample applies to --model ctc only")
        options.update(las_options, ctc_weight=ctc_weight)
    elif upsample is not None:
        options["upsample"] = upsample
    elif any(v is not None for v in las_options.values()):
        fail(f"--{next(k for k, v in las_options.items() if v is not None).replace('_', '-')} applies to --model las only")
    if rnn is not None and rnn not in ("gru", "lstm"):
        fail("--rnn must be gru or lstm")
    if encoder is not None and encoder not in ("rnn", "conformer"):
        fail("--encoder must be rnn or conformer")
    if batch_frames < max_frames:  # a batch holds at least one utterance of up to --max-frames frames
        fail(f"--batch-frames ({batch_frames}) must be at least --max-frames ({max_frames}): a batch holds at least "
             "one whole utterance; lower --max-frames too to train on short clips in small batches", 2)
    lang = shards_lang(shards)
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

    script = BENCH_LOADER
    if not script.is_file():  # bench/ is beside the package in a checkout, not inside an installed one
        fail(f"{script} not found: bench-loader runs from a checkout of cv-asr (bench/ is not installed)")
    bench = runpy.run_path(str(script))
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
