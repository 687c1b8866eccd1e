"""Which release a build reads: a Scripted Speech folder, a Spontaneous Speech folder, or an archive.

`--cv-root` names a folder: a Spontaneous Speech one is recognised by its `ss-corpus-<lang>.tsv`
(`pipeline.spontaneous.find_folder`), anything else is read as Scripted Speech (`pipeline.cv`,
whose errors show both layouts). `--cv-archive` (or a `--cv-root` that is a .tar.gz) names an
archive, read by `pipeline.archive_build` without extracting it.
"""

from __future__ import annotations

from pathlib import Path

from pipeline import spontaneous
from pipeline.cv import Release, ReleaseError, open_release

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")


def is_archive(path: Path) -> bool:
    """Whether `path` is a release archive (a .tar.gz, .tgz or .tar file)."""
    path = Path(path)
    return path.name.endswith(ARCHIVE_SUFFIXES) and path.is_file()


def open_source(cfg) -> Release:
    """The release of a BuildConfig's `cv_root` folder, with its train set, speaker cap and
    selection (`pipeline.selection.Selection`)."""
    root = Path(cfg.cv_root)
    if is_archive(root):
        raise ReleaseError(f"{root} is an archive: `asr-cli shards --cv-archive {root}` reads it (nothing extracted)")
    folder = spontaneous.find_folder(root, cfg.lang)
    if folder is not None:
        return spontaneous.open_folder(folder, cfg.lang, cfg.train_set, cfg.max_per_speaker, cfg.selection)
    return open_release(root, cfg.lang, cfg.train_set, cfg.max_per_speaker, cfg.selection)
