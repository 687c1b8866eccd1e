"""Fine-tuning: a new run that starts from a trained checkpoint's network (`--init-from`).

    asr-cli train --shards shards/xx --init-from runs/fr-ctc/best.pt --out runs/xx-ctc

What a child run takes from its parent (a .pt written by `asr-cli train`):
  * the network: model kind, preset and every size (`child_model_config`); only the output
    size follows the child's units. An option that would change the network is refused
    (`check_network`) unless it equals the parent's.
  * the weights (`init_weights`): every tensor by name and shape, except those whose rows
    are the units (the model's `unit_tensors`: CTC's output layer; LAS's speller embedding,
    output layer and CTC head). Those are rebuilt for the child's units: a unit the two unit
    sets share, by its string (the same character, the same SentencePiece piece, and the
    specials <blank>, <eos>, <unk> as themselves), keeps its trained row; the others keep
    the fresh (seeded) initialisation.
And nothing else: optimizer, schedule and step count start fresh (asr/training/config.py's
`resolved` gives it the fine-tuning schedule); CMVN, language and normaliser are the child
shards'. The features must be the parent's (`check_features`): a model hears only features
made as it was trained on. A different normaliser (another language's, another version) is
the point of a new language, so it is a note in the log, not a refusal.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

import asr.store.checkpoint as checkpoint
from asr.store.payload import Checkpoint
from asr.tokens.tokenizer import Tokenizer, tokenizer_from_state

ONNX_SUFFIX = ".onnx"
# Storage only: float16 or float32 in the shards is the same feature to the model.
STORAGE_FIELDS = ("dtype",)


def check_request(init_from: str, resume: bool, freeze_encoder_steps: int) -> None:
    """One line for option combinations --init-from does not take."""
    if init_from and resume:
        raise ValueError("--init-from starts a new run (new optimizer, schedule and steps) and --resume continues "
                         "one: give one of them (a fine-tuning run that was stopped resumes with --resume alone)")
    if freeze_encoder_steps and not init_from and not resume:
        raise ValueError("--freeze-encoder-steps needs --init-from (a trained encoder to keep)")


def prepare(cfg, dataset: dict) -> Checkpoint | None:
    """--init-from's checkpoint (None without one), once every refusal is passed: the options,
    the file (an ONNX model, a pickle), the features, the network options. `cfg`: the
    TrainConfig as given (before `resolved`); `dataset`: the child shards' dataset.json."""
    check_request(cfg.init_from, cfg.resume, cfg.freeze_encoder_steps)
    if not cfg.init_from:
        return None
    parent = load_parent(cfg.init_from)
    check_features(parent, dataset, cfg.init_from)
    check_network(dataclasses.asdict(cfg), parent.card.model, cfg.init_from)
    return parent


def load_parent(path: str | Path) -> Checkpoint:
    """The parent checkpoint (no training state); CheckpointError, in one line, for an exported
    ONNX model, a pickle, or a checkpoint without a network and units."""
    path = Path(path)
    if path.suffix == ONNX_SUFFIX:
        raise checkpoint.CheckpointError(f"--init-from {path}: an exported ONNX model is for inference only, not "
                                         "trainable: give the .pt checkpoint it was exported from")
    try:  # refuses pickles, checks the config against the tensors and the card
        return Checkpoint.read(path)
    except checkpoint.CheckpointError as e:
        raise checkpoint.CheckpointError(f"--init-from {e}") from None


def check_features(parent: Checkpoint, dataset: dict, path: str | Path) -> None:
    """ValueError naming every feature setting the child shards make otherwise than the parent."""
    from pipeline.audio import FeatureConfig

    mine = dataclasses.asdict(FeatureConfig.from_dict(dataset["features"]))
    theirs = dataclasses.asdict(parent.card.feature_config())
    differ = [f"{k} {mine[k]}, not {theirs[k]}" for k in mine if k not in STORAGE_FIELDS and mine[k] != theirs[k]]
    if differ:
        raise ValueError(f"--init-from {path}: the shards' features differ from those the model was trained on "
                         f"({'; '.join(differ)}): build the shards with the parent's feature settings")


def normaliser_note(parent: Checkpoint, dataset: dict) -> str | None:
    """A log line when the child's texts are normalised otherwise than the parent's (None: alike)."""
    lang, norm = (parent.card.lang, parent.card.normalizer), (dataset.get("lang"), dataset.get("normalizer"))
    if lang == norm or norm == (None, None):
        return None
    return (f"note: the parent was trained on {lang[0]} text (normaliser {lang[1]}), these shards are {norm[0]} "
            f"(normaliser {norm[1]}): shared units keep their rows, whatever the language")


NETWORK_OPTIONS = ("model", "preset")  # TrainConfig fields that pick the network (model_options: its sizes)


