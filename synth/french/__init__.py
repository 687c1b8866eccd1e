"""Deterministic French sentence generator for the synthetic demo corpus.

`generate_sentences(n, seed)` returns n distinct French sentences built by a small
grammar over the hand-written lexicon (`lexicon.py`, data only):

    statements, negations (ne ... pas / jamais / plus / rien / personne), questions
    (est-ce que, inversion with -t-, où / quand / combien de / quel ...), imperatives,
    subordinate and relative clauses, reported speech, quotes « ... », comparisons,
    weather, dates and ages, encyclopedic and parliamentary sentences.

Agreement is handled (determiners, adjectives, past participles with être and with a
preceding direct object), as are elision (l', d', j', qu', n', s', c', m', t', jusqu',
lorsqu'), contraction (au, du, aux, des), euphonic -t- and h aspiré. Sentences use
straight (') or typographic (’) apostrophes, French or compact spacing before ? ! ; :,
and about 1.5 % of them carry a number written in digits (as real Common Voice text does).

Everything is driven by one `random.Random(seed)`, so the output depends only on
(n, seed). `sentence_key` is the comparison key used to keep splits disjoint: lowercase,
digits spelled out, only letters and digits kept.

Modules, from the words up:

    lexicon.py       the data blocks (nouns, adjectives, verbs, names, places)
    conjugation.py   a verb line -> every conjugated form
    words.py         the loaded lexicon (`lexicon()`): Noun, Adjective, Verb, Name
    numbers.py       cardinals and ordinals in words
    orthography.py   tokens -> written sentence (elision, contraction, spacing, quotes)
    phrasebook.py    the generator's phrase tables (adverbials, idioms, tense weights)
    syntax.py        phrase structures (NP, Subject, Complement, Clause)
    draws.py phrases.py clauses.py statements.py dialogue.py topics.py
                     the grammar, one layer per class (see generator.py)
    generator.py     SentenceGenerator, generate_sentences
"""

from synth.french.generator import SentenceGenerator, generate_sentences
from synth.french.numbers import number_to_words, ordinal
from synth.french.orthography import (
    Style,
    prep_np,
    realize,
    sentence_key,
    starts_with_vowel,
    word_count,
)
from synth.french.words import Lexicon, lexicon

__all__ = [
    "Lexicon",
    "SentenceGenerator",
    "Style",
    "generate_sentences",
    "lexicon",
    "number_to_words",
    "ordinal",
    "prep_np",
    "realize",
    "sentence_key",
    "starts_with_vowel",
    "word_count",
]
