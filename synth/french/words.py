"""The loaded, immutable lexicon: word classes and the parsers of the data blocks."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from synth.french.conjugation import Verb, build_verb
from synth.french.lexicon import (
    ADJ_DATA,
    ADJ_GROUPS,
    CITIES,
    COUNTRIES,
    FIRST_NAMES,
    NOUN_DATA,
    REGIONS,
    RIVERS,
    SURNAMES,
    VERB_DATA,
)
from synth.french.numbers import number_to_words
from synth.french.orthography import starts_with_vowel


@dataclass(frozen=True)
class Noun:
    sg: str
    pl: str
    gender: str  # "m" | "f"
    cls: str  # semantic class (person, food, place, ...)
    mass: bool = False  # takes the partitive ("du pain")

    def form(self, number: str) -> str:
        return self.pl if number == "p" else self.sg


@dataclass(frozen=True)
class Adjective:
    ms: str
    fs: str
    mp: str
    fp: str
    mv: str  # masculine singular before a vowel ("bel", "vieil", "nouvel")
    pre: bool  # placed before the noun
    classes: frozenset[str]

    def form(self, gender: str, number: str, before_vowel: bool = False) -> str:
        if number == "p":
            return self.fp if gender == "f" else self.mp
        if gender == "f":
            return self.fs
        return self.mv if before_vowel else self.ms


@dataclass(frozen=True)
class Name:
    text: str
    gender: str  # "m" | "f" | "p"


@dataclass(frozen=True)
class Lexicon:
    nouns: dict[str, tuple[Noun, ...]]  # class -> nouns
    adjectives: tuple[Adjective, ...]
    verbs: tuple[Verb, ...]
    verbs_by_inf: dict[str, Verb]
    first_names: tuple[Name, ...]
    surnames: tuple[str, ...]
    cities: tuple[str, ...]
    countries: tuple[Name, ...]
    regions: tuple[str, ...]
    rivers: tuple[Name, ...]

    def adjectives_for(self, cls: str) -> tuple[Adjective, ...]:
        return tuple(a for a in self.adjectives if cls in a.classes)

    def word_forms(self) -> set[str]:
        """Every distinct inflected word form the lexicon can produce (for statistics)."""
        out: set[str] = set()
        for nouns in self.nouns.values():
            for n in nouns:
                out.update(n.sg.split() + n.pl.split())
        for a in self.adjectives:
            out.update({a.ms, a.fs, a.mp, a.fp, a.mv})
        for v in self.verbs:
            out.add(v.inf)
            for forms in (v.present, v.imperfect, v.future, v.conditional, v.subjunctive,
                          v.imperative):
                out.update(forms)
            for g in "mf":
                for n in "sp":
                    out.add(v.participle_form(g, n))
        out.update(n.text for n in self.first_names)
        out.update(self.surnames)
        out.update(self.cities)
        out.update(n.text for n in self.countries)
        out.update(self.regions)
        out.update(n.text for n in self.rivers)
        out.update(number_to_words(i) for i in range(0, 101))
        return out


def verb_name(verb: Verb) -> str:
    """Dictionary name of a verb: "parler", "se lever", "s'asseoir"."""
    if not verb.reflexive:
        return verb.inf
    return ("s'" if starts_with_vowel(verb.inf) else "se ") + verb.inf


def plural_of(word: str) -> str:
    """Regular French plural of a noun (irregular ones are spelled out in NOUN_DATA)."""
    if word.endswith(("s", "x", "z")):
        return word
    if word.endswith("al"):
        return word[:-2] + "aux"
    if word.endswith(("eau", "au", "eu")):
        return word + "x"
    return word + "s"


def _feminine(m: str) -> str:
    """Regular feminine of an adjective (irregular ones are spelled out in ADJ_DATA)."""
    if m.endswith("e"):
        return m
    if m.endswith("eux"):
        return m[:-1] + "se"
    if m.endswith("f"):
        return m[:-1] + "ve"
    if m.endswith("er"):
        return m[:-2] + "ère"
    if m.endswith(("el", "eil", "en", "on")):
        return m + m[-1] + "e"
    if m.endswith("et"):
        return m + "te"
    return m + "e"


def _parse_nouns() -> dict[str, tuple[Noun, ...]]:
    nouns: dict[str, list[Noun]] = {}
    cls = ""
    for line in NOUN_DATA.strip().splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("["):
            cls = line.strip("[]")
            nouns[cls] = []
            continue
        for entry in line.split(","):
            fields = entry.split()
            if not fields:
                continue
            word, gender, flags = fields[0], fields[1], fields[2:]
            sg, _, pl = word.partition("/")
            sg = sg.replace("_", " ")
            pl = pl.replace("_", " ") if pl else plural_of(sg)
            if gender not in ("m", "f"):
                raise ValueError(f"noun {word!r}: gender must be m or f")
            nouns[cls].append(Noun(sg, pl, gender, cls, mass="mass" in flags))
    return {k: tuple(v) for k, v in nouns.items()}


def _parse_adjectives() -> tuple[Adjective, ...]:
    out = []
    for line in ADJ_DATA.strip().splitlines():
        forms_s, pos, groups = line.split()
        forms = forms_s.split(",")
        m = forms[0]
        f = forms[1] if len(forms) > 1 else _feminine(m)
        mp = forms[2] if len(forms) > 2 else plural_of(m)
        fp = forms[3] if len(forms) > 3 else f + "s"
        mv = forms[4] if len(forms) > 4 else m
        classes = frozenset(c for g in groups.split("|") for c in ADJ_GROUPS[g])
        out.append(Adjective(m, f, mp, fp, mv, pos == "pre", classes))
    return tuple(out)


def _parse_verbs() -> tuple[Verb, ...]:
    return tuple(build_verb(line) for line in VERB_DATA.strip().splitlines() if line.strip())


def _parse_gendered(block: str) -> tuple[Name, ...]:
    out = []
    for entry in block.replace("\n", " ").split(","):
        fields = entry.split()
        if fields:
            out.append(Name(fields[0].replace("_", " "), fields[1]))
    return tuple(out)


def _parse_first_names() -> tuple[Name, ...]:
    out, gender = [], "m"
    for tok in FIRST_NAMES.split():
        if tok in ("m:", "f:"):
            gender = tok[0]
        else:
            out.append(Name(tok, gender))
    return tuple(dict.fromkeys(out))  # keep order, drop duplicates


def _check_frames(verbs: tuple[Verb, ...], nouns: dict[str, tuple[Noun, ...]]) -> None:
    """Every noun class a verb frame names must exist (typos fail at import, not later)."""
    for v in verbs:
        for frame in v.frames:
            kind, _, arg = frame.partition(":")
            groups = {"o": [arg], "p": arg.split(":")[1:], "oi": arg.split(":")[::2]}
            for group in groups.get(kind, []):
                for cls in group.split("+"):
                    if cls not in nouns:
                        raise ValueError(f"verb {v.inf!r}: unknown noun class {cls!r}")


@lru_cache(maxsize=1)
def lexicon() -> Lexicon:
    """Parse the data blocks once (cached; the result is read-only by convention)."""
    verbs = _parse_verbs()
    nouns = _parse_nouns()
    _check_frames(verbs, nouns)
    return Lexicon(
        nouns=nouns,
        adjectives=_parse_adjectives(),
        verbs=verbs,
        verbs_by_inf={verb_name(v): v for v in verbs},
        first_names=_parse_first_names(),
        surnames=tuple(dict.fromkeys(SURNAMES.split())),
        cities=tuple(c.replace("_", " ") for c in dict.fromkeys(CITIES.split())),
        countries=_parse_gendered(COUNTRIES),
        regions=tuple(REGIONS.split()),
        rivers=_parse_gendered(RIVERS),
    )
