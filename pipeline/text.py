"""Transcript normalisation: raw Common Voice sentence -> the text models learn and metrics compare.

Every rule here changes what a model is trained on, so the normaliser is versioned: its
name and version go into `dataset.json` and into every checkpoint, and `VERSION` must be
bumped whenever an output can change.

Rules shared by every language (applied in this order):

1. Unicode NFKC (ligatures, full-width forms, superscripts and non-breaking spaces become
   their plain forms), then lowercase where the script has case (Turkish and Azeri dotted
   and dotless i handled).
2. Apostrophe look-alikes (’ ‘ ʼ ` ´ ′ ＇) become ', hyphen look-alikes (‐ ‑) become -.
3. Numbers are spelt out in words with num2words when it knows the language (French:
   "1998" -> "mille neuf cent quatre-vingt-dix-huit", "3,5" -> "trois virgule cinq",
   "1er" -> "premier", "20e" -> "vingtième", "1 000" -> "mille"); a transcript with digits in
   a language num2words does not know is rejected ("digits"), never guessed.
4. A few symbols are read as words (French "%" -> "pour cent", "&" -> "et", "€" -> "euros").
5. Punctuation (Unicode category P*) becomes a space, except an apostrophe or hyphen
   between two letters ("aujourd'hui", "peut-être", "a-t-il" keep theirs).
6. Letters (L*) and combining marks (M*) of any script are kept, but for the Arabic
   tatweel (U+0640), a stretching of the joining line that is no sound, dropped. Language-tuned
   normalisers narrow this: French keeps its own alphabet (a-z, à â æ ç é è ê ë î ï ô œ
   ù û ü ÿ) and spells other Latin letters without their diacritics ("ñ" -> "n",
   "ø" -> "o", "ß" -> "ss"); English keeps a-z only.
7. Whitespace collapses to single spaces.

A transcript is rejected, with a reason, when it is empty after normalisation
("empty_text"), when it holds a character the rules cannot map - a symbol with no
reading, a letter of another script in French or English, a control character -
("unmappable_char"), or digits that cannot be spelt out ("digits").
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

VERSION = 1
# The generic normaliser's own version: 2 lowercases the words num2words spells (German
# "zwei Millionen" gave the vocabulary an "M"); fr and en never got capitals from it. 3 drops
# the Arabic tatweel ("مـرحبا" was a word of its own beside "مرحبا").
GENERIC_VERSION = 3
TATWEEL = "\u0640"

APOSTROPHES = "’‘ʼʹ`´′＇‛"
HYPHENS = "‐‑"  # U+2010, U+2011: hyphens proper; en/em dashes are punctuation
SPACING_ACCENTS = "^¨¸˜"
FRENCH_LETTERS = set("abcdefghijklmnopqrstuvwxyzàâæçéèêëîïôœùûüÿ")
ENGLISH_LETTERS = set("abcdefghijklmnopqrstuvwxyz")
# Latin letters that lose nothing readable when spelt in ASCII (beyond diacritic stripping).
LATIN_FOLD = {"ß": "ss", "ø": "o", "đ": "d", "ł": "l", "ı": "i", "þ": "th", "ð": "d",
              "ŋ": "ng", "ħ": "h", "ĸ": "k", "ſ": "s", "æ": "ae", "œ": "oe"}

SYMBOL_WORDS = {
    "fr": {"&": "et", "%": "pour cent", "‰": "pour mille", "€": "euros", "$": "dollars",
           "£": "livres", "+": "plus", "=": "égal", "§": "paragraphe", "°": "degrés"},
    "en": {"&": "and", "%": "percent", "‰": "per mille", "€": "euros", "$": "dollars",
           "£": "pounds", "+": "plus", "=": "equals", "§": "section", "°": "degrees"},
}
DECIMAL_WORD = {"fr": "virgule", "en": "point"}

# Digits with optional thousand groups ("1 000", "1.000", "1,000"), decimals and an
# ordinal suffix. Group separators are tried per language below.
_ORDINAL_SUFFIX = {
    "fr": r"(?P<ord>ers|er|res|re|ères|ère|èmes|ème|emes|eme|es|e|nds|nd|ndes|nde)?",
    "en": r"(?P<ord>st|nd|rd|th)?",
}
_THOUSANDS = {"fr": r"[ \u00a0\u202f.]", "en": r"[,\u00a0\u202f ]"}
_DECIMAL = {"fr": r"[,.]", "en": r"[.]"}
_SPACES = re.compile(r"\s+")


@dataclass
class Normalizer:
    """Language-aware transcript normaliser (see the module docstring for the rules).

    `normalize(raw)` returns the text, or None when the transcript must be rejected;
    `analyse(raw)` returns `(text, reason)` with the reason of a rejection.
    """

    lang: str
    name: str = field(init=False)
    version: str = field(init=False)

    def __post_init__(self) -> None:
        base = self.lang.split("-")[0].split("_")[0].lower()
        self.name = base if base in ("fr", "en") else "generic"
        self.version = f"{self.name}-{GENERIC_VERSION if self.name == 'generic' else VERSION}"
        self._base = base
        self._num_lang = _num2words_lang(self.lang)
        self._symbols = SYMBOL_WORDS.get(base, {})
        self._letters = {"fr": FRENCH_LETTERS, "en": ENGLISH_LETTERS}.get(base)
        self._number_re = _number_regex(base)

    # -- public ------------------------------------------------------------------
    def normalize(self, raw: str) -> str | None:
        text, reason = self.analyse(raw)
        return None if reason else text

    def analyse(self, raw: str) -> tuple[str, str | None]:
        text = unicodedata.normalize("NFKC", raw or "")
        text = self._lower(text)
        for a in APOSTROPHES:
            text = text.replace(a, "'")
        for h in HYPHENS:
            text = text.replace(h, "-")
        if any(ch.isdigit() for ch in text):
            text = self._spell_numbers(text)
            if text is None:
                return "", "digits"
        out: list[str] = []
        for ch in text:
            mapped = self._map_char(ch)
            if mapped is None:
                return "", f"unmappable_char:{_describe(ch)}"
            out.append(mapped)
        text = _keep_inner_marks("".join(out))
        text = _SPACES.sub(" ", text).strip()
        if not text:
            return "", "empty_text"
        return text, None

    def describe(self) -> dict:
        return {"name": self.name, "version": self.version, "lang": self.lang}

    # -- steps ---------------------------------------------------------------------
    def _lower(self, text: str) -> str:
        if self._base in ("tr", "az"):
            text = text.replace("I", "ı").replace("İ", "i")
        return text.lower()

    def _map_char(self, ch: str) -> str | None:
        """One character -> its normalised form ('' or ' ' to drop it), None if unmappable."""
        if ch in "'-":
            return ch  # kept for now; `_keep_inner_marks` drops those not inside a word
        if ch in self._symbols:
            return f" {self._symbols[ch]} "
        cat = unicodedata.category(ch)
        if cat[0] == "Z" or ch in "\t\n\r":
            return " "
        if cat[0] == "P":
            return " "
        if ch in SPACING_ACCENTS:
            return ""  # a stray accent typed on its own, e.g. "^"
        if cat[0] in ("L", "M"):
            return self._map_letter(ch)
        if cat == "Cf":
            return ""  # zero-width joiners, bidi marks: invisible formatting
        return None  # symbols with no reading, control and private-use characters

    def _map_letter(self, ch: str) -> str | None:
        if self._letters is None:  # generic: any script's letters and marks are kept (not the tatweel)
            return "" if ch == TATWEEL else ch
        if ch in self._letters:
            return ch
        if unicodedata.category(ch)[0] == "M":
            return ""  # a combining mark NFKC could not compose: drop it
        folded = LATIN_FOLD.get(ch)
        if folded is None:
            base = "".join(c for c in unicodedata.normalize("NFD", ch) if not unicodedata.combining(c))
            folded = base if base and all(c in ENGLISH_LETTERS for c in base) else None
        if folded is None:
            return None  # a letter of another script
        return "".join(c if c in self._letters else LATIN_FOLD.get(c, c) for c in folded)

    def _spell_numbers(self, text: str) -> str | None:
        if self._num_lang is None:
            return None
        try:
            spelt = self._number_re.sub(lambda m: f" {self._lower(self._number_words(m))} ", text)
        except (ValueError, OverflowError, ArithmeticError, RecursionError, IndexError, KeyError, TypeError):
            # num2words gives up on a long run of digits (5,000 anywhere, ~400 in en, ja, ar;
            # Python's int() stops at 4,300): a transcript it cannot read is a "digits" reject
            return None
        if any(ch.isdigit() for ch in spelt):
            return None
        return spelt

    def _number_words(self, m: re.Match) -> str:
        from num2words import num2words

        integer = int(re.sub(r"\D", "", m.group("int")))
        if m.group("ord") and m.groupdict().get("frac") is None:
            return num2words(integer, lang=self._num_lang, to="ordinal")
        words = num2words(integer, lang=self._num_lang)
        frac = m.groupdict().get("frac")
        if frac:
            point = DECIMAL_WORD.get(self._base)
            if point is None:
                return num2words(float(f"{integer}.{frac}"), lang=self._num_lang)
            if self._base == "fr":  # "3,14" is read "trois virgule quatorze"
                zeros = len(frac) - len(frac.lstrip("0"))
                tail = ["zéro"] * zeros + ([num2words(int(frac), lang="fr")] if frac.strip("0") else [])
            else:  # "3.14" is read "three point one four"
                tail = [num2words(int(d), lang=self._num_lang) for d in frac]
            words = " ".join([words, point, *tail])
        return words


def _number_regex(base: str) -> re.Pattern:
    thousands = _THOUSANDS.get(base, r"[\u00a0\u202f]")
    decimal = _DECIMAL.get(base, r"[.,]")
    suffix = _ORDINAL_SUFFIX.get(base, r"(?P<ord>)")
    return re.compile(
        rf"(?P<int>\d{{1,3}}(?:{thousands}\d{{3}})+(?!\d)|\d+)"
        rf"(?:{decimal}(?P<frac>\d+))?"
        rf"{suffix}(?![^\W\d_])"
    )


def _num2words_lang(lang: str) -> str | None:
    from num2words import CONVERTER_CLASSES

    for cand in (lang.replace("-", "_"), lang.split("-")[0].split("_")[0].lower()):
        if cand in CONVERTER_CLASSES:
            return cand
    return None


_LETTER = r"[^\W\d_]"
_INNER_MARK = re.compile(rf"(?<!{_LETTER})['-]|['-](?!{_LETTER})")


def _keep_inner_marks(text: str) -> str:
    """Keep ' and - only between two letters ("l'eau", "peut-être"); elsewhere a space."""
    return _INNER_MARK.sub(" ", text)


def _describe(ch: str) -> str:
    return f"U+{ord(ch):04X}"


def get_normalizer(lang: str) -> Normalizer:
    """The normaliser for a Common Voice locale ("fr", "en", "de", "zh-CN", ...)."""
    return Normalizer(lang)