def check_network(options: dict, parent_model: dict, path: str | Path) -> None:
    """ValueError naming every option given (not None) that would change the parent's network.
    `options`: the TrainConfig as a dict, before `resolved` fills in its defaults."""
    given = {"model": parent_model["kind"], "preset": parent_model["preset"]}
    differ = [f"--{k} {options[k]}" for k in NETWORK_OPTIONS if options.get(k) is not None and options[k] != given[k]]
    parent_opts = parent_model["options"]
    for k, v in sorted((options.get("model_options") or {}).items()):
        if k == "ctc_weight":  # las: the training weight (--ctc-weight), not a size; the head follows it
            continue
        if parent_opts.get(k) != v:
            differ.append(f"--{k.replace('_', '-')} {v}")
    if differ:
        raise ValueError(f"--init-from {path}: the network is the parent's ({parent_model['kind']}/"
                         f"{parent_model['preset']}); leave out {', '.join(differ)}, or train from scratch")


def child_model_config(parent_model: dict, vocab_size: int, ctc_weight: float) -> dict:
    """The parent's model config with the child's output size (and, for LAS and the transducer,
    the CTC head its --ctc-weight asks for, as a new run's config records it)."""
    options = dict(parent_model["options"])
    if parent_model["kind"] in ("las", "rnnt"):
        options["ctc_weight"] = ctc_weight
    return {**parent_model, "vocab_size": vocab_size, "options": options}


def shared_units(parent: Tokenizer, child: Tokenizer) -> list[tuple[int, int]]:
    """(child id, parent id) of every unit string both tokenizers have."""
    parent_ids = {u: i for i, u in enumerate(parent.units)}
    return [(i, parent_ids[u]) for i, u in enumerate(child.units) if u in parent_ids]


def copy_rows(fresh: torch.Tensor, trained: torch.Tensor, pairs: list[tuple[int, int]], blocks: int) -> torch.Tensor:
    """`fresh` [blocks * Vc, ...] with the rows of the shared units from `trained` [blocks * Vp, ...]."""
    out = fresh.clone()
    vc, vp = fresh.shape[0] // blocks, trained.shape[0] // blocks
    child = torch.tensor([u * vc + c for u in range(blocks) for c, _ in pairs], dtype=torch.long)
    parent = torch.tensor([u * vp + p for u in range(blocks) for _, p in pairs], dtype=torch.long)
    if len(pairs):
        out[child] = trained[parent].to(out.dtype)
    return out


def init_weights(model: nn.Module, parent: Checkpoint, tokenizer: Tokenizer, path: str | Path) -> dict:
    """Load the parent's weights into `model` (freshly built for `tokenizer`'s units): see the
    module docstring. CheckpointError if a tensor of the network (not a unit tensor) is missing
    from the parent or has another shape. Returns the report summary.json keeps."""
    parent_tok = tokenizer_from_state(parent.card.tokenizer)
    pairs = shared_units(parent_tok, tokenizer)
    rows = model.unit_tensors()
    weights, state = parent.weights, model.state_dict()
    loaded, problems = {}, []
    for name, fresh in state.items():
        if name.endswith("_extra_state"):
            continue  # LAS: its CTC weight and unit strings are this run's (configure_training)
        if name in rows:
            if name in weights:  # absent: a LAS CTC head the parent had none of starts fresh
                loaded[name] = copy_rows(fresh, weights[name], pairs, rows[name])
        elif name in weights and tuple(weights[name].shape) == tuple(fresh.shape):
            loaded[name] = weights[name].to(fresh.dtype)
        else:
            problems.append(name)
    if problems:
        raise checkpoint.CheckpointError(f"--init-from {path}: {len(problems)} tensor(s) of the network are not in "
                                         f"the parent or have another shape there ({', '.join(problems[:3])})")
    model.load_state_dict({**state, **loaded})
    return {"checkpoint": str(path), "rows_kept": len(pairs), "rows_new": len(tokenizer) - len(pairs),
            "rows_total": len(tokenizer), "parent_units": len(parent_tok), "parent_kind": parent_tok.kind,
            "parent_lang": parent.card.lang, "units": tokenizer.kind}


def describe(report: dict) -> str:
    return (f"init from {report['checkpoint']}: {report['rows_kept']} of {report['rows_total']} output rows kept "
            f"(shared units), {report['rows_new']} new")


def log_lines(parent: Checkpoint | None, report: dict | None, dataset: dict, frozen_until: int) -> list[str]:
    """What the run's log says of its start: the rows kept, a normaliser note, the freeze."""
    lines = [describe(report)] if parent is not None else []
    note = normaliser_note(parent, dataset) if parent is not None else None
    lines += [note] if note else []
    if frozen_until:
        lines.append(f"encoder frozen until step {frozen_until}: only the layers outside it train")
    return lines


# --------------------------------------------------------------------------------------
# --freeze-encoder-steps
# --------------------------------------------------------------------------------------
def set_encoder_trainable(model: nn.Module, trainable: bool) -> None:
    """Frozen: the encoder's parameters take no gradient, so AdamW skips them (no update, no
    weight decay: it only touches parameters with a gradient) and backward stops at its output."""
    for p in model.encoder.parameters():
        p.requires_grad_(trainable)
