"""Reading ARPA language models and writing lexicons: what the decoders load.

`check_arpa` reads an ARPA file's header and sections before KenLM (flashlight's, which
crashes rather than erring on some damage) ever sees it; `lm_words` / `read_arpa_unigrams` its
vocabulary; `write_lexicon*` spell the words in a model's characters for flashlight's lexicon
search. asr/decoding/lm.py builds the files (modified Kneser-Ney from the shards' text).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from pipeline.atomic import write_text

UNK, BOS, EOS = "<unk>", "<s>", "</s>"
SPECIAL_WORDS = (UNK, BOS, EOS)  # also the order in which they open the unigram section
WORD_BOUNDARY = "|"  # the lexicon's and the decoder's symbol for the space character
# What the decoders load: KenLM (and flashlight's copy of it) is built for at most 6-grams, and
# a word of 100,000 characters crashes its trie (a segfault, not an error). An order above this
# is refused before anything is read; a longer word is left out of a built model (its sentence
# counted as rejected) and makes an ARPA file refused by `check_arpa`.
MAX_ORDER = 6
MAX_WORD_CHARS = 256


# --------------------------------------------------------------------------------------
# Lexicon for the decoder
# --------------------------------------------------------------------------------------
class LMFileError(ValueError):
    """A language model file that cannot be used (empty, cut short, corrupt, not an LM), in
    one line that names the file and what is wrong with it."""


KENLM_BINARY_MAGIC = b"mmap lm "  # KenLM binaries open with "mmap lm http://kheafield.com/code ..."
_REBUILD = "rebuild it with `asr-cli lm build`"
_NGRAM_COUNT = re.compile(r"ngram\s+(\d+)\s*=\s*(\d+)")
_SECTION = re.compile(r"\\(\d+)-grams:")


def lm_words(path: Path) -> list[str] | None:
    """Check a language model file before KenLM reads it: an ARPA file's unigrams (the whole
    file checked by `check_arpa`), None for a KenLM binary; FileNotFoundError when there is
    no such file, LMFileError for anything else (empty, not an LM, a broken ARPA file).

    The one entry point of the decoders (CTC beam search, the attention model's LM fusion)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"language model {path} not found (build one with `asr-cli lm build`)")
    with open(path, "rb") as f:
        head = f.read(4096)
    if not head.strip():
        raise LMFileError(f"{path} is empty, not a language model; {_REBUILD}")
    if head.startswith(KENLM_BINARY_MAGIC):
        return None
    if head.lstrip().split(b"\n", 1)[0].strip() != b"\\data\\":
        raise LMFileError(f"{path} is not an ARPA file (it does not start with \\data\\) nor a KenLM binary: "
                          "not a language model; build one with `asr-cli lm build`")
    return check_arpa(path)


def check_arpa(path: Path) -> list[str]:
    """Read an ARPA file through once and return its unigrams (file order, specials included).

    LMFileError naming the file and what is wrong: bytes that are not UTF-8 (with their
    offset), a `\\data\\` header whose n-gram counts disagree with the sections (a file cut
    short: "announces 1234 2-grams, the file ends after 600"), a malformed n-gram line or
    a missing `\\end\\`. Costs about a second per million n-grams."""
    path = Path(path)
    counts: dict[int, int] = {}
    words: list[str] = []
    order, seen, ended, offset = 0, 0, False, 0  # order: the section being read (0: the header)

    def broken(what: str) -> LMFileError:
        return LMFileError(f"{path} is not a valid ARPA file: {what}; {_REBUILD}")

    def cut(what: str) -> LMFileError:
        return LMFileError(f"{path} is not a complete ARPA file: {what}; {_REBUILD}")

    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError as e:
                raise LMFileError(f"{path} is not valid UTF-8 at byte {offset + e.start} (line {lineno}): the file "
                                  f"is corrupt; {_REBUILD}") from None
            offset += len(raw)
            if not line or ended:
                continue
            if line == "\\data\\" and not counts and order == 0:
                continue
            m = _NGRAM_COUNT.fullmatch(line) if order == 0 else None
            if m:
                counts[int(m.group(1))] = int(m.group(2))
                continue
            section = _SECTION.fullmatch(line)
            if section or line == "\\end\\":
                if order == 0 and sorted(counts) != list(range(1, len(counts) + 1)):
                    raise broken(f"its \\data\\ header (line {lineno}) does not give n-gram counts for orders "
                                 f"1, 2, ... (it gives {sorted(counts) or 'none'})")
                if order == 0 and len(counts) > MAX_ORDER:
                    raise broken(f"it is a {len(counts)}-gram model; the decoders load at most {MAX_ORDER}-grams")
                if order and seen < counts[order]:
                    raise cut(f"the \\data\\ header announces {counts[order]} {order}-grams, the section holds "
                              f"{seen} (line {lineno})")
                want = order + 1 if order < len(counts) else None
                got = int(section.group(1)) if section else None
                if got != want:
                    raise broken(f"line {lineno} is {line!r} where "
                                 + (f"\\{want}-grams: should begin" if want else "\\end\\ should be"))
                if section:
                    order, seen = got, 0
                else:
                    ended = True
                continue
            if order == 0:
                raise broken(f"line {lineno} ({line[:40]!r}) is neither an `ngram N=count` line of the "
                             "\\data\\ header nor a section")
            parts = line.split()
            if len(parts) not in (order + 1, order + 2) or not _is_number(parts[0]) or (
                    len(parts) == order + 2 and not _is_number(parts[-1])):
                if not raw.endswith(b"\n"):  # the file's last line, cut in the middle
                    raise cut(f"the \\data\\ header announces {counts[order]} {order}-grams, the file ends "
                              f"after {seen} and half a line")
                raise broken(f"line {lineno} ({line[:40]!r}) is not a {order}-gram entry "
                             f"(log10 probability, {order} word(s), optional backoff)")
            seen += 1
            if seen > counts[order]:
                raise broken(f"the \\data\\ header announces {counts[order]} {order}-grams, the section holds "
                             f"more (line {lineno})")
            if order == 1:
                if len(parts[1]) > MAX_WORD_CHARS:  # the decoder's trie would crash on it
                    raise broken(f"line {lineno} holds a word of {len(parts[1])} characters; the decoders take "
                                 f"words of at most {MAX_WORD_CHARS}")
                words.append(parts[1])
    if not ended:
        if not counts:
            raise cut("the file ends inside its \\data\\ header")
        if order and seen < counts[order]:
            raise cut(f"the \\data\\ header announces {counts[order]} {order}-grams, the file ends after {seen}")
        if order < len(counts):
            raise cut(f"the file ends before its \\{order + 1}-grams: section")
        raise cut("the file ends without \\end\\")
    return words


def kenlm_error(path: Path, error: Exception) -> LMFileError:
    """KenLM's own complaint about `path` (a C++ exception's text, several lines) in one line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return LMFileError(f"KenLM cannot load {path}: {lines[-1] if lines else type(error).__name__}; {_REBUILD}")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_arpa_unigrams(arpa_path: Path) -> list[str]:
    """The words of an ARPA file's `\\1-grams:` section, in file order (specials included);
    the whole file is checked first (`lm_words`)."""
    words = lm_words(arpa_path)
    if words is None:
        raise ValueError(f"{arpa_path} is not an ARPA file (a KenLM binary); for a KenLM binary give the "
                         "decoder its word list")
    return words


def spellable_words(words: Iterable[str], vocab_chars: list[str]) -> list[str]:
    """The distinct words (not `<s> </s> <unk>`) spelt only with `vocab_chars`, sorted."""
    vocab = set(vocab_chars) - {" ", WORD_BOUNDARY}
    return sorted({w for w in words if w not in SPECIAL_WORDS and w and set(w) <= vocab})


def write_lexicon_from_words(words: Iterable[str], vocab_chars: list[str], out: Path,
                             source: str = "the word list") -> list[str]:
    """Write the decoder lexicon (`word<TAB>c h a r |` lines) of the spellable `words`.

    Returns the words written, sorted; raises ValueError when none is left.
    """
    words = list(words)
    kept = spellable_words(words, vocab_chars)
    if not kept:
        sample = [w for w in words if w not in SPECIAL_WORDS][:5]
        raise ValueError(f"none of the {len(words)} words of {source} (e.g. {sample}) can be "
                         f"spelt with the model's characters {''.join(sorted(vocab_chars))!r}: "
                         "was the LM built from this dataset's normalised text?")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out, "".join(f"{w}\t{' '.join(w)} {WORD_BOUNDARY}\n" for w in kept))
    return kept


def write_lexicon(arpa_path: Path, vocab_chars: list[str], out: Path) -> int:
    """Lexicon of the ARPA file's words (not `<s> </s> <unk>`) for the characters `vocab_chars`.

    One line per word: `word<TAB>c h a r |`, sorted; words with a character outside
    `vocab_chars` are skipped. Returns the number of words written; raises ValueError when
    none is left.
    """
    return len(write_lexicon_from_words(read_arpa_unigrams(arpa_path), vocab_chars, out,
                                        source=str(arpa_path)))
