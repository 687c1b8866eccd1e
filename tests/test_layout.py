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

PACKAGES = ("asr", "pipeline", "commands")
MAX_LINES = 600
DATA_TABLES = {"pipeline/synth/french/lexicon.py"}  # word lists: data, not logic
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
    assert graph["asr.train"], "the import scan found nothing: is it still reading the sources?"
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_units_is_a_leaf():
    assert _imports("asr.units", MODULES["asr.units"]) == set()


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
    leaks = {n: sorted(m for m in _imports(n, p) if m.startswith("asr")) for n, p in offline.items()}
    assert not {n: m for n, m in leaks.items() if m}, leaks


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


@pytest.mark.parametrize("leaf", ["asr.units", "asr.kinds", "asr.decode_options", "asr.encoders.interface"])
def test_leaves_import_nothing_of_ours(leaf):
    assert _imports(leaf, MODULES[leaf]) == set()


def test_decoding_does_not_import_the_networks():
    networks = {n for n in MODULES if n in ("asr.models", "asr.ctc", "asr.las") or n.startswith("asr.encoders")}
    assert len(networks) >= 6
    assert not _closure("asr.decoding") & networks, sorted(_closure("asr.decoding") & networks)


def test_the_networks_do_not_reach_up_to_their_users():
    """models.py builds and loads networks; opening an .onnx or a checkpoint for use is asr/loading.py's."""
    users = {"asr.onnx_model", "asr.loading", "asr.transcribe", "asr.evaluate", "asr.api", "asr.decoding"}
    for name in ("asr.models", "asr.ctc", "asr.las"):
        assert not _closure(name) & users, (name, sorted(_closure(name) & users))


def test_each_encoder_stands_alone():
    """An encoder's file imports the interface and the conv fronts, never another encoder (loading
    a BiGRU never runs the Conformer's code); `make_encoder` sits beside the interface."""
    implementations = ("asr.encoders.rnn", "asr.encoders.conformer", "asr.encoders.pyramid")
    shared = {"asr.encoders.interface", "asr.encoders.subsampling"}
    for name in implementations:
        assert _imports(name, MODULES[name]) <= shared, (name, _imports(name, MODULES[name]))
    assert "def make_encoder" in MODULES["asr.encoders"].read_text()


def test_the_option_bounds_belong_to_the_command_line():
    users = {n for n, p in MODULES.items() if "commands.option_bounds" in _imports(n, p)}
    assert users and all(n.startswith("commands") for n in users), users
    typer_users = [n for n, p in MODULES.items() if n.startswith(("asr", "pipeline"))
                   and re.search(r"^\s*(import typer|from typer)", p.read_text(), re.M)]
    assert typer_users == []


def test_no_train_default_is_stated_twice():
    """Every training option's default is its asr/train_config.py field's: the commands take it
    with FROM_CONFIG, and no other module states a literal default under that name in a
    signature or a dataclass of the training loop."""
    import dataclasses

    from asr.train_config import SpecAugmentConfig, TrainConfig, options

    names = set(options(TrainConfig)) | set(options(SpecAugmentConfig))
    tree = ast.parse(MODULES["commands.training"].read_text())
    command = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "train")
    args = command.args.args
    defaults = dict(zip([a.arg for a in args[len(args) - len(command.args.defaults):]], command.args.defaults))
    assert names <= set(defaults), names - set(defaults)
    stated = [n for n in names if not (isinstance(defaults[n], ast.Name) and defaults[n].id == "FROM_CONFIG")]
    assert stated == [], f"asr-cli train states these defaults itself: {stated}"
    for module in ("asr.train", "asr.specaug", "commands.training"):
        for node in ast.walk(ast.parse(MODULES[module].read_text())):
            if isinstance(node, ast.ClassDef):
                assert node.name not in ("TrainConfig", "SpecAugmentConfig"), (module, node.name)
            if isinstance(node, ast.FunctionDef) and node.name != "train":
                fargs = node.args.args[len(node.args.args) - len(node.args.defaults):]
                literal = [a.arg for a, d in zip(fargs, node.args.defaults)
                           if a.arg in names and isinstance(d, ast.Constant) and d.value is not None]
                assert not literal, f"{module}.{node.name} restates {literal}"
    assert {f.name for f in dataclasses.fields(TrainConfig)} >= names - set(options(SpecAugmentConfig))
