"""Evaluation: a checkpoint on one split of a shards folder -> CER / WER and per-utterance results.

    asr-cli eval --checkpoint runs/fr-ctc/best.pt --shards shards/fr --split test
    asr-cli eval ... --beam 50                                   CTC beam search, no LM
    asr-cli eval ... --lm lm/fr-3gram.arpa --lm-weight 1.0 --word-score 1.0
    torchrun --nproc-per-node 4 cli.py eval ...                  each rank decodes its part

Decoding (`DecodeOptions` -> `Decoder`, shared with asr/transcribe.py), by `model.kind`:

    mode        ctc                                          las (attention)
    greedy      log_probs -> asr.decode.greedy_ctc           model.greedy
    beamN       CTCBeamDecoder, lexicon-free                 model.beam_search (joint CTC/attention,
    beamN-lm    CTCBeamDecoder with the word LM (ARPA)        --ctc-weight; LM by shallow fusion)

`--lm` without `--beam` searches with `DEFAULT_BEAM` (CTC) or the attention model's own
default. The LM terms are flashlight's (and asr/las.py's): `lm_weight * log10 P_lm(word) +
word_score per word`, added to the acoustic natural-log scores.

Choosing lm_weight and word_score: tune them on dev, never on test. A small grid is enough,
e.g. lm_weight in {0.5, 1, 1.5, 2, 3} x word_score in {-1, 0, 1, 2, 3}:

    for a in 0.5 1 1.5 2 3; do for b in -1 0 1 2 3; do
      asr-cli eval --checkpoint X.pt --shards S --split dev --lm L --lm-weight $a --word-score $b \\
        --out runs/X/tune/a$a-b$b --no-progress; done; done
    # then pick the lowest "wer" of runs/X/tune/*/summary.json and run test once with it

The defaults (DEFAULT_LM_WEIGHT = 1.0, DEFAULT_WORD_SCORE = 1.0) come from that grid on two
synthetic corpora (tests/test_evaluate.py's `make_lm_corpus`, seeds 8 and 9; half-trained
CTC model, 3-gram LM of the train text): WER stayed within ~4 points of the best along the
ridge word_score ~ lm_weight - 0.5 (0.5/0, 1/0-1, 1.5/1-2, 2/2-3) and rose off it (a word
score too large for the LM weight inserts short words, too small deletes words); 1.0 / 1.0
sits on the ridge with deletions and insertions closest to balanced. On the held-out seed 7
it gave WER 0.49 against greedy 0.80. A better acoustic model or a bigger LM moves
the optimum: tune on your dev set.

Text: the references are the shards' normalised `text`; every hypothesis goes through the
dataset's normaliser (`pipeline.text.get_normalizer(lang)`) too, so both sides are spelt
alike (a hypothesis the normaliser would reject for a character it cannot map is only
whitespace-tidied). CER and WER are jiwer's (`process_characters`, `process_words`; CER
counts the spaces between words as characters): corpus-level errors / reference length.

Output folder (default `<checkpoint folder>/eval-<split>-<mode>/`, `--out` to change it):

    utterances.jsonl  one JSON object per utterance, sorted by id: id, duration (s),
                      reference, hypothesis, cer, wer, ref_words, word_sub, word_del,
                      word_ins, ref_chars, char_sub, char_del, char_ins
    summary.json      checkpoint, model, step, shards, split, mode, beam, lm, lm_weight,
                      word_score, ctc_weight, utterances, hours, cer, wer, words / chars
                      {reference, substitutions, deletions, insertions}, decode_seconds,
                      wall_seconds, rtf, device, ranks, normalizer

Summing the per-utterance counts gives the summary's: wer = sum(word_sub + word_del +
word_ins) / sum(ref_words), and likewise for characters.

Timing: `decode_seconds` is the time spent in the model and the search (data loading not
included), summed over ranks; `rtf` (real-time factor) = decode_seconds / audio seconds;
`wall_seconds` is rank 0's time for the whole pass.

Exactly once: the eval stream is one ordered pass split over ranks and loader workers; the
results of every rank are gathered (`all_gather_object`) and their ids must equal the
split's ids in index.parquet, each once, or the evaluation fails (`CoverageError`) rather
than report a number over the wrong utterances. Rank 0 writes the files.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from asr import checkpoint as ckpt_io
from asr.decode import DEFAULT_BEAM as CTC_DEFAULT_BEAM
from asr.decode import CTCBeamDecoder, greedy_ctc
from pipeline.shardformat import INDEX, read_index

DEFAULT_LM_WEIGHT = 1.0  # weight of the LM's log10 probability (see the module docstring)
DEFAULT_WORD_SCORE = 1.0  # added per word in LM decoding
NO_FRAME_LIMIT = 10**9  # the eval stream must not skip long utterances
DEFAULT_BATCH_FRAMES = 20000
DEFAULT_MAX_BATCH = 256
UTTERANCES_FILE = "utterances.jsonl"
SUMMARY_FILE = "summary.json"
MODEL_KINDS = ("ctc", "las")


class CoverageError(RuntimeError):
    """The decoded utterances are not exactly the split's utterances, each once."""


