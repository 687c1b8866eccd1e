"""Evaluation: a checkpoint on one split of a shards folder -> CER / WER and per-utterance results.

    asr-cli eval --checkpoint runs/fr-ctc/best.pt --shards shards/fr --split test
    asr-cli eval ... --beam 50                                   CTC beam search, no LM
    asr-cli eval ... --lm lm/fr-3gram.arpa --lm-weight 1.0 --word-score 1.0
    torchrun --nproc-per-node 4 cli.py eval ...                  each rank decodes its part

Decoding is asr/decoding/decoder.py's (`DecodeOptions` -> `Decoder`, shared with asr/inference/transcribe.py):
greedy, or beam search with or without a word LM, for CTC and attention models; how to tune
`--lm-weight` and `--word-score` on dev, and where their defaults come from, is there too.

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
than report a number over the wrong utterances. Rank 0 writes the files, and holds the output
folder's lock (`pipeline.lock`) from before the pass to the end: a second eval into the same
folder stops at once. A failed write (a full disk) leaves the previous results as they were.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
import warnings
from collections import Counter
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from asr.data.loader import LoaderConfig, ShardStream
from asr.decoding.decoder import Decoder
from asr.inference.loading import open_model
from asr.inference.options import EvalConfig  # noqa: F401  (every eval default: a module without torch)
from asr.inference.streaming import mask_chunks
from asr.runtime.distributed import any_rank, cpu_threads, pick_device, run_distributed
from pipeline.atomic import write_json, write_text
from pipeline.audio import FeatureConfig
from pipeline.lock import lock_folder
from pipeline.shardformat import INDEX, ShardSet, read_index
from pipeline.text import get_normalizer

NO_FRAME_LIMIT = 10**9  # the eval stream must not skip long utterances
UTTERANCES_FILE = "utterances.jsonl"
SUMMARY_FILE = "summary.json"


class CoverageError(RuntimeError):
    """The decoded utterances are not exactly the split's utterances, each once."""


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
def default_out(checkpoint: Path, split: str, mode: str) -> Path:
    return Path(checkpoint).parent / f"eval-{split}-{mode}"


def split_durations(shards_root: Path, split: str) -> dict[str, float]:
    """id -> duration (s) of every utterance of `split`, from index.parquet."""
    return {r["id"]: float(r["duration"]) for r in read_index(shards_root, columns=["id", "duration"], split=split)}


def evaluate(cfg: EvalConfig) -> dict:
    """Decode `cfg.split` once, score it, and (rank 0) write the files; returns the summary."""
    return run_distributed(_evaluate, cfg)


def _evaluate(cfg: EvalConfig, d) -> dict:
    with contextlib.ExitStack() as held:  # the output folder's lock, once its name is known
        return _evaluate_held(cfg, d, held)


def _evaluate_held(cfg: EvalConfig, d, held: contextlib.ExitStack) -> dict:
    device = pick_device(cfg.device, d)
    if device.type == "cpu":
        torch.set_num_threads(cfg.threads or cpu_threads(d))
    shards = ShardSet.open(cfg.shards, cfg.shard_url)
    shards.split(cfg.split)  # a clear error for an unknown split
    loaded = open_model(cfg.checkpoint, device)
    model, tokenizer = loaded.model, loaded.tokenizer
    if loaded.features != FeatureConfig.from_dict(shards.dataset["features"]):
        raise ValueError(f"the features of {cfg.shards} ({shards.dataset['features']}) are not those the model "
                         f"was trained on ({loaded.card.features}): rebuild the shards with the checkpoint's "
                         "feature config")
    lang = shards.dataset["lang"]
    normalizer = get_normalizer(lang)
    trained_with = (loaded.card.normalizer or {}).get("version")
    if trained_with and trained_with != normalizer.version:
        warnings.warn(f"the model was trained on text normalised by {trained_with}, the hypotheses are "
                      f"normalised by {normalizer.version}", stacklevel=2)
    decoder = Decoder(model, tokenizer, cfg.decode, normalizer)
    mask_chunks(model, cfg.chunk_ms, loaded.features.hop_ms)  # streaming's outputs, whole
    durations = split_durations(shards.root, cfg.split)
    mode = decoder.mode + (f"-chunk{cfg.chunk_ms:g}" if cfg.chunk_ms else "")
    out = Path(cfg.out) if cfg.out is not None else default_out(cfg.checkpoint, cfg.split, mode)
    held.enter_context(lock_folder(out, "eval", d.main, lambda failed: any_rank(failed, d, device)))

    lcfg = LoaderConfig(batch_frames=cfg.batch_frames, max_batch=cfg.max_batch, max_frames=NO_FRAME_LIMIT,
                        workers=cfg.workers)
    stream = ShardStream(shards.urls(cfg.split), tokenizer, (loaded.mean, loaded.std), lcfg,
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
    summary = {
        "checkpoint": str(cfg.checkpoint), "model": decoder.kind,
        "step": loaded.step,
        "shards": str(cfg.shards), "split": cfg.split, **decoder.describe(), "chunk_ms": cfg.chunk_ms,
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
    write_text(out / UTTERANCES_FILE, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    write_json(out / SUMMARY_FILE, summary)


def format_summary(s: dict) -> str:
    """The summary as a small readable table."""
    decoding = s["mode"] + (f", streamed in chunks of {s['chunk_ms']:g} ms" if s.get("chunk_ms") else "")
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
