"""The house rules of the layout (README "Where things are"), checked on the source itself:
no import cycle among our modules (imports inside functions included), no module over 600
lines but pure data tables, the shard format's file names spelt in one module only, and one
temp-then-rename helper."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from conftest import ROOT

PACKAGES = ("asr", "pipeline", "commands", "synth")
MAX_LINES = 450
DATA_TABLES = {"synth/french/lexicon.py"}  # word lists: data, not logic
FORMAT_OWNER = "pipeline/shardformat.py"
FORMAT_NAMES = ("dataset.json", "index.parquet", "rejects.parquet")
ATOMIC_OWNER = "pipeline/atomic.py"


def _sources() -> dict[str, Path]:
    """Module name -> file, for cli.py and every module of our packages."""
    mods = {"cli": ROOT / "cli.py"}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            mods[".".join(parts)] = path
    return mods


MODULES = _sources()


def _imports(name: str, path: Path) -> set[str]:
    """Our modules that `name` imports anywhere in its file (inside functions too)."""
    found = set()
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                anchor = name.split(".")[: len(name.split(".")) - node.level + (1 if is_pkg else 0)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        found.update(t for t in targets if t in MODULES and t != name)
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (c := visit(m)):
                return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (c := visit(n)):
            return c
    return None


def test_no_import_cycle_among_our_modules():
    graph = {name: _imports(name, path) for name, path in MODULES.items()}
    assert graph["asr.training.loop"], "the import scan found nothing: is it still reading the sources?"
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


# asr/'s folders and what each may import of the others (pipeline/ is below them all): the
# floors the README's code map draws. A folder's own modules import each other freely.
FOLDERS = {
    "tokens": set(),
    "store": {"tokens"},
    "runtime": set(),
    "nets": {"tokens", "store"},
    "data": {"tokens"},
    "decoding": {"tokens", "nets"},
    "training": {"tokens", "store", "runtime", "nets", "data", "decoding"},
    "inference": {"tokens", "store", "runtime", "nets", "data", "decoding"},
    "apps": {"tokens", "store", "runtime", "nets", "data", "decoding", "training", "inference"},
}


def _folder(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if parts[0] == "asr" and len(parts) > 1 else None


def test_asr_is_folders_and_each_imports_only_the_floors_below():
    root_modules = sorted(p.name for p in (ROOT / "asr").glob("*.py"))
    assert root_modules == ["__init__.py"], f"asr/ holds modules outside its folders: {root_modules}"
    folders = sorted(p.name for p in (ROOT / "asr").iterdir() if p.is_dir() and (p / "__init__.py").is_file())
    assert folders == sorted(FOLDERS), folders
    broken = []
    for name, path in MODULES.items():
        here = _folder(name)
        if here is None:
            continue
        for target in _imports(name, path):
            there = _folder(target)
            if there is not None and there != here and there not in FOLDERS[here]:
                broken.append(f"{name} imports {target} ({here} may import {sorted(FOLDERS[here]) or 'nothing'})")
    assert broken == [], broken


def test_each_folder_says_what_it_holds():
    for folder in FOLDERS:
        doc = ast.get_docstring(ast.parse((ROOT / "asr" / folder / "__init__.py").read_text())) or ""
        assert len(doc.split()) >= 25, f"asr/{folder}/__init__.py: a paragraph on what the folder holds"


def test_units_is_a_leaf():
    assert _imports("asr.tokens.units", MODULES["asr.tokens.units"]) == set()


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_size(name):
    path = MODULES[name]
    rel = path.relative_to(ROOT).as_posix()
    if rel in DATA_TABLES:
        return
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{rel} has {lines} lines (at most {MAX_LINES}: split it by concern)"


def _string_constants(path: Path) -> list[str]:
    """String literals of a module, docstrings left out (prose may name the files)."""
    tree = ast.parse(path.read_text())
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    return [n.value for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings]


def test_shard_file_names_are_spelt_by_the_format_module_only():
    bench = {f"bench.{p.stem}": p for p in (ROOT / "bench").glob("*.py")}
    spelt = {}
    for name, path in {**MODULES, **bench}.items():
        rel = path.relative_to(ROOT).as_posix()
        hits = [s for s in _string_constants(path) if any(f in s for f in FORMAT_NAMES)]
        if hits:
            spelt[rel] = hits
    assert set(spelt) == {FORMAT_OWNER}, f"shard file names spelt outside {FORMAT_OWNER}: {spelt}"


def test_one_temp_then_rename_helper():
    renamers = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("replace", "rename") and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "os"):
                renamers.append(path.relative_to(ROOT).as_posix())
    assert renamers and set(renamers) == {ATOMIC_OWNER}, renamers


def test_the_offline_stage_never_imports_the_models():
    offline = {n: p for n, p in MODULES.items() if n.startswith("pipeline")}
    assert len(offline) > 5
    leaks = {n: sorted(m for m in _imports(n, p) if m.startswith(("asr", "synth"))) for n, p in offline.items()}
    assert not {n: m for n, m in leaks.items() if m}, leaks


def test_the_demo_corpus_stands_apart():
    """synth/ (the espeak-ng corpus for the demo, tests and benchmarks) is not the product: the
    pipeline never imports it, asr/ only in its demo, and it imports nothing of asr/."""
    users = {n for n, p in MODULES.items() if not n.startswith("synth") and any(
        m == "synth" or m.startswith("synth.") for m in _imports(n, p))}
    assert users and users <= {"asr.apps.demo", "commands.data"}, users
    synth = {n: p for n, p in MODULES.items() if n == "synth" or n.startswith("synth.")}
    assert len(synth) > 5
    assert not [m for n, p in synth.items() for m in _imports(n, p) if m.startswith("asr")]


def _closure(name: str) -> set[str]:
    """Every module of ours that importing `name` can load (its imports, theirs, ...)."""
    graph = {n: _imports(n, p) for n, p in MODULES.items()}
    seen, todo = set(), [name]
    while todo:
        for m in graph[todo.pop()]:
            if m not in seen:
                seen.add(m)
                todo.append(m)
    return seen


@pytest.mark.parametrize("leaf", ["asr.tokens.units", "asr.nets.kinds", "asr.decoding.options", "asr.nets.config",
                                  "asr.data.config", "pipeline.options"])
def test_leaves_import_nothing_of_ours(leaf):
    """Leaves import nothing of ours but the option helper (the configs' `option`)."""
    assert _imports(leaf, MODULES[leaf]) <= {"pipeline.options"}


@pytest.mark.parametrize("config", ["asr.training.config", "asr.decoding.options", "asr.inference.options",
                                    "asr.apps.options", "asr.nets.config", "asr.data.config"])
def test_the_configs_load_without_torch(config):
    """What `asr-cli --help` reads: the configs and what they import, none of it torch."""
    import subprocess
    import sys

    code = f"import sys, {config}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"


def test_decoding_does_not_import_the_networks():
    networks = {n for n in MODULES if n in ("asr.nets.models", "asr.nets.ctc", "asr.nets.las") or n.startswith("asr.nets.encoders")}
    assert len(networks) >= 6
    assert not _closure("asr.decoding.decoder") & networks, sorted(_closure("asr.decoding.decoder") & networks)


def test_the_networks_do_not_reach_up_to_their_users():
    """models.py builds and loads networks; opening an .onnx or a checkpoint for use is asr/inference/loading.py's."""
    users = {"asr.inference.onnx_model", "asr.inference.loading", "asr.inference.transcribe", "asr.inference.evaluate", "asr.inference.api", "asr.decoding.decoder"}
    for name in ("asr.nets.models", "asr.nets.ctc", "asr.nets.las"):
        assert not _closure(name) & users, (name, sorted(_closure(name) & users))


def test_each_encoder_stands_alone():
    """An encoder's file imports the interface and the conv fronts, never another encoder (loading
    a BiGRU never runs the Conformer's code); `make_encoder` sits beside the interface."""
    implementations = ("asr.nets.encoders.rnn", "asr.nets.encoders.conformer", "asr.nets.encoders.pyramid")
    shared = {"asr.nets.encoders.interface", "asr.nets.encoders.subsampling"}
    for name in implementations:
        assert _imports(name, MODULES[name]) <= shared, (name, _imports(name, MODULES[name]))
    assert "def make_encoder" in MODULES["asr.nets.encoders"].read_text()


def test_the_option_bounds_belong_to_the_command_line():
    users = {n for n, p in MODULES.items() if "commands.option_bounds" in _imports(n, p)}
    assert users and all(n.startswith("commands") for n in users), users
    typer_users = [n for n, p in MODULES.items() if n.startswith(("asr", "pipeline"))
                   and re.search(r"^\s*(import typer|from typer)", p.read_text(), re.M)]
    assert typer_users == []


def _config_classes() -> dict[str, type]:
    """Every dataclass of ours with command-line option fields (pipeline/options.py's `option`)."""
    import dataclasses
    import importlib

    from pipeline.options import options

    found = {}
    for name, path in MODULES.items():
        if "option(" not in path.read_text() or name == "pipeline.options":
            continue
        module = importlib.import_module(name)
        for obj in vars(module).values():
            if dataclasses.is_dataclass(obj) and isinstance(obj, type) and options(obj) and obj.__module__ == name:
                found[f"{name}.{obj.__name__}"] = obj
    return found


def test_no_command_default_is_stated_twice():
    """Every option default is its config field's (pipeline/options.py's `option`): no command
    signature in commands/ states, under the name of a config option, the default a config
    gives it (the commands take them with `config_options` / `option_of`; an on/off flag is a
    switch, not a default), and no function of the module that owns a config restates one of
    its options' defaults in a signature."""
    from pipeline.options import options

    configs = _config_classes()
    assert {"asr.training.config.TrainConfig", "asr.data.config.SpecAugmentConfig", "asr.decoding.options.DecodeOptions",
            "asr.decoding.options.LiveOptions", "asr.inference.options.EvalConfig", "asr.apps.options.ServeConfig",
            "asr.apps.options.DemoConfig", "asr.nets.config.EncoderConfig", "asr.nets.config.LASConfig"} <= set(configs)
    names = {n for c in configs.values() for n in options(c)}
    defaults_of: dict[str, set] = {}  # an option's name -> the defaults configs give it
    for c in configs.values():
        for n, f in options(c).items():
            defaults_of.setdefault(n, set()).add(f.default if not isinstance(f.default, (list, dict)) else None)
    stated = []
    for name, path in MODULES.items():
        if not name.startswith("commands"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef):
                continue
            args = node.args.args + node.args.kwonlyargs
            defaults = [None] * (len(node.args.args) - len(node.args.defaults)) + node.args.defaults
            defaults += node.args.kw_defaults
            for a, d in zip(args, defaults):
                if a.arg in names and isinstance(d, ast.Call) and d.args and isinstance(d.args[0], ast.Constant) \
                        and d.args[0].value in defaults_of.get(a.arg, ()) - {None} \
                        and not isinstance(d.args[0].value, bool):
                    stated.append(f"{name}.{node.name} --{a.arg} {d.args[0].value!r}")
    assert stated == [], f"commands state these config defaults themselves: {stated}"
    for key, config in configs.items():
        module = key.rsplit(".", 1)[0]
        own = set(options(config))
        for node in ast.walk(ast.parse(MODULES[module].read_text())):
            if isinstance(node, ast.FunctionDef):
                fargs = node.args.args[len(node.args.args) - len(node.args.defaults):]
                literal = [a.arg for a, d in zip(fargs, node.args.defaults)
                           if a.arg in own and isinstance(d, ast.Constant) and d.value is not None]
                assert not literal, f"{module}.{node.name} restates {literal}"


def test_every_command_option_of_a_config_comes_from_it():
    """`asr-cli train`, `eval`, `transcribe`, `serve` and `demo` take every option field of their
    configs, with the field's default and help."""
    import dataclasses
    import inspect

    import commands.training
    import commands.using
    from asr.apps.options import DemoConfig, ServeConfig
    from asr.decoding.options import DecodeOptions, LiveOptions
    from asr.inference.options import EvalConfig
    from asr.training.config import SpecAugmentConfig, TrainConfig
    from pipeline.options import HELP, options

    for command, configs in ((commands.training.train, (TrainConfig, SpecAugmentConfig)),
                             (commands.using.eval_, (EvalConfig, DecodeOptions)),
                             (commands.using.transcribe, (DecodeOptions, LiveOptions)),
                             (commands.using.serve, (ServeConfig, LiveOptions)),
                             (commands.training.demo, (DemoConfig,))):
        params = inspect.signature(command).parameters
        for config in configs:
            for name, f in options(config).items():
                info = params[name].default
                default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
                assert info.default == default and info.help.startswith(f.metadata[HELP]), (command.__name__, name)


def test_a_codec_is_one_file():
    """Every module of pipeline/codecs/ with a CODEC is a registered codec, and no module outside
    that folder spells a codec's member name: a new codec is one file (and its tests)."""
    from pipeline.feature_codecs import CODECS

    files = sorted(p.stem for p in (ROOT / "pipeline" / "codecs").glob("*.py") if p.stem != "__init__")
    assert files and sorted(c.__class__.__module__.rsplit(".", 1)[1] for c in CODECS.values()) == files
    members = {c.member for c in CODECS.values()}
    spelt = {}
    for name, path in MODULES.items():
        if name.startswith("pipeline.codecs"):
            continue
        hits = [s for s in _string_constants(path) if s in members]
        if hits:
            spelt[name] = hits
    assert spelt == {}, spelt