# --------------------------------------------------------------------------------------
# what to decode with: the model, its text side, its features
# --------------------------------------------------------------------------------------
@dataclass
class Loaded:
    """A checkpoint ready to decode: model (eval mode, on `device`) and what goes with it."""

    model: torch.nn.Module
    tokenizer: object
    ckpt: dict
    features: dict  # the FeatureConfig as a dict
    mean: np.ndarray  # [F] CMVN of the training data
    std: np.ndarray  # [F]
    lang: str
    device: torch.device

    @property
    def kind(self) -> str:
        return getattr(self.model, "kind", "?")

    def normalise(self, feats: np.ndarray) -> np.ndarray:
        """[T, F] stored features (float16) -> float32 with the checkpoint's CMVN applied."""
        return (feats.astype(np.float32) - self.mean) / self.std


def load_for_decoding(path: Path, device: torch.device) -> Loaded:
    """Load a checkpoint to decode with. Raises checkpoint.CheckpointError when `path` is not one."""
    model, tokenizer, ckpt = ckpt_io.load_model(Path(path), device)
    missing = [k for k in ("features", "cmvn", "lang") if k not in ckpt]
    if missing:
        raise ckpt_io.CheckpointError(f"{path} lacks {', '.join(missing)}: not a checkpoint written by "
                                      "`asr-cli train`")
    cmvn = ckpt["cmvn"]
    if cmvn.get("mean") is None:
        raise ckpt_io.CheckpointError(f"{path} holds no CMVN statistics")
    return Loaded(model, tokenizer, ckpt, ckpt["features"], np.asarray(cmvn["mean"], np.float32),
                  np.asarray(cmvn["std"], np.float32), ckpt["lang"], device)


# --------------------------------------------------------------------------------------
# decoding modes, one place for eval and transcribe
# --------------------------------------------------------------------------------------
@dataclass
class DecodeOptions:
    """How to decode. beam None: greedy, unless an LM (or, for las, a CTC weight) asks for a search."""

    beam: int | None = None
    lm: Path | None = None  # word n-gram LM, ARPA file (e.g. `asr-cli lm build`)
    lm_weight: float = DEFAULT_LM_WEIGHT
    word_score: float = DEFAULT_WORD_SCORE
    ctc_weight: float | None = None  # las only: joint CTC/attention weight; None = the training weight

    def check(self, kind: str) -> None:
        if self.beam is not None and self.beam < 1:
            raise ValueError(f"--beam must be at least 1, got {self.beam}")
        if self.lm is not None and not Path(self.lm).is_file():
            raise FileNotFoundError(f"language model {self.lm} not found (build one with `asr-cli lm build`)")
        if self.ctc_weight is not None:
            if kind != "las":
                raise ValueError("--ctc-weight applies to attention models (las) only; this is a "
                                 f"{kind} model")
            if not 0.0 <= self.ctc_weight <= 1.0:
                raise ValueError(f"--ctc-weight must be in [0, 1], got {self.ctc_weight}")

    def searches(self) -> bool:
        return self.beam is not None or self.lm is not None or self.ctc_weight is not None


def _las_default_beam() -> int:
    from asr.las import DEFAULT_BEAM

    return DEFAULT_BEAM


