"""Word n-gram language model for CTC beam search: interpolated modified Kneser-Ney, ARPA out.

The estimate follows Chen & Goodman (1998) the way KenLM's `lmplz` computes it, so a model
built here and one built by `lmplz -o N --discount_fallback` on the same text agree up to
float rounding:

* Every sentence is `<s> w1 ... wk </s>`; `</s>` is a word like the others, `<s>` is only a
  context (it is never predicted: log10 probability -99, as lmplz writes it, plus a backoff).
* Adjusted counts a(g): the raw count for the highest order and for n-grams that start with
  `<s>` (nothing can precede them); otherwise the continuation count, the number of distinct
  words v such that `v g` occurs.
* Discounts per order from the counts-of-counts t_k of the adjusted counts (k = 1..4):
  Y = t1 / (t1 + 2 t2),  D_k = k - (k + 1) Y t_{k+1} / t_k  for k = 1, 2, 3 (3 means 3+).
  When a t_k (k <= 3) is zero or a D_k falls outside (0, k] - usual on small corpora - the
  whole order uses the fallback discounts (lmplz --discount_fallback, default 0.5 1 1.5).
* For a context h:  u(w|h) = (a(hw) - D(a(hw))) / sum_x a(hx),
  gamma(h) = (D1 N1(h.) + D2 N2(h.) + D3 N3+(h.)) / sum_x a(hx), and
  p(w|h) = u(w|h) + gamma(h) p(w|h') with h' = h without its first word. The unigram level
  interpolates with the uniform distribution over the vocabulary (every word, `</s>` and
  `<unk>`, not `<s>`), which is where `<unk>` gets its mass.
* The ARPA file holds log10 p(w|h) for every n-gram seen in the text and log10 gamma(h) as
  the backoff of every n-gram that is a context; nothing is pruned.

Use (`asr-cli lm build` calls `build_lm_from_shards`):

    build_lm_from_shards(Path("shards/fr"), order=3, out=Path("lm/fr.arpa"))

It reads the train sentences of `shards/fr/index.parquet` only (never dev or test: an LM
that has seen the test sentences makes WER meaningless), each distinct sentence once.

A bigger text corpus: `extra_text=Path("corpus.txt")` (CLI `--extra-text`), UTF-8, one
sentence per line, raw text. Each line goes through the dataset's own normaliser (the one
named in `dataset.json`), so the LM spells words the way the acoustic model writes them;
lines the normaliser rejects are skipped, and so are lines equal to a dev or test sentence
(Common Voice's sentence collections, e.g. `validated_sentences.tsv`, contain them).
Everything here is held in memory (Python dicts, about 350 bytes per n-gram: 2.6M n-grams
from 200k sentences took 0.9 GB and 25 s on one core): fine for Common Voice's own text and
a few million extra sentences; beyond that use KenLM.

KenLM instead, if you have it (https://github.com/kpu/kenlm, `lmplz` and `build_binary`):
`write_lm_text` writes the very sentences `build_lm_from_shards` would use (train only,
extra text normalised and filtered), and lmplz estimates the same model from them, on disk
rather than in memory, with pruning if wanted (e.g. `--prune 0 1 1`):

    python -c "from asr.decoding.lm import write_lm_text; write_lm_text('shards/fr', 'lm/fr.txt')"
    lmplz -o 3 --discount_fallback < lm/fr.txt > lm/fr.arpa
    build_binary lm/fr.arpa lm/fr.bin     # optional: loads at once, smaller

The beam decoder (`asr.decoding.ctc.CTCBeamDecoder`) reads either file. For a KenLM binary it
needs the word list too (`lexicon=`: one word per line, or `write_lexicon`'s output for the
ARPA it was built from), since the lexicon is read from an ARPA file's unigrams.

The decoder's lexicon (`write_lexicon`): one line per LM word, the word then its characters
separated by spaces and the word-boundary token `|` (the tokenizer's space), e.g.
`chat\tc h a t |`; words holding a character the acoustic model cannot emit are left out.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator
from itertools import chain
from pathlib import Path

from asr.decoding.arpa import (BOS, EOS, MAX_ORDER, MAX_WORD_CHARS, SPECIAL_WORDS, UNK,  # noqa: F401  (re-exported)
                                WORD_BOUNDARY, LMFileError, check_arpa, kenlm_error, lm_words, read_arpa_unigrams,
                                spellable_words, write_lexicon, write_lexicon_from_words)
from pipeline.atomic import atomic_open
from pipeline.shardformat import index_path, read_dataset, read_index

BOS_LOG10_PROB = -99.0  # what lmplz writes for <s>: a context, never a prediction
DEFAULT_DISCOUNT_FALLBACK = (0.5, 1.0, 1.5)  # D1, D2, D3+ (lmplz --discount_fallback)
TRAIN_SPLIT = "train"
HELDOUT_SPLITS = ("dev", "test")
LOG10_FORMAT = "{:.7f}"


# --------------------------------------------------------------------------------------
# Estimation
# --------------------------------------------------------------------------------------
def count_ngrams(sentences: Iterable[str], order: int) -> tuple[list[Counter], int]:
    """Raw counts of every n-gram (n = 1..order) in `<s> w1 ... wk </s>` per sentence.

    Returns `(counts, n_sentences)`, `counts[n - 1]` mapping n-tuples of words to counts.
    Empty sentences are skipped; literal `<s>`, `</s>`, `<unk>` tokens in the text are dropped.
    """
    counts = [Counter() for _ in range(order)]
    n_sentences = 0
    for sentence in sentences:
        words = [w for w in sentence.split() if w not in SPECIAL_WORDS]
        if not words:
            continue
        n_sentences += 1
        tokens = [BOS, *words, EOS]
        for n in range(1, order + 1):
            counts[n - 1].update(zip(*(tokens[i:] for i in range(n))))
    return counts, n_sentences


def adjust_counts(raw: list[Counter]) -> list[dict[tuple, int]]:
    """Kneser-Ney adjusted counts per order (see the module docstring), in place.

    `raw` (from `count_ngrams`) is turned into the adjusted counts and returned; the
    unigram level drops `<s>` (never predicted) and holds `<unk>` with count 0.
    """
    for n in range(len(raw) - 1, 0, -1):  # order n from the n-grams of order n + 1
        left_contexts = Counter(gram[1:] for gram in raw[n])
        level = raw[n - 1]
        for gram in level:
            if gram[0] != BOS:  # <s> n-grams keep their raw count: nothing precedes them
                level[gram] = left_contexts[gram]
        del left_contexts
    raw[0].pop((BOS,), None)
    raw[0].setdefault((UNK,), 0)
    return raw


def counts_of_counts(adjusted_counts: Iterable[int]) -> list[int]:
    """[t1, t2, t3, t4]: how many n-grams have adjusted count 1, 2, 3, 4."""
    t = [0] * 5
    for count in adjusted_counts:
        if 1 <= count <= 4:
            t[count] += 1
    return t[1:]


def discounts_from_counts(t: list[int], fallback=DEFAULT_DISCOUNT_FALLBACK) -> tuple[tuple, bool]:
    """Chen & Goodman's D1, D2, D3+ from counts-of-counts `t = [t1, t2, t3, t4]`.

    Returns `(discounts, used_fallback)`: the fallback when a t_k (k <= 3) is zero or a
    discount falls outside (0, k].
    """
    t1, t2, t3, t4 = t
    if t1 and t2 and t3:
        y = t1 / (t1 + 2 * t2)
        d = (1 - 2 * y * t2 / t1, 2 - 3 * y * t3 / t2, 3 - 4 * y * t4 / t3)
        if all(0 < d_k <= k for k, d_k in enumerate(d, start=1)):
            return d, False
    return tuple(float(x) for x in fallback), True


def _discount(count: int, d: tuple) -> float:
    return 0.0 if count == 0 else d[min(count, 3) - 1]


def context_stats(level: dict[tuple, int], d: tuple) -> dict[tuple, tuple[int, float]]:
    """For each context h of one order: (sum_x a(hx), gamma(h))."""
    sums: dict[tuple, list] = {}
    for gram, count in level.items():
        acc = sums.setdefault(gram[:-1], [0, 0.0])
        acc[0] += count
        acc[1] += _discount(count, d)
    return {h: (total, discounted / total) for h, (total, discounted) in sums.items()}


def level_probabilities(level: dict[tuple, int], d: tuple, contexts: dict,
                        lower: dict[tuple, float] | None) -> dict[tuple, float]:
    """Interpolated p(w|h) for every n-gram of one order (linear, not log).

    `contexts` is `context_stats(level, d)`; `lower` the probabilities of the order below
    (None for unigrams: the uniform distribution over the vocabulary, every unigram but <s>).
    """
    uniform = 1.0 / len(level) if lower is None else None
    probs = {}
    for gram, count in level.items():
        total, gamma = contexts[gram[:-1]]
        below = uniform if lower is None else lower[gram[1:]]
        probs[gram] = (count - _discount(count, d)) / total + gamma * below
    return probs


def _sorted_grams(grams: Iterable[tuple], n: int) -> list[tuple]:
    if n > 1:
        return sorted(grams)
    rank = {w: i for i, w in enumerate(SPECIAL_WORDS)}
    return sorted(grams, key=lambda g: (rank.get(g[0], len(rank)), g[0]))


def write_arpa(adjusted: list[dict[tuple, int]], discounts: list[tuple], out: Path) -> list[int]:
    """Interpolate the model and write it as an ARPA file, atomically (temp, then rename).

    Order by order, so only two orders' probabilities are held at once. An n-gram gets the
    backoff log10 gamma(gram) when it is a context of the order above. `<s>` is added to the
    unigrams with log10 probability -99. N-grams are sorted (unigrams: `<unk> <s> </s>`,
    then the words) so the same text gives the same bytes. Returns the n-gram count per order.
    """
    order = len(adjusted)
    sizes = [len(adjusted[0]) + 1] + [len(level) for level in adjusted[1:]]  # +1: <s>
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(out) as f:
        f.write("\\data\\\n")
        for n, size in enumerate(sizes, start=1):
            f.write(f"ngram {n}={size}\n")
        contexts, lower = context_stats(adjusted[0], discounts[0]), None
        for n in range(1, order + 1):
            level = adjusted[n - 1]
            probs = level_probabilities(level, discounts[n - 1], contexts, lower)
            above = context_stats(adjusted[n], discounts[n]) if n < order else {}
            f.write(f"\n\\{n}-grams:\n")
            grams = _sorted_grams([*level, (BOS,)] if n == 1 else level, n)
            for gram in grams:
                logp = BOS_LOG10_PROB if gram == (BOS,) else math.log10(probs[gram])
                line = LOG10_FORMAT.format(logp) + "\t" + " ".join(gram)
                if gram in above:
                    line += "\t" + LOG10_FORMAT.format(math.log10(above[gram][1]))
                f.write(line + "\n")
            contexts, lower = above, probs
        f.write("\n\\end\\\n")
    return sizes


def check_order(order: int) -> None:
    """ValueError unless 1 <= order <= MAX_ORDER (what the decoders can load)."""
    if not 1 <= order <= MAX_ORDER:
        raise ValueError(f"--order {order}: the decoders load 1- to {MAX_ORDER}-gram models; choose an order in "
                         f"1-{MAX_ORDER}")


def _long_word(sentence: str) -> bool:
    return any(len(w) > MAX_WORD_CHARS for w in sentence.split())


def build_arpa(
    sentences: Iterable[str],
    order: int,
    out: Path,
    discount_fallback: tuple[float, float, float] = DEFAULT_DISCOUNT_FALLBACK,
) -> dict:
    """Estimate an interpolated modified Kneser-Ney model of `order` and write it to `out`.

    `sentences` are normalised text, words split on whitespace. Returns stats:
    `sentences` (non-empty ones used), `vocab_size` (distinct words, without `<s> </s>
    <unk>`), `ngrams` (entries per order in the ARPA file), `counts_of_counts` ([t1..t4]
    per order), `discounts` ([D1, D2, D3+] per order), `discount_fallback` (per order: True
    where the fallback replaced the computed discounts).
    """
    check_order(order)
    if len(discount_fallback) != 3 or not all(
        0 < d <= k for k, d in enumerate(discount_fallback, start=1)
    ):
        raise ValueError(f"discount_fallback must be (D1, D2, D3+) with 0 < Dk <= k, "
                         f"got {discount_fallback}")
    counts, n_sentences = count_ngrams(sentences, order)
    if n_sentences == 0:
        raise ValueError("no words to build a language model from (all sentences empty)")
    vocab_size = sum(1 for g in counts[0] if g[0] not in SPECIAL_WORDS)
    adjusted = adjust_counts(counts)
    coc, discounts, fallback_used = [], [], []
    for level in adjusted:
        t = counts_of_counts(level.values())
        d, used = discounts_from_counts(t, discount_fallback)
        coc.append(t)
        discounts.append(d)
        fallback_used.append(used)
    sizes = write_arpa(adjusted, discounts, out)
    return {
        "order": order,
        "sentences": n_sentences,
        "vocab_size": vocab_size,
        "ngrams": sizes,
        "counts_of_counts": coc,
        "discounts": [list(d) for d in discounts],
        "discount_fallback": fallback_used,
    }


# --------------------------------------------------------------------------------------
# From the shards
# --------------------------------------------------------------------------------------
def _read_index_texts(shards: Path) -> tuple[list[str], set[str]]:
    """Distinct train sentences (in index order) and the set of dev/test sentences."""
    train: dict[str, None] = {}
    heldout: set[str] = set()
    for row in read_index(shards, columns=["split", "text"]):
        split, text = row["split"], row["text"]
        if not text:
            continue
        if split == TRAIN_SPLIT:
            if not _long_word(text):  # a decoder could not load it (see MAX_WORD_CHARS)
                train[text] = None
        elif split in HELDOUT_SPLITS:
            heldout.add(text)
    return list(train), heldout


def _extra_sentences(path: Path, normalizer, heldout: set[str], stats: dict) -> Iterator[str]:
    """Normalised lines of `path`; counts kept/rejected/held-out lines into `stats`. A line
    the normaliser rejects, or holding a word over MAX_WORD_CHARS, is rejected. ValueError
    naming the file and the byte for text that is not UTF-8."""
    offset = 0
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")  # -sig: a byte-order mark is not text
            except UnicodeDecodeError as e:
                raise ValueError(f"extra text file {path} is not UTF-8 at byte {offset + e.start} (line {lineno}): "
                                 "convert it, e.g. `iconv -f latin1 -t utf-8`") from None
            offset += len(raw)
            if not line.strip():
                continue
            text = normalizer.normalize(line.strip())
            if not text or _long_word(text):
                stats["extra_rejected"] += 1
            elif text in heldout:
                stats["extra_heldout_dropped"] += 1
            else:
                stats["extra_sentences"] += 1
                yield text


def _dataset_normalizer(shards: Path):
    """The `pipeline.text` normaliser for the dataset's language (warns on a version change)."""
    meta = read_dataset(shards)  # it names the language and the normaliser --extra-text goes through
    from pipeline.text import get_normalizer  # lazy: the offline stage is not needed otherwise

    normalizer = get_normalizer(meta["lang"])
    want = (meta.get("normalizer") or {}).get("version")
    have = getattr(normalizer, "version", None)
    if want is not None and have is not None and str(want) != str(have):
        warnings.warn(f"the shards were normalised with {want} but pipeline.text now gives "
                      f"{have}: the extra text may be spelt differently from the train text",
                      stacklevel=4)
    return normalizer


