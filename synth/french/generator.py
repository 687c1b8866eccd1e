"""The sentence generator: template choice, surface style, length limits, distinctness.

`SentenceGenerator` stacks the layers of the grammar, each a class in its own module:

    Draws        draws.py       the seeded RNG; numbers, times, dates, punctuation
    Phrases      phrases.py     noun phrases, determiners, names, subjects, places
    Clauses      clauses.py     verbs, tenses, negation, complements, agreement
    Statements   statements.py  \
    Dialogue     dialogue.py     > the sentence templates (`t_*`), drawn by weight
    Topics       topics.py      /

and `sentence()` draws a template, realises its tokens in a random written style and
keeps the result only within the length limits.
"""

from __future__ import annotations

import re
from typing import Callable

from synth.french.dialogue import Dialogue
from synth.french.orthography import Style, realize, sentence_key, word_count
from synth.french.statements import Statements
from synth.french.topics import Topics
from synth.french.words import Lexicon


MIN_WORDS = 4
MAX_WORDS = 20
DIGIT_SENTENCE_RATE = 0.02  # sentences that write a number in digits (~1.5 % kept)
TYPOGRAPHIC_APOSTROPHE_RATE = 0.3  # ’ instead of '
FRENCH_SPACING_RATE = 0.75  # "Tu viens ?" rather than "Tu viens?"
STRAIGHT_QUOTES_RATE = 0.3  # "..." instead of « ... »
MAX_ATTEMPTS_PER_SENTENCE = 50
SHORT_WORDS = 8  # sentences shorter than this are kept only with SHORT_KEEP_RATE,
SHORT_KEEP_RATE = 0.35  # which moves the mean length towards Common Voice's ~10 words


class SentenceGenerator(Statements, Dialogue, Topics):
    """One seeded stream of French sentences; call `sentence()` repeatedly."""

    def __init__(self, seed: int, lex: Lexicon | None = None):
        super().__init__(seed, lex)

        self.templates: list[tuple[Callable[[], list[str]], float]] = [
            (self.t_statement, 24), (self.t_complex, 14), (self.t_reported, 5),
            (self.t_question, 15), (self.t_imperative, 5), (self.t_quote, 4),
            (self.t_existential, 4), (self.t_attribute, 6), (self.t_weather, 2),
            (self.t_encyclopedic, 4), (self.t_parliament, 3), (self.t_comparison, 2),
            (self.t_numbers, 3), (self.t_cleft, 3), (self.t_ca, 1.5), (self.t_relative, 4),
        ]
        self.number_templates = [self.t_numbers, self.t_encyclopedic, self.t_existential]

    def sentence(self) -> str:
        for _ in range(MAX_ATTEMPTS_PER_SENTENCE):
            self.digits = self.chance(DIGIT_SENTENCE_RATE)
            if self.digits:
                template = self.choice(self.number_templates)
            else:
                template = self.rng.choices([t for t, _ in self.templates],
                                            weights=[w for _, w in self.templates])[0]
            tokens = template()
            style = Style(self.chance(TYPOGRAPHIC_APOSTROPHE_RATE),
                          self.chance(FRENCH_SPACING_RATE),
                          self.chance(STRAIGHT_QUOTES_RATE))
            text = realize(tokens, style)
            if self.digits and not re.search(r"\d", text):
                continue
            n_words = word_count(text)
            if n_words < SHORT_WORDS and not self.chance(SHORT_KEEP_RATE):
                continue
            if MIN_WORDS <= n_words <= MAX_WORDS:
                return text
        raise RuntimeError("sentence generator failed to meet the length limits")


def generate_sentences(n: int, seed: int) -> list[str]:
    """n distinct French sentences (distinct by `sentence_key`), deterministic in (n, seed).

    The first k sentences of generate_sentences(n, seed) are the same for every n >= k.
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    gen = SentenceGenerator(seed)
    seen: set[str] = set()
    out: list[str] = []
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 20 * n + 1000:
            raise RuntimeError(f"could not generate {n} distinct sentences")
        s = gen.sentence()
        key = sentence_key(s)
        if key in seen:
            continue
        seen.add(key)
        out.append(s)
    return out
