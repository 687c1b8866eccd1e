"""Every command the README shows exists, with the options it shows.

Each `asr-cli ...` / `torchrun ... cli.py ...` line of the README's code blocks (and the
`asr-cli ...` spans of its tables) is parsed by the real CLI (click's parser, as a run
would), and `asr-cli <command> --help` lists every option it uses; every `make X` names a
Makefile target.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import pytest
from typer.main import get_command

from conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def _shell_lines() -> list[str]:
    lines = []
    for block in re.findall(r"```(?:bash|sh)?\n(.*?)```", README, flags=re.S):
        for line in block.splitlines():
            line = line.split(" #")[0].strip()
            if line.startswith(("asr-cli ", "make", "torchrun ", "tensorboard ")):
                lines.append(line)
    return lines


def _cli_commands() -> list[list[str]]:
    spans = [s for s in re.findall(r"`(asr-cli [^`]+)`", README) if " --" in s]  # not bare names
    out = []
    for line in _shell_lines() + spans:
        argv = shlex.split(line)
        if argv[0] == "torchrun":
            argv = argv[argv.index("cli.py") + 1:]
        elif argv[0] == "asr-cli":
            argv = argv[1:]
        else:
            continue
        argv = ["clip.mp3" if a == "FILE..." else a for a in argv]
        if argv and argv[-1] in ("COMMAND", "--help"):
            continue
        out.append(argv)
    return out


def _resolve(argv: list[str]) -> tuple[list[str], object, list[str]]:
    import cli

    cmd = get_command(cli.app)  # typer's own click-like command tree
    path = []
    while getattr(cmd, "commands", None) and argv and argv[0] in cmd.commands:
        path.append(argv[0])
        cmd = cmd.commands[argv[0]]
        argv = argv[1:]
    return path, cmd, argv


COMMANDS = _cli_commands()


def test_the_readme_starts_with_the_two_commands():
    head = "\n".join(README.splitlines()[:12])
    assert "make demo" in head and "make test" in head
    assert len(COMMANDS) >= 15, "the README lost its command examples"


@pytest.mark.parametrize("argv", COMMANDS, ids=[" ".join(a)[:60] for a in COMMANDS])
def test_readme_command_parses(argv):
    path, cmd, rest = _resolve(list(argv))
    assert path, f"no such command: asr-cli {' '.join(argv)}"
    ctx = cmd.make_context("asr-cli " + " ".join(path), list(rest))  # raises on unknown / bad options
    # every option the README line gives reached its parameter from the command line
    by_flag = {flag: p.name for p in cmd.params for flag in getattr(p, "opts", []) + getattr(p, "secondary_opts", [])}
    for flag in (a.split("=")[0] for a in rest if a.startswith("--")):
        assert flag in by_flag, f"asr-cli {' '.join(path)} has no option {flag}"
        source = ctx.get_parameter_source(by_flag[flag])
        assert source is not None and source.name == "COMMANDLINE", f"{flag} was not taken from the command line"


def test_every_readme_option_is_in_the_commands_help():
    used: dict[tuple, set] = {}
    for argv in COMMANDS:
        path, _, rest = _resolve(list(argv))
        used.setdefault(tuple(path), set()).update(a.split("=")[0] for a in rest if a.startswith("--"))
    env = {**os.environ, "COLUMNS": "250", "NO_COLOR": "1", "TERM": "dumb"}
    for path, options in used.items():
        proc = subprocess.run([sys.executable, str(ROOT / "cli.py"), *path, "--help"], capture_output=True,
                              text=True, env=env, timeout=120)
        assert proc.returncode == 0, proc.stderr
        missing = [o for o in options if o not in proc.stdout]
        assert not missing, f"asr-cli {' '.join(path)} --help lacks {missing}"


def test_every_make_target_in_the_readme_exists():
    targets = set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), flags=re.M))
    shown = set()
    for line in _shell_lines():
        if line.startswith("make"):
            words = [w for w in shlex.split(line)[1:] if "=" not in w]
            shown.update(words or ["all"])
    shown.update(re.findall(r"`make ([a-z-]+)", README))
    assert {"demo", "test", "shards"} <= shown
    assert shown <= targets, f"README shows make targets the Makefile lacks: {shown - targets}"