def _shard_sentences(shards: Path,
                     extra_text: Path | None) -> tuple[list[str], Iterator[str], dict]:
    """The LM text of `shards`: (distinct train sentences, normalised extra lines, counts).

    Files are checked here; the extra lines are read lazily and `counts` filled as they go.
    """
    shards = Path(shards)
    train, heldout = _read_index_texts(shards)
    if not train:
        raise ValueError(f"{index_path(shards)} has no train sentences")
    counts = {"train_sentences": len(train), "extra_sentences": 0, "extra_rejected": 0,
              "extra_heldout_dropped": 0}
    extra: Iterator[str] = iter(())
    if extra_text is not None:
        extra_text = Path(extra_text)
        if not extra_text.is_file():
            raise FileNotFoundError(f"extra text file {extra_text} not found")
        extra = _extra_sentences(extra_text, _dataset_normalizer(shards), heldout, counts)
    return train, extra, counts


def build_lm_from_shards(shards: Path, order: int, out: Path,
                         extra_text: Path | None = None) -> dict:
    """Build the ARPA model `out` from the train sentences of `shards` (+ `extra_text`).

    Train rows only (`split == "train"` in `index.parquet`), each distinct sentence once.
    `extra_text` is raw UTF-8 text, one sentence per line, normalised here with the
    dataset's normaliser; lines equal to a dev/test sentence are dropped. Returns
    `build_arpa`'s stats plus `train_sentences`, `extra_sentences`, `extra_rejected` and
    `extra_heldout_dropped`.
    """
    check_order(order)  # before any text is read
    train, extra, counts = _shard_sentences(shards, extra_text)
    stats = build_arpa(chain(train, extra), order, out)
    stats.update(counts)
    return stats


def write_lm_text(shards: Path, out: Path, extra_text: Path | None = None) -> dict:
    """Write the sentences `build_lm_from_shards` would use, one per line (input for lmplz).

    Returns the counts (`train_sentences`, `extra_sentences`, ...).
    """
    train, extra, counts = _shard_sentences(shards, extra_text)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(out) as f:
        for sentence in chain(train, extra):
            f.write(sentence + "\n")
    return counts
