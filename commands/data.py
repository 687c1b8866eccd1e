"""Data commands: `synth` (the synthetic demo corpus), `shards` and `shards verify`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from commands.base import app, bounded, config_options, fail, fields_of
from pipeline.atomic import os_error_message
from pipeline.config import DEFAULT_LANG, BuildConfig
from pipeline.shardformat import DATASET, INDEX, REJECTS
from synth.options import SynthOptions


@app.command()
@bounded
@config_options(SynthOptions)
def synth(**options):
    """Synthesise a French corpus with espeak-ng in Common Voice's own layout."""
    from synth import synthesize

    o = SynthOptions(**fields_of(SynthOptions, options))
    try:
        summary = synthesize(o.out, lang=o.lang, hours=o.hours, seed=o.seed, jobs=o.jobs or None, num_clips=o.clips)
    except (ValueError, RuntimeError, FileNotFoundError) as e:
        fail(str(e))
    except OSError as e:  # a full disk, a read-only folder
        fail(os_error_message(e))
    typer.echo(_format_synth(summary, o.out))


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
@config_options(BuildConfig)
def shards(
    ctx: typer.Context,
    cv_root: Path = typer.Option(Path("data/cv"), help="Folder holding the extracted release: Scripted Speech's language folder (<cv-root>/<lang>/clips, *.tsv) or a Spontaneous Speech folder (sps-corpus-*-<lang>/, or that folder itself)."),
    cv_archive: Optional[Path] = typer.Option(None, help="The release's .tar.gz (Scripted or Spontaneous Speech, as downloaded): read sequentially, nothing extracted; replaces --cv-root."),
    lang: str = typer.Option(DEFAULT_LANG, help="Common Voice locale: fr, en, de, zh-CN, ..."),
    out: Optional[Path] = typer.Option(None, help="Output folder [default: shards/<lang>]."),
    max_per_speaker: Optional[str] = typer.Option(None, help="Cap each speaker's train clips: a count (500) or hours / minutes of audio (2h, 90m); a deterministic, sentence-diverse subset is kept, the rest rejected as speaker_cap. Dev and test are never capped. [default: no cap]"),
    sentence_domain: Optional[str] = typer.Option(None, help="Keep only rows whose sentence_domain (Corpus 17.0+) is one of these, comma-separated (e.g. health,finance); the rest are rejects (sentence_domain_filter), in every split."),
    variant: Optional[str] = typer.Option(None, help="Keep only rows whose variant (Corpus 13.0+) is one of these, comma-separated; the rest are rejects (variant_filter), in every split."),
    drop_quality_tags: Optional[str] = typer.Option(None, help="Spontaneous Speech: leave out rows whose quality_tags hold one of these, comma-separated (short-audio, long-audio, transcription-length, speech-rate, ...; reason quality_tag)."),
    speed: Optional[str] = typer.Option(None, help="Speed perturbation: comma-separated factors, e.g. 0.9,1.1 (each in 0.5-2.0): resampled copies of the train split, ids <id>_sp0p9."),
    allow_shared_speakers: bool = typer.Option(False, "--allow-shared-speakers", help="Keep the train clips of dev/test speakers: for your own corpus whose splits share speakers on purpose (your own voice, a few speakers' unseen takes). Dev/test sentences still never reach train. Never for Common Voice: its dev and test measure new speakers."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Read the TSVs and audio headers only (no decoding, nothing written) and print per split the clips, hours, speakers and disk the build would take, and the free space of --out."),
    **options,
):
    """Build shards/<lang>/ from a Common Voice release; a rerun resumes where it stopped."""
    if ctx.invoked_subcommand is not None:
        return
    from pipeline import archive_build
    from pipeline import build as folder_build
    from pipeline.build import format_summary, parse_speeds
    from pipeline.cv import ReleaseError, SpeakerCap
    from pipeline.estimate import format_dry_run
    from pipeline.lock import LockedError
    from pipeline.releases import is_archive
    from pipeline.selection import Selection

    given = fields_of(BuildConfig, options)
    if not 0 <= given["min_duration"] < given["max_duration"]:
        fail("need 0 <= --min-duration < --max-duration")
    try:
        speeds = parse_speeds(speed)
        cap = SpeakerCap.parse(max_per_speaker)
    except ValueError as e:
        fail(str(e))
    from pipeline.shardformat import check_codec

    try:
        check_codec(given["codec"])
    except ValueError as e:
        fail(f"--codec: {e}")
    cfg = BuildConfig(cv_root=cv_archive or cv_root, lang=lang, out=out or Path("shards") / lang, speeds=speeds,
                      max_per_speaker=cap, selection=Selection.parse(sentence_domain, variant, drop_quality_tags, allow_shared_speakers),
                      **given)
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