class Decoder:
    """A model's decoding in one mode.

    `decoder(feats [B, T, F] (CMVN applied, on the model's device), lengths [B])` -> B
    hypotheses, normalised with `normalizer` when one is given.
    """

    def __init__(self, model, tokenizer, options: DecodeOptions, normalizer=None):
        self.kind = getattr(model, "kind", None)
        if self.kind not in MODEL_KINDS:
            raise ValueError(f"cannot decode a model of kind {self.kind!r} (known: {', '.join(MODEL_KINDS)})")
        options.check(self.kind)
        self.model, self.tokenizer, self.options, self.normalizer = model, tokenizer, options, normalizer
        self.beam = None
        if options.searches():
            self.beam = options.beam or (CTC_DEFAULT_BEAM if self.kind == "ctc" else _las_default_beam())
        self._ctc_beam = None
        if self.kind == "ctc" and self.beam is not None:
            self._ctc_beam = CTCBeamDecoder(tokenizer, beam=self.beam, lm=options.lm,
                                            lm_weight=options.lm_weight, word_score=options.word_score)

    @property
    def mode(self) -> str:
        if self.beam is None:
            return "greedy"
        return f"beam{self.beam}" + ("-lm" if self.options.lm is not None else "")

    def describe(self) -> dict:
        """The decoding settings, as the summary records them."""
        o = self.options
        uses_lm = o.lm is not None
        ctc_weight = None
        if self.kind == "las" and self.beam is not None:
            ctc_weight = o.ctc_weight if o.ctc_weight is not None else getattr(self.model, "ctc_weight", None)
        return {"mode": self.mode, "beam": self.beam, "lm": str(o.lm) if uses_lm else None,
                "lm_weight": o.lm_weight if uses_lm else None,
                "word_score": o.word_score if uses_lm else None, "ctc_weight": ctc_weight}

    @torch.no_grad()
    def __call__(self, feats: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        if self.kind == "ctc":
            log_probs, out_lens = self.model.log_probs(feats, lengths)  # [B, T', V], [B]
            if self._ctc_beam is not None:
                texts = self._ctc_beam.decode(log_probs, out_lens)
            else:
                texts = greedy_ctc(log_probs, out_lens, self.tokenizer)
        else:
            if self.beam is None:
                ids = self.model.greedy(feats, lengths)
            else:
                o = self.options  # the word score goes with the LM (no LM: no word bonus)
                ids = self.model.beam_search(feats, lengths, beam=self.beam, ctc_weight=o.ctc_weight,
                                             lm_path=o.lm, lm_weight=o.lm_weight,
                                             word_bonus=o.word_score if o.lm is not None else 0.0)
            texts = [self.tokenizer.decode(i) for i in ids]
        return [normalize_hypothesis(t, self.normalizer) for t in texts]


def normalize_hypothesis(text: str, normalizer=None) -> str:
    """The dataset's normaliser on a hypothesis: "" when nothing is left; a hypothesis it
    would reject (a character it cannot map) is only whitespace-tidied."""
    tidy = " ".join(text.split())
    if normalizer is None:
        return tidy
    out, reason = normalizer.analyse(tidy)
    if reason is None:
        return out
    return "" if reason == "empty_text" else tidy


# --------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------
def error_counts(refs: list[str], hyps: list[str]) -> dict:
    """jiwer's word and character alignments of the pairs -> rates and S / D / I counts."""
    import jiwer

    w = jiwer.process_words(refs, hyps)
    c = jiwer.process_characters(refs, hyps)
    return {
        "wer": w.wer, "cer": c.cer,
        "ref_words": w.hits + w.substitutions + w.deletions,
        "word_sub": w.substitutions, "word_del": w.deletions, "word_ins": w.insertions,
        "ref_chars": c.hits + c.substitutions + c.deletions,
        "char_sub": c.substitutions, "char_del": c.deletions, "char_ins": c.insertions,
    }


def utterance_record(uid: str, duration: float, reference: str, hypothesis: str) -> dict:
    """One line of utterances.jsonl."""
    return {"id": uid, "duration": duration, "reference": reference, "hypothesis": hypothesis,
            **error_counts([reference], [hypothesis])}


def check_coverage(got: list[str], expected: list[str], split: str) -> None:
    """Raise CoverageError unless `got` holds every id of `expected` exactly once."""
    counts = Counter(got)
    duplicates = sorted(i for i, n in counts.items() if n > 1)
    missing = sorted(set(expected) - set(counts))
    extra = sorted(set(counts) - set(expected))
    if duplicates or missing or extra:
        parts = [f"{len(v)} {name} (e.g. {', '.join(v[:3])})"
                 for name, v in (("duplicated", duplicates), ("missing", missing), ("not in the split", extra)) if v]
        raise CoverageError(f"the evaluation of split {split!r} did not decode each of its {len(set(expected))} "
                            f"utterances exactly once: {'; '.join(parts)}. The shards and {INDEX} "
                            "disagree (run `asr-cli shards verify`) or the stream split is broken.")


# --------------------------------------------------------------------------------------
# the evaluation
# --------------------------------------------------------------------------------------
@dataclass
class EvalConfig:
    checkpoint: Path
    shards: Path
    split: str = "test"
    decode: DecodeOptions = field(default_factory=DecodeOptions)
    out: Path | None = None  # default: <checkpoint folder>/eval-<split>-<mode>
    device: str = "auto"
    batch_frames: int = DEFAULT_BATCH_FRAMES
    max_batch: int = DEFAULT_MAX_BATCH
    workers: int = 1  # DataLoader workers reading the tars
    shard_url: str | None = None  # where tars are read from, if not the shards folder
    threads: int = 0  # torch CPU threads per process, 0: cores / local processes
    progress: bool = True


def default_out(checkpoint: Path, split: str, mode: str) -> Path:
    return Path(checkpoint).parent / f"eval-{split}-{mode}"


def split_durations(shards_root: Path, split: str) -> dict[str, float]:
    """id -> duration (s) of every utterance of `split`, from index.parquet."""
    return {r["id"]: float(r["duration"]) for r in read_index(shards_root, columns=["id", "duration"], split=split)}


def evaluate(cfg: EvalConfig) -> dict:
    """Decode `cfg.split` once, score it, and (rank 0) write the files; returns the summary."""
    from asr.train import run_distributed

    return run_distributed(_evaluate, cfg)


def _evaluate(cfg: EvalConfig, d) -> dict:
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    from asr.data import LoaderConfig, ShardSet, ShardStream
    from asr.train import pick_device
    from pipeline.audio import FeatureConfig
    from pipeline.text import get_normalizer

    device = pick_device(cfg.device, d)
    if device.type == "cpu":
        torch.set_num_threads(cfg.threads or max(1, len(os.sched_getaffinity(0)) // d.local_world))
    shards = ShardSet.open(cfg.shards, cfg.shard_url)
    shards.split(cfg.split)  # a clear error for an unknown split
    loaded = load_for_decoding(cfg.checkpoint, device)
    if FeatureConfig.from_dict(loaded.features) != FeatureConfig.from_dict(shards.dataset["features"]):
        raise ValueError(f"the features of {cfg.shards} ({shards.dataset['features']}) are not those the model "
                         f"was trained on ({loaded.features}): rebuild the shards with the checkpoint's "
                         "feature config")
    lang = shards.dataset["lang"]
    normalizer = get_normalizer(lang)
    trained_with = (loaded.ckpt.get("normalizer") or {}).get("version")
    if trained_with and trained_with != normalizer.version:
        warnings.warn(f"the model was trained on text normalised by {trained_with}, the hypotheses are "
                      f"normalised by {normalizer.version}", stacklevel=2)
    decoder = Decoder(loaded.model, loaded.tokenizer, cfg.decode, normalizer)
    durations = split_durations(shards.root, cfg.split)

    lcfg = LoaderConfig(batch_frames=cfg.batch_frames, max_batch=cfg.max_batch, max_frames=NO_FRAME_LIMIT,
                        workers=cfg.workers)
    stream = ShardStream(shards.urls(cfg.split), loaded.tokenizer, (loaded.mean, loaded.std), lcfg,
                         train=False, rank=d.rank, world=d.world)
    loader = DataLoader(stream, batch_size=None, num_workers=cfg.workers,
                        prefetch_factor=lcfg.prefetch if cfg.workers > 0 else None,
                        pin_memory=device.type == "cuda")

    bar = tqdm(total=len(durations) if not d.active else None, unit="utt", dynamic_ncols=True,
               disable=not (cfg.progress and d.main), desc=f"eval {cfg.split} {decoder.mode}")
    pairs: list[tuple[str, str, str]] = []  # (id, reference, hypothesis)
    decode_seconds, started = 0.0, time.time()
    for batch in loader:
        t0 = time.perf_counter()
        hyps = decoder(batch.feats.to(device, non_blocking=True), batch.feat_lens.to(device))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        decode_seconds += time.perf_counter() - t0
        pairs += zip(batch.ids, batch.texts, hyps)
        bar.update(len(batch))
    bar.close()
    wall_seconds = time.time() - started

    if d.active:
        import torch.distributed as dist

        gathered = [None] * d.world
        dist.all_gather_object(gathered, {"pairs": pairs, "decode_seconds": decode_seconds})
        pairs = [p for g in gathered for p in g["pairs"]]
        decode_seconds = sum(g["decode_seconds"] for g in gathered)
    check_coverage([p[0] for p in pairs], list(durations), cfg.split)

    pairs.sort()
    records = [utterance_record(uid, durations[uid], ref, hyp) for uid, ref, hyp in pairs]
    totals = error_counts([p[1] for p in pairs], [p[2] for p in pairs])
    audio_seconds = sum(durations.values())
    out = Path(cfg.out) if cfg.out is not None else default_out(cfg.checkpoint, cfg.split, decoder.mode)
    summary = {
        "checkpoint": str(cfg.checkpoint), "model": loaded.kind,
        "step": (loaded.ckpt.get("position") or {}).get("step"),
        "shards": str(cfg.shards), "split": cfg.split, **decoder.describe(),
        "utterances": len(records), "hours": round(audio_seconds / 3600, 4),
        "cer": totals["cer"], "wer": totals["wer"],
        "words": {"reference": totals["ref_words"], "substitutions": totals["word_sub"],
                  "deletions": totals["word_del"], "insertions": totals["word_ins"]},
        "chars": {"reference": totals["ref_chars"], "substitutions": totals["char_sub"],
                  "deletions": totals["char_del"], "insertions": totals["char_ins"]},
        "decode_seconds": round(decode_seconds, 4), "wall_seconds": round(wall_seconds, 3),
        "rtf": decode_seconds / audio_seconds if audio_seconds > 0 else math.nan,
        "device": str(device), "ranks": d.world, "normalizer": normalizer.version,
        "out": str(out),
    }
    if d.main:
        write_results(out, records, summary)
    return summary


def write_results(out: Path, records: list[dict], summary: dict) -> None:
    """utterances.jsonl and summary.json in `out` (each written to a temporary name, then renamed)."""
    out.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    for name, text in ((UTTERANCES_FILE, lines), (SUMMARY_FILE, json.dumps(summary, indent=1, ensure_ascii=False)
                                                   + "\n")):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out / name)


def format_summary(s: dict) -> str:
    """The summary as a small readable table."""
    decoding = s["mode"]
    if s.get("lm"):
        decoding += f" (lm {s['lm']}, lm_weight {s['lm_weight']:g}, word_score {s['word_score']:g})"
    if s.get("ctc_weight") is not None:
        decoding += f", ctc_weight {s['ctc_weight']:g}"
    step = f", step {s['step']}" if s.get("step") is not None else ""
    lines = [
        f"checkpoint  {s['checkpoint']} ({s['model']}{step})",
        f"split       {s['split']} of {s['shards']}: {s['utterances']} utterances, {s['hours'] * 60:.1f} min",
        f"decoding    {decoding}",
        "",
        f"{'':6}{'rate':>8}  {'errors':>8}  {'sub':>7}  {'del':>7}  {'ins':>7}  {'reference':>9}",
    ]
    for name, key, unit in (("CER", "cer", "chars"), ("WER", "wer", "words")):
        c = s[unit]
        errors = c["substitutions"] + c["deletions"] + c["insertions"]
        lines.append(f"{name:6}{100 * s[key]:7.2f}%  {errors:8d}  {c['substitutions']:7d}  {c['deletions']:7d}  "
                     f"{c['insertions']:7d}  {c['reference']:9d}")
    lines += ["", f"speed       RTF {s['rtf']:.4f} (decoding {s['decode_seconds']:.1f} s for "
                  f"{s['hours'] * 3600:.0f} s of audio on {s['device']}"
                  + (f" x {s['ranks']} ranks" if s["ranks"] > 1 else "") + f"; wall {s['wall_seconds']:.1f} s)",
              f"results     {s['out']}/{UTTERANCES_FILE}, {s['out']}/{SUMMARY_FILE}"]
    return "\n".join(lines)
