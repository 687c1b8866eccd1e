"""`asr-cli`: every command is a thin call into `pipeline/` (offline data) or `asr/` (models).

    asr-cli synth          synthetic French corpus in Common Voice's layout (espeak-ng)
    asr-cli download       a Common Voice release archive from the Mozilla Data Collective
    asr-cli shards         Common Voice release (folder or .tar.gz) -> log-Mel webdataset shards (+ `verify`)
"""

from __future__ import annotations

import commands.data  # noqa: F401  (each module registers its commands on the app, in this order)
import commands.download  # noqa: F401
import commands.training  # noqa: F401
import commands.using  # noqa: F401
from commands.base import app  # tests and `python cli.py` use cli.app


def main() -> None:
    app()


if __name__ == "__main__":
    main()
