"""Model commands: `train`, `bench-loader`, `plot` and `demo` (the whole product on synthetic speech)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from asr.apps.options import DemoConfig
from asr.nets.config import SHAPE_CONFIGS
from asr.runtime.batchsize import CPU_FRAMES, parse as parse_batch_frames
from asr.training.config import SpecAugmentConfig, TrainConfig
from asr.training.config import options as train_options
from commands.base import app, bounded, config_options, fail, fields_of, option_of, shards_lang
from pipeline.atomic import os_error_message
from pipeline.shardformat import DATASET, ShardReadError, refuse_out_inside_shards

BENCH_LOADER = Path(__file__).resolve().parents[1] / "bench" / "bench_loader.py"  # the checkout's bench/


@app.command()
@bounded
@config_options(TrainConfig, SpecAugmentConfig, overrides=tuple(SHAPE_CONFIGS.values()))
def train(
    shards: Path = typer.Option(..., help=f"Shard folder made by `asr-cli shards` (holds {DATASET})."),
    out: Optional[Path] = typer.Option(None, help="Run folder for checkpoints and logs [default: runs/<lang>-<model>]."),
    **options,
):
    """Train a CTC, attention or transducer model on shards, on the GPU if any (torchrun for several)."""
    from asr.training.loop import train_local

    given = options  # every option by name: the configs are built from it, no mapping by hand
    model, init_from, ctc_weight = given["model"], given["init_from"], given["ctc_weight"]
    shape = {k: given[k] for c in SHAPE_CONFIGS.values() for k in train_options(c) if given.get(k) is not None}
    las_only = [k for k in shape if k in train_options(SHAPE_CONFIGS["las"])]
    rnnt_only = [k for k in shape if k in train_options(SHAPE_CONFIGS["rnnt"])]
    kind = model or "ctc"
    if init_from == "":  # given, but empty: not a silent run from scratch
        fail("--init-from needs a checkpoint file (a .pt written by `asr-cli train`), not an empty path", 2)
    if init_from:  # the parent's network: asr/training/finetune.py refuses, in training, options that would change it
        from asr.training.finetune import load_parent

        try:
            kind = model or load_parent(init_from).card.kind
        except ValueError as e:  # an ONNX model, a pickle, not a checkpoint
            fail(str(e))
    if kind in ("las", "rnnt"):
        if given["upsample"] is not None:
            fail("--upsample applies to --model ctc only")
        shape["ctc_weight"] = ctc_weight  # the model builds its CTC head by it
    for only, name in ((las_only, "las"), (rnnt_only, "rnnt")):
        if only and kind != name and not init_from:
            fail(f"--{only[0].replace('_', '-')} applies to --model {name} only")
    if given["rnn"] is not None and given["rnn"] not in ("gru", "lstm"):
        fail("--rnn must be gru or lstm")
    if given["encoder"] is not None and given["encoder"] not in ("rnn", "conformer"):
        fail("--encoder must be rnn or conformer")
    try:
        batch_frames = parse_batch_frames(given["batch_frames"])  # None: auto
    except ValueError as e:
        fail(str(e), 2)
    if batch_frames is not None and batch_frames < given["max_frames"]:  # at least one utterance of --max-frames
        fail(f"--batch-frames ({batch_frames}) must be at least --max-frames ({given['max_frames']}): a "
             "batch holds at least one whole utterance; lower --max-frames too to train on short clips in small "
             "batches", 2)
    lang = shards_lang(shards)
    cfg = TrainConfig(shards=str(shards), out=str(out or Path("runs") / f"{lang}-{kind}"), model_options=shape,
                      specaug=SpecAugmentConfig(**fields_of(SpecAugmentConfig, given)),
                      **{k: v for k, v in fields_of(TrainConfig, given).items() if k in train_options(TrainConfig)})
    try:
        refuse_out_inside_shards(cfg.out)  # a later `shards --force` there must never meet a run
        summary = train_local(cfg, cfg.procs)
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
def bench_loader(  # the loader as training sets it up: its workers, its batches
    shards: Path = typer.Option(..., help="Shard folder made by `asr-cli shards`."),
    workers: int = option_of(TrainConfig, "workers"),
    batch_frames: int = typer.Option(CPU_FRAMES, help="Padded feature frames per batch (10 ms each)."),
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
            from asr.apps.plot import plot_attention

            path = plot_attention(checkpoint, shards, split, out, n=n)
        else:
            from asr.apps.plot import plot_spectrograms

            path = plot_spectrograms(shards, split, out, n=n, augment=augment)
    except (FileNotFoundError, ValueError) as e:
        fail(str(e))
    except OSError as e:  # a full disk, a read-only folder
        fail(os_error_message(e))
    typer.echo(f"wrote {path}")


@app.command()
@bounded
@config_options(DemoConfig)
def demo(**options):
    """The whole product on a synthetic French corpus: synth, shards, train, LM, eval, transcribe."""
    from asr.apps.demo import run_demo

    cfg = DemoConfig(**fields_of(DemoConfig, options))
    if cfg.model not in ("ctc", "las", "rnnt"):
        fail("--model must be ctc, las or rnnt")
    if cfg.precision not in ("", "fp32", "bf16"):
        fail("--precision must be fp32 or bf16 (or left out: the faster, measured)")
    from pipeline.shardformat import check_codec

    try:
        check_codec(cfg.codec)
    except ValueError as e:
        fail(f"--codec: {e}")
    try:
        run_demo(cfg)
    except (RuntimeError, FileNotFoundError, FileExistsError, ValueError) as e:
        fail(str(e))
