"""Data commands: `synth` (the synthetic demo corpus), `shards` and `shards verify`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from commands.base import app, bounded, fail
from pipeline.atomic import os_error_message
from pipeline.shardformat import DATASET, DEFAULT_CODEC, INDEX, REJECTS


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
    cv_root: Path = typer.Option(Path("data/cv"), help="Folder holding the extracted release: Scripted Speech's language folder (<cv-root>/<lang>/clips, *.tsv) or a Spontaneous Speech folder (sps-corpus-*-<lang>/, or that folder itself)."),
    cv_archive: Optional[Path] = typer.Option(None, help="The release's .tar.gz (Scripted or Spontaneous Speech, as downloaded): read sequentially, nothing extracted; replaces --cv-root."),
    lang: str = typer.Option("fr", help="Common Voice locale: fr, en, de, zh-CN, ..."),
    out: Optional[Path] = typer.Option(None, help="Output folder [default: shards/<lang>]."),
    jobs: int = typer.Option(0, help="Worker processes (0: every core)."),
    shard_size: int = typer.Option(1000, help="Clips per shard (about 70 MB of features at 5 s a clip)."),
    seed: int = typer.Option(0, help="Seed of the train shuffle."),
    min_duration: float = typer.Option(0.5, help="Clips shorter than this (seconds) are rejected."),
    max_duration: float = typer.Option(20.0, help="Clips longer than this (seconds) are rejected (too_long). Spontaneous Speech answers last 25 s on average, up to minutes: pass 60 there (and train with --max-frames 6000)."),
    train_set: str = typer.Option("train", help="'train' (train.tsv) or 'validated' (validated.tsv: more hours). Either way no dev/test speaker (client_id) or sentence reaches train; each clip left out is a reject with its reason, and the summary gives the hours left out and those gained over train.tsv (kept train clips train.tsv does not list)."),
    max_per_speaker: Optional[str] = typer.Option(None, help="Cap each speaker's train clips: a count (500) or hours / minutes of audio (2h, 90m); a deterministic, sentence-diverse subset is kept, the rest rejected as speaker_cap. Dev and test are never capped. [default: no cap]"),
    sentence_domain: Optional[str] = typer.Option(None, help="Keep only rows whose sentence_domain (Corpus 17.0+) is one of these, comma-separated (e.g. health,finance); the rest are rejects (sentence_domain_filter), in every split."),
    variant: Optional[str] = typer.Option(None, help="Keep only rows whose variant (Corpus 13.0+) is one of these, comma-separated; the rest are rejects (variant_filter), in every split."),
    drop_quality_tags: Optional[str] = typer.Option(None, help="Spontaneous Speech: leave out rows whose quality_tags hold one of these, comma-separated (short-audio, long-audio, transcription-length, speech-rate, ...; reason quality_tag)."),
    force: bool = typer.Option(False, "--force", help="Rebuild everything instead of resuming."),
    speed: Optional[str] = typer.Option(None, help="Speed perturbation: comma-separated factors, e.g. 0.9,1.1 (each in 0.5-2.0): resampled copies of the train split, ids <id>_sp0p9."),
    codec: str = typer.Option(DEFAULT_CODEC, help="How features are stored: qdelta (quantised to 1/8 nat, time delta, zstd: a third of float16's bytes, every value within 0.0625 of float16's) or float16 (the format before codecs)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Read the TSVs and audio headers only (no decoding, nothing written) and print per split the clips, hours, speakers and disk the build would take, and the free space of --out."),
    space_check: bool = typer.Option(True, "--space-check/--no-space-check", help="Refuse, before writing anything, a build whose estimated disk exceeds the free space of --out. A separate flag from --force, which rebuilds everything (a resume would lose its shards); without the check a build that fills the disk still stops cleanly, its finished shards kept."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
):
    """Build shards/<lang>/ from a Common Voice release; a rerun resumes where it stopped."""
    if ctx.invoked_subcommand is not None:
        return
    from pipeline import archive_build
    from pipeline import build as folder_build
    from pipeline.build import BuildConfig, format_summary, parse_speeds
    from pipeline.cv import ReleaseError, SpeakerCap
    from pipeline.estimate import format_dry_run
    from pipeline.lock import LockedError
    from pipeline.releases import is_archive
    from pipeline.selection import Selection

    if shard_size < 1:
        fail("--shard-size must be at least 1")
    if not 0 <= min_duration < max_duration:
        fail("need 0 <= --min-duration < --max-duration")
    try:
        speeds = parse_speeds(speed)
        cap = SpeakerCap.parse(max_per_speaker)
    except ValueError as e:
        fail(str(e))
    from pipeline.shardformat import check_codec

    try:
        check_codec(codec)
    except ValueError as e:
        fail(f"--codec: {e}")
    cfg = BuildConfig(cv_root=cv_archive or cv_root, lang=lang, out=out or Path("shards") / lang, jobs=jobs,
                      codec=codec, shard_size=shard_size, seed=seed, min_duration=min_duration,
                      max_duration=max_duration, train_set=train_set, force=force, progress=progress,
                      speeds=speeds, max_per_speaker=cap, space_check=space_check,
                      selection=Selection.parse(sentence_domain, variant, drop_quality_tags))
    if cv_archive is not None and ctx.get_parameter_source("cv_root").name == "COMMANDLINE":
        fail("give --cv-root (an extracted release) or --cv-archive (its .tar.gz), not both")
    if cv_archive is not None and not cv_archive.is_file():
        fail(f"--cv-archive {cv_archive} is not a file (a release's .tar.gz, e.g. from `asr-cli download`)")
    builder = archive_build if is_archive(cfg.cv_root) else folder_build
    if dry_run:
        try:
            report = builder.dry_run(cfg)
        except ReleaseError as e:
            fail(str(e))
        except OSError as e:
            fail(os_error_message(e))
        typer.echo(format_dry_run(report))
        return
    try:
        summary = builder.build(cfg)
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
    from pipeline.verify import verify_folder

    problems, warnings = verify_folder(root, progress=progress)
    for w in warnings:
        typer.secho(f"WARNING {w}", fg=typer.colors.YELLOW, err=True)
    if problems:
        for p in problems:
            typer.secho(p, fg=typer.colors.RED, err=True)
        fail(f"{len(problems)} problem(s) in {root}")
    typer.echo(f"{root}: all shards, {INDEX} and {DATASET} agree")
