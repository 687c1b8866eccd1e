"""Written French: elision, contraction, spacing, quotes, capitals and apostrophes.

`realize` turns a token list into the sentence as it is written ("le homme" -> "l'homme",
"à le marché" -> "au marché" via `prep_np`, "Tu viens ?" or "Tu viens?"); `sentence_key`
is the comparison key that keeps the corpus's splits disjoint.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Sequence

from synth.french.lexicon import ASPIRATED, VOWEL_LETTERS
from synth.french.numbers import number_to_words

CONTRACTIONS = {("à", "le"): "au", ("à", "les"): "aux", ("de", "le"): "du", ("de", "les"): "des"}
ELIDING = frozenset({"le", "la", "de", "je", "me", "te", "se", "ne", "que", "jusque",
                     "lorsque", "puisque", "ce"})
PUNCT_NO_SPACE_BEFORE = frozenset({",", ".", "..."})
PUNCT_FRENCH_SPACE = frozenset({"?", "!", ";", ":"})
QUOTE_OPEN, QUOTE_CLOSE = "«", "»"
PUNCTUATION = PUNCT_NO_SPACE_BEFORE | PUNCT_FRENCH_SPACE | {QUOTE_OPEN, QUOTE_CLOSE}


def starts_with_vowel(word: str) -> bool:
    """True when a preceding le/la/de/que/ne... elides before `word`."""
    w = word.lower()
    if not w or w in ASPIRATED or w.split("-")[0] in ASPIRATED:
        return False
    if w == "y":
        return True
    return w[0] in VOWEL_LETTERS or (w[0] == "h" and len(w) > 1)


@dataclass(frozen=True)
class Style:
    typographic_apostrophe: bool
    french_spacing: bool
    straight_quotes: bool


def _elide(word: str, nxt: str) -> str | None:
    """Elided form of `word` before `nxt` ("l'", "qu'", "s'"), or None."""
    lw = word.lower()
    if lw in ELIDING and starts_with_vowel(nxt):
        return word[:-1] + "'"
    if lw == "si" and nxt.lower() in ("il", "ils"):
        return word[0] + "'"
    return None


def realize(tokens: Sequence[str], style: Style) -> str:
    """Join tokens into a sentence: elision, spacing, quotes, capitals, apostrophes."""
    toks = [t for t in tokens if t]
    pieces: list[tuple[str, bool]] = []  # (text, glued to the previous piece)
    glue_next = False
    for i, tok in enumerate(toks):
        nxt = toks[i + 1] if i + 1 < len(toks) else ""
        glue = glue_next
        glue_next = False
        if tok in PUNCT_NO_SPACE_BEFORE:
            glue = True
        elif tok in PUNCT_FRENCH_SPACE:
            glue = not style.french_spacing
        elif tok == QUOTE_OPEN and style.straight_quotes:
            tok, glue_next = '"', True
        elif tok == QUOTE_CLOSE and style.straight_quotes:
            tok, glue = '"', True
        elif nxt and nxt not in PUNCTUATION:
            elided = _elide(tok, nxt)
            if elided is not None:
                tok, glue_next = elided, True
        pieces.append((tok, glue))
    text = ""
    for tok, glue in pieces:
        text += tok if (glue or not text) else " " + tok
    # Capitals: sentence start, and the first word inside a quotation.
    text = _capitalize_at(text, 0)
    for m in re.finditer(r'(?:« |(?:^|: |\s)")\w', text):
        text = _capitalize_at(text, m.end() - 1)
    if style.typographic_apostrophe:
        text = text.replace("'", "’")
    return text


def _capitalize_at(text: str, start: int) -> str:
    for i in range(start, len(text)):
        if text[i].isalpha():
            return text[:i] + text[i].upper() + text[i + 1:]
    return text


def word_count(sentence: str) -> int:
    return sum(1 for w in sentence.split() if any(c.isalnum() for c in w))


def _spell_digits(text: str) -> str:
    return re.sub(r"\d+", lambda m: " " + number_to_words(int(m.group())) + " ", text)


def sentence_key(sentence: str) -> str:
    """Comparison key: lowercase, digits spelled out, only letters and digits kept.

    Stricter than any normaliser the pipeline applies (it also ignores spaces and
    apostrophes), so sentences with different keys stay different after normalisation.
    """
    text = unicodedata.normalize("NFC", _spell_digits(sentence).lower())
    return "".join(c for c in text if c.isalnum())


def prep_np(prep: str, tokens: list[str]) -> list[str]:
    """Preposition + noun phrase with contraction (à le -> au, de les -> des)."""
    if prep in ("à", "de") and len(tokens) > 1 and tokens[0] in ("le", "les"):
        if tokens[0] == "les" or not starts_with_vowel(tokens[1]):
            return [CONTRACTIONS[(prep, tokens[0])]] + tokens[1:]
    return [prep] + tokens
