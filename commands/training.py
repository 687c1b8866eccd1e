"""Model commands: `train`, `bench-loader`, `plot` and `demo` (the whole product on synthetic speech)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from asr.train_config import SpecAugmentConfig, TrainConfig
from asr.train_config import options as train_options
from commands.base import FROM_CONFIG, app, bounded, fail, from_config, shards_lang
from pipeline.atomic import os_error_message
from pipeline.shardformat import DATASET, DEFAULT_CODEC, ShardReadError, refuse_out_inside_shards

BENCH_LOADER = Path(__file__).resolve().parents[1] / "bench" / "bench_loader.py"  # the checkout's bench/


@app.command()
@bounded
@from_config(TrainConfig, SpecAugmentConfig)
def train(
    shards: Path = typer.Option(..., help=f"Shard folder made by `asr-cli shards` (holds {DATASET})."),
    out: Optional[Path] = typer.Option(None, help="Run folder for checkpoints and logs [default: runs/<lang>-<model>]."),
    model: Optional[str] = FROM_CONFIG,
    preset: Optional[str] = FROM_CONFIG,
    max_steps: int = FROM_CONFIG,
    epochs: int = FROM_CONFIG,
    batch_frames: int = FROM_CONFIG,
    max_batch: int = FROM_CONFIG,
    max_frames: int = FROM_CONFIG,
    lr: Optional[float] = FROM_CONFIG,
    warmup: Optional[int] = FROM_CONFIG,
    weight_decay: float = FROM_CONFIG,
    clip: float = FROM_CONFIG,
    device: str = FROM_CONFIG,
    precision: str = FROM_CONFIG,
    compile: bool = FROM_CONFIG,
    eval_every: int = FROM_CONFIG,
    eval_utts: int = FROM_CONFIG,
    log_every: int = FROM_CONFIG,
    workers: int = FROM_CONFIG,
    threads: int = FROM_CONFIG,
    procs: int = typer.Option(1, help="Data-parallel processes on this machine (gloo; faster than threads for small models on a CPU); --batch-frames is per process."),
    seed: int = FROM_CONFIG,
    resume: bool = FROM_CONFIG,
    init_from: str = FROM_CONFIG,
    freeze_encoder_steps: int = FROM_CONFIG,
    force: bool = FROM_CONFIG,
    steps_this_run: int = FROM_CONFIG,
    time_budget: float = FROM_CONFIG,
    anneal_by_time: bool = FROM_CONFIG,
    shard_url: Optional[str] = FROM_CONFIG,
    # the model's shape: None takes the preset's value (asr/models.py), so no default is stated here
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
    streaming: Optional[bool] = typer.Option(None, "--streaming/--no-streaming", help="conformer (ctc): train to stream too: causal conv, a random attention chunk per batch; the checkpoint then decodes whole files and streams (conformer-*-streaming presets) [preset]."),
    left_chunks: Optional[int] = typer.Option(None, help="--streaming: chunks before its own a frame sees in training, -1: all [preset]."),
    upsample: Optional[int] = typer.Option(None, help="ctc: output frames per encoder frame, 1 or 2 (small presets: chosen from the train split, 2 only where its fast speech needs 50 frames a second) [preset]."),
    tokens: str = FROM_CONFIG,
    ctc_weight: float = FROM_CONFIG,
    label_smoothing: float = FROM_CONFIG,
    sampling_rate: float = FROM_CONFIG,
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
    freq_masks: int = FROM_CONFIG,
    freq_width: int = FROM_CONFIG,
    time_masks: int = FROM_CONFIG,
    time_width: int = FROM_CONFIG,
    time_ratio: float = FROM_CONFIG,
    freq_warp: float = FROM_CONFIG,
    specaug_start: int = FROM_CONFIG,
    average: int = FROM_CONFIG,
    progress: bool = FROM_CONFIG,
):
    """Train a CTC or attention model on shards, on the GPU if any (torchrun for several)."""
    given = dict(locals())  # every option by name: the configs are built from it, no mapping by hand
    from asr.models import ENCODER_FIELDS, LAS_FIELDS
    from asr.train import train_local

    shape = {k: v for k, v in given.items()
             if k in ENCODER_FIELDS | LAS_FIELDS | {"upsample"} and k != "ctc_weight" and v is not None}
    las_only = [k for k in shape if k in LAS_FIELDS]
    kind = model or "ctc"
    if init_from:  # the parent's network: asr/finetune.py refuses, in training, options that would change it
        from asr.finetune import load_parent

        try:
            kind = model or load_parent(init_from)["model"]["kind"]
        except ValueError as e:  # an ONNX model, a pickle, not a checkpoint
            fail(str(e))
    if kind == "las":
        if upsample is not None:
            fail("--upsample applies to --model ctc only")
        shape["ctc_weight"] = ctc_weight  # the model builds its CTC head by it
    elif las_only and not init_from:
        fail(f"--{las_only[0].replace('_', '-')} applies to --model las only")
    if rnn is not None and rnn not in ("gru", "lstm"):
        fail("--rnn must be gru or lstm")
    if encoder is not None and encoder not in ("rnn", "conformer"):
        fail("--encoder must be rnn or conformer")
    if batch_frames < max_frames:  # a batch holds at least one utterance of up to --max-frames frames
        fail(f"--batch-frames ({batch_frames}) must be at least --max-frames ({max_frames}): a batch holds at least "
             "one whole utterance; lower --max-frames too to train on short clips in small batches", 2)
    lang = shards_lang(shards)
    cfg = TrainConfig(shards=str(shards), out=str(out or Path("runs") / f"{lang}-{kind}"), model_options=shape,
                      specaug=SpecAugmentConfig(**{k: given[k] for k in train_options(SpecAugmentConfig)}),
                      **{k: given[k] for k in train_options(TrainConfig)})
    try:
        refuse_out_inside_shards(cfg.out)  # a later `shards --force` there must never meet a run
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
@from_config(TrainConfig)  # the loader as training sets it up: its workers, its batches
def bench_loader(
    shards: Path = typer.Option(..., help="Shard folder made by `asr-cli shards`."),
    workers: int = FROM_CONFIG,
    batch_frames: int = FROM_CONFIG,
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
    minutes: float = typer.Option(45.0, help="A cap on training's wall clock: the recipe is a number of steps, and a run the cap cuts short says so in the report (rerun to finish it)."),
    data: Path = typer.Option(Path("data/demo"), help="Common Voice root of the synthetic corpus."),
    shards: Path = typer.Option(Path("shards/demo-fr"), help="Shard folder to build."),
    runs: Path = typer.Option(Path("runs"), help="Runs folder: the model goes to <runs>/demo-<model>."),
    jobs: int = typer.Option(0, help="Worker processes for synthesis and shards (0: every core)."),
    device: str = typer.Option("auto", help="auto, cpu, cuda ..."),
    retrain: bool = typer.Option(False, "--retrain", help="Train again even if the run folder holds a finished model."),
    max_steps: Optional[int] = typer.Option(None, help="Train this many steps instead of the demo recipe's."),
    seed: int = typer.Option(0, help="Seed of the synthetic corpus."),
    train_seed: int = typer.Option(0, help="Seed of the training run (run folder <runs>/demo-<model>-seed<N> when not 0)."),
    precision: str = typer.Option("", help="fp32 or bf16 to force one (run folder ...-<precision>); default: the faster, measured."),
    preset: str = typer.Option("", help="Another model's demo recipe: conformer-small (ctc, las); run folder <runs>/demo-<model>-<preset>."),
    codec: str = typer.Option(DEFAULT_CODEC, help="The shards' feature codec: qdelta or float16 (use another --shards folder per codec)."),
    progress: bool = typer.Option(True, help="Show progress bars."),
):
    """The whole product on a synthetic French corpus: synth, shards, train, LM, eval, transcribe."""
    from asr.demo import DemoConfig, run_demo

    if model not in ("ctc", "las"):
        fail("--model must be ctc or las")
    if precision not in ("", "fp32", "bf16"):
        fail("--precision must be fp32 or bf16 (or left out: the faster, measured)")
    from pipeline.shardformat import check_codec

    try:
        check_codec(codec)
    except ValueError as e:
        fail(f"--codec: {e}")
    cfg = DemoConfig(model=model, hours=hours, minutes=minutes, data=data, shards=shards, runs=runs, jobs=jobs,
                     device=device, retrain=retrain, max_steps=max_steps, seed=seed, progress=progress,
                     preset=preset, train_seed=train_seed, precision=precision, codec=codec)
    try:
        run_demo(cfg)
    except (RuntimeError, FileNotFoundError, FileExistsError, ValueError) as e:
        fail(str(e))
