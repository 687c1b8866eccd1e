"""The generator's one source of randomness, and the small draws every layer makes.

`Draws` holds the seeded `random.Random`: coin flips and weighted choices, numbers (in
words, or in digits when the current sentence writes them so), times of day, dates,
years, the final punctuation and a discourse opener ("Bien sûr, ..."). Every draw goes
through `self.rng` in a fixed order, so a sentence stream depends only on the seed.
"""

from __future__ import annotations

import random

from synth.french.numbers import number_to_words
from synth.french.phrasebook import DISCOURSE, MONTHS, TENSE_TIME_TAG, TIMES


class Draws:
    """Seeded draws shared by the phrase, clause and sentence layers."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.digits = False  # the current sentence writes its number in digits

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def choice(self, seq):
        return self.rng.choice(seq)

    def weighted(self, options: dict):
        keys = list(options)
        return self.rng.choices(keys, weights=[options[k] for k in keys])[0]

    def number(self, n: int, feminine: bool = False) -> str:
        return str(n) if self.digits else number_to_words(n, feminine)

    def small_number(self) -> int:
        r = self.rng.random()
        if r < 0.6:
            return self.rng.randint(2, 10)
        if r < 0.85:
            return self.rng.randint(11, 30)
        return self.rng.randint(31, 100)

    def time_for(self, tense: str) -> str:
        tag = TENSE_TIME_TAG.get(tense, "P")
        options = [t for t, tags in TIMES if tag in tags]
        r = self.rng.random()
        if r < 0.08 and tag in "AI":
            return f"il y a {self.number(self.rng.randint(2, 12))} " + self.choice(
                ["jours", "semaines", "mois", "ans"])
        if r < 0.14 and tag == "F":
            return f"dans {self.number(self.rng.randint(2, 12))} " + self.choice(
                ["jours", "semaines", "mois", "ans", "minutes", "heures"])
        if r < 0.2:
            return self.clock()
        if r < 0.24:
            return self.date()
        return self.choice(options)

    def clock(self) -> str:
        h = self.rng.randint(1, 23)
        if h == 12 and self.chance(0.5):
            return self.choice(["à midi", "vers midi", "à midi et demi"])
        hours = "heure" if h == 1 else "heures"
        base = f"{self.choice(['à', 'à', 'vers'])} {self.number(h, feminine=True)} {hours}"
        extra = self.weighted({"": 5, " et quart": 1, " et demie": 1, " moins le quart": 1,
                               " trente": 1, " dix": 0.5, " quarante-cinq": 0.5})
        return base + extra

    def date(self) -> str:
        day = self.rng.randint(1, 28)
        d = "premier" if day == 1 else self.number(day)
        return f"le {d} {self.choice(MONTHS)}"

    def year(self) -> str:
        y = self.rng.randint(1850, 2023)
        return str(y) if self.digits else number_to_words(y)

    def end(self, exclaim_p: float = 0.05) -> str:
        r = self.rng.random()
        if r < exclaim_p:
            return "!"
        if r < exclaim_p + 0.02:
            return "..."
        return "."

    def opener(self, p: float = 0.12) -> list[str]:
        if self.chance(p):
            return self.choice(DISCOURSE).split() + [","]
        return []
