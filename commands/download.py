"""`asr-cli download`: a Common Voice release archive from the Mozilla Data Collective."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from commands.base import app, fail
from pipeline.atomic import os_error_message
from pipeline.config import DEFAULT_LANG
from pipeline.mdc import DATA_COLLECTIVE, DEFAULT_OUT, ENV_API_KEY, ENV_API_URL, human_bytes


HELP = (f"Download a release's .tar.gz from the Mozilla Data Collective ({DATA_COLLECTIVE}): accept the dataset's "
        f"terms on its page and make an API key first. A rerun resumes; the archive is checked against its checksum. "
        f"{ENV_API_URL} points at another server (a mirror, a test).")


@app.command(help=HELP)
def download(
    lang: str = typer.Option(DEFAULT_LANG, help="Common Voice locale: fr, en, de, zh-CN, ..."),
    dataset: str = typer.Option("scripted", help="scripted (Scripted Speech: read sentences) or spontaneous (Spontaneous Speech: answers to questions)."),
    version: Optional[str] = typer.Option(None, help="Release, e.g. 25.0 (Scripted) or 5.0 (Spontaneous). [default: the newest in the catalog]"),
    out: Path = typer.Option(DEFAULT_OUT, help="Folder the archive is written to (resumed there: <archive>.part)."),
    dataset_id: Optional[str] = typer.Option(None, help="The dataset's id or slug (the end of its page's address on the Data Collective): skips the catalog search."),
    key_file: Optional[Path] = typer.Option(None, help=f"File holding the API key (the key, or a line {ENV_API_KEY}=...). [default: the {ENV_API_KEY} environment variable]"),
    progress: bool = typer.Option(True, help="Show a progress bar."),
):
    from pipeline.lock import LockedError
    from pipeline.mdc import DownloadError, download as fetch, read_key

    try:
        result = fetch(lang, dataset, version, out, dataset_id, read_key(key_file), progress)
    except (DownloadError, LockedError) as e:
        fail(str(e))
    except OSError as e:  # a full disk, a read-only --out
        fail(os_error_message(e))
    path = result["path"]
    if result["skipped"]:
        typer.echo(f"{path}: already downloaded ({human_bytes(result['bytes'])})")
    else:
        resumed = f", resumed at {human_bytes(result['resumed_from'])}" if result["resumed_from"] else ""
        checked = f"{result['algorithm']} checked" if result["algorithm"] else \
            f"NOT checked: the checksum {result['checksum']!r} is of no known form" if result["checksum"] else \
            "NOT checked: the Data Collective gave no checksum"
        typer.echo(f"{path}: {human_bytes(result['bytes'])}, {checked}{resumed}")
    typer.echo(f"next: asr-cli shards --cv-archive {path} --lang {lang} --out shards/{lang} (nothing is extracted)")
