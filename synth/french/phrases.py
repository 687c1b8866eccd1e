"""Noun phrases and what is built from them: determiners, names, subjects, places.

`Phrases` picks a noun of a semantic class and dresses it (determiner, agreed adjective,
"de" + owner), and builds the subjects and the place / origin adverbials clauses use.
"""

from __future__ import annotations

from typing import Sequence

from synth.french.conjugation import Verb
from synth.french.draws import Draws
from synth.french.orthography import prep_np, starts_with_vowel
from synth.french.phrasebook import (
    NOT_PREDICATIVE,
    PLACE_PHRASES,
    POSSESSIVE,
    STRESSED,
)
from synth.french.syntax import NP, Subject
from synth.french.words import Lexicon, Noun, lexicon


class Phrases(Draws):
    """Noun phrases, subjects and place phrases over the lexicon."""

    def __init__(self, seed: int, lex: Lexicon | None = None):
        super().__init__(seed)
        self.lex = lex or lexicon()
        self.adj_by_class = {c: self.lex.adjectives_for(c) for c in self.lex.nouns}

    def noun(self, classes: Sequence[str]) -> Noun:
        cls = self.choice(list(classes))
        return self.choice(self.lex.nouns[cls])

    def noun_phrase(self, classes: Sequence[str], *, number: str | None = None,
                    dets: Sequence[str] = ("def", "indef", "poss", "dem", "num", "quant"),
                    adj_p: float = 0.28, extra_p: float = 0.06, depth: int = 1) -> NP:
        noun = self.noun(classes)
        weights = {"def": 42, "indef": 25, "poss": 17, "dem": 8, "num": 5, "quant": 3}
        det = self.weighted({d: weights.get(d, 10) for d in dets})
        if number is None:
            number = "p" if self.chance(0.28) else "s"
        if det == "num":
            number = "p"
        if noun.mass:  # "du pain", "le lait": mass nouns stay singular
            number = "s"
            if det in ("num", "quant"):
                det = "def"
            if det == "indef":
                det = "part"
        head = noun.form(number)
        adj = None
        adjs = self.adj_by_class.get(noun.cls, ())
        if adjs and self.chance(adj_p):
            adj = self.choice(adjs)
        pre, post = [], []
        if adj is not None:
            if adj.pre:
                pre = [adj.form(noun.gender, number, before_vowel=starts_with_vowel(head))]
            else:
                post = [adj.form(noun.gender, number)]
        first = (pre or [head])[0]
        det_tokens = self.determiner(det, noun.gender, number, first, bool(pre))
        tokens = det_tokens + pre + [head] + post
        if depth > 0 and noun.cls in ("object", "place", "animal", "vehicle", "text") \
                and det in ("def", "indef", "dem") and self.chance(extra_p):
            owner = self.owner()
            tokens += prep_np("de", owner)
        np_ = NP(tokens, noun.gender, number, noun.cls, det, len(det_tokens))
        return np_

    def determiner(self, det: str, gender: str, number: str, first: str,
                   has_pre_adj: bool) -> list[str]:
        vowel = starts_with_vowel(first)
        fem = gender == "f"
        if det == "def":
            return ["les"] if number == "p" else ["la" if fem else "le"]
        if det == "indef":
            if number == "p":
                return ["de"] if has_pre_adj else ["des"]
            return ["une" if fem else "un"]
        if det == "part":
            if number == "p":
                return ["des"]
            if vowel:
                return ["de", "la" if fem else "le"]
            return ["de", "la"] if fem else ["du"]
        if det == "poss":
            person = self.weighted({0: 4, 1: 2, 2: 4, 3: 2, 4: 2, 5: 2})
            m, f, pl = POSSESSIVE[person]
            if number == "p":
                return [pl]
            return [f if fem and not vowel else m]
        if det == "dem":
            if number == "p":
                return ["ces"]
            return ["cette"] if fem else ["cet" if vowel else "ce"]
        if det == "num":
            return [self.number(self.small_number(), feminine=fem)]
        if det == "quant":
            if number == "p":
                q = self.choice(["quelques", "plusieurs", "certains", "beaucoup de",
                                 "peu de", "trop de", "assez de", "tous les", "deux ou trois",
                                 "la plupart des", "tant de"])
                if q == "certains" and fem:
                    q = "certaines"
                if q == "tous les" and fem:
                    q = "toutes les"
                return q.split()
            q = self.choice(["chaque", "tout le", "n'importe quel"])
            if fem:
                q = {"tout le": "toute la", "n'importe quel": "n'importe quelle"}.get(q, q)
            return q.split()
        raise ValueError(det)

    def predicative(self, cls: str) -> list:
        """Adjectives usable after être for a noun class."""
        return [a for a in self.adj_by_class.get(cls) or self.adj_by_class["abstract"]
                if a.ms not in NOT_PREDICATIVE]

    def owner(self) -> list[str]:
        """Possessor after "de": "de mon oncle", "de Marie", "du voisin"."""
        if self.chance(0.35):
            return [self.choice(self.lex.first_names).text]
        return self.noun_phrase(["person"], dets=("def", "poss"), adj_p=0.1, depth=0).tokens

    def name(self) -> tuple[list[str], str, str]:
        """A person's name: tokens, gender, number."""
        r = self.rng.random()
        if r < 0.7:
            n = self.choice(self.lex.first_names)
            return [n.text], n.gender, "s"
        if r < 0.85:
            a, b = self.rng.sample(self.lex.first_names, 2)
            g = "f" if a.gender == b.gender == "f" else "m"
            return [a.text, "et", b.text], g, "p"
        title, g = self.choice([("monsieur", "m"), ("madame", "f"), ("le docteur", "m"),
                                ("la docteure", "f"), ("maître", "m")])
        return title.split() + [self.choice(self.lex.surnames)], g, "s"

    def subject(self, allow_animal: bool = False, pronoun_p: float = 0.42) -> Subject:
        r = self.rng.random()
        if r < pronoun_p:
            p = self.weighted({"je": 20, "tu": 10, "il": 16, "elle": 16, "on": 8, "nous": 10,
                               "vous": 10, "ils": 6, "elles": 4})
            person = {"je": 0, "tu": 1, "il": 2, "elle": 2, "on": 2, "nous": 3, "vous": 4,
                      "ils": 5, "elles": 5}[p]
            if p in ("il", "ils", "on"):
                gender = "m"
            elif p in ("elle", "elles"):
                gender = "f"
            else:
                gender = self.choice("mf")
            number = "p" if person in (3, 4, 5) else "s"
            return Subject([p], person, gender, number, "person", p, True)
        if r < pronoun_p + 0.18:
            toks, g, n = self.name()
            pron = {"ms": "il", "fs": "elle", "mp": "ils", "fp": "elles"}[g + n]
            return Subject(toks, 5 if n == "p" else 2, g, n, "person", pron)
        cls = "animal" if allow_animal and self.chance(0.3) else "person"
        np_ = self.noun_phrase([cls], dets=("def", "poss", "dem", "indef", "num", "quant"),
                               extra_p=0.03)
        return Subject(np_.tokens, np_.person, np_.gender, np_.number, cls, np_.pronoun)

    def location(self, verb: Verb | None = None) -> str:
        r = self.rng.random()
        motion = verb is not None and verb.inf in ("aller", "partir", "arriver", "rentrer",
                                                   "retourner", "venir", "revenir", "monter",
                                                   "descendre", "entrer", "atterrir")
        if r < 0.2:
            return "à " + self.choice(self.lex.cities)
        if r < 0.3:
            return self.country_phrase("in")
        if r < 0.36:
            return "en " + self.choice(self.lex.regions)
        if r < 0.58:
            np_ = self.noun_phrase(["place"], dets=("def",), number="s", adj_p=0.15, depth=0)
            return " ".join(prep_np("à", np_.tokens))
        if r < 0.72:
            if motion and self.chance(0.5):
                np_ = self.noun_phrase(["place"], dets=("def", "poss"), number="s", adj_p=0.1,
                                       depth=0)
                return " ".join(prep_np("à", np_.tokens))
            np_ = self.noun_phrase(["place"], dets=("def", "indef", "poss", "dem"),
                                   number="s", depth=0)
            return " ".join(["dans"] + np_.tokens)
        if r < 0.86:
            if self.chance(0.3):
                return "chez " + self.choice(self.lex.first_names).text
            if self.chance(0.2):
                return "chez " + self.choice(STRESSED)
            np_ = self.noun_phrase(["person"], dets=("def", "poss"), adj_p=0.05, depth=0)
            return " ".join(["chez"] + np_.tokens)
        if motion:
            return "jusqu'" + self.choice(["à la gare", "au bout de la rue", "à la mer",
                                           "au village", "à la frontière", "au sommet"])
        return self.choice(PLACE_PHRASES)

    def country_phrase(self, mode: str) -> str:
        c = self.choice(self.lex.countries)
        vowel = starts_with_vowel(c.text)
        if mode == "in":
            if c.gender == "p":
                return "aux " + c.text
            return ("en " if c.gender == "f" or vowel else "au ") + c.text
        # from
        if c.gender == "p":
            return "des " + c.text
        if vowel:
            return "d'" + c.text
        return ("de " if c.gender == "f" else "du ") + c.text

    def source(self) -> list[str]:
        r = self.rng.random()
        if r < 0.4:
            return ["de", self.choice(self.lex.cities)]
        if r < 0.6:
            return self.country_phrase("from").split()
        np_ = self.noun_phrase(["place"], dets=("def", "poss"), number="s", adj_p=0.1, depth=0)
        return prep_np("de", np_.tokens)
