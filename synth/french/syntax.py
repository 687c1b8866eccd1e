"""Phrase structures: what agreement and word order need to know about a phrase."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class NP:
    """A noun phrase: its tokens and what agreement needs to know about it."""

    tokens: list[str]
    gender: str  # "m" | "f"
    number: str  # "s" | "p"
    cls: str  # semantic class of the head noun
    det: str = "def"  # def indef part poss dem num quant name pron bare
    det_len: int = 1  # how many leading tokens are the determiner

    @property
    def person(self) -> int:
        return 5 if self.number == "p" else 2

    @property
    def pronoun(self) -> str:
        return {"ms": "il", "fs": "elle", "mp": "ils", "fp": "elles"}[self.gender + self.number]

    def negated(self) -> list[str]:
        """Object under negation: "pas de pain", "jamais d'amis"."""
        if self.det in ("indef", "part"):
            return ["de"] + self.tokens[self.det_len:]
        return self.tokens

    def bare(self) -> list[str]:
        """Tokens without the determiner ("combien de livres")."""
        return self.tokens[self.det_len:]


@dataclass
class Subject:
    tokens: list[str]
    person: int  # 0..5 (je tu il nous vous ils)
    gender: str
    number: str
    cls: str = "person"
    pronoun: str = ""  # pronoun used for inversion (il, elle, tu ...)
    is_pronoun: bool = False


@dataclass
class Complement:
    tokens: list[str] = field(default_factory=list)
    clitic: str = ""  # le / la / les replacing a direct object
    agree: tuple[str, str] | None = None  # gender, number of a preceding direct object


@dataclass
class Clause:
    """A finite clause split into the slots that word-order rules move around."""

    subject: Subject | None
    finite: str
    pre: list[str] = field(default_factory=list)  # clitics before the finite verb
    post: list[str] = field(default_factory=list)  # participle / infinitive group
    rest: list[str] = field(default_factory=list)  # complements
    neg: str = ""  # second negation word ("pas", "jamais", "rien"...), "" if positive
    neg_late: bool = False  # "personne" follows the participle
    mid: list[str] = field(default_factory=list)  # adverb after the finite verb

    def _verb_group(self, finite: str) -> list[str]:
        out = (["ne"] if self.neg else []) + self.pre + [finite]
        if self.neg and not self.neg_late:
            out.append(self.neg)
        out += self.mid + self.post
        if self.neg and self.neg_late:
            out.append(self.neg)
        return out + self.rest

    def declarative(self) -> list[str]:
        return (self.subject.tokens if self.subject else []) + self._verb_group(self.finite)

    def can_invert(self) -> bool:
        return self.subject is not None and self.subject.pronoun not in ("", "je")

    def inverted(self) -> list[str]:
        """Question word order: "mange-t-il", "ton frère est-il parti"."""
        s = self.subject
        assert s is not None and s.pronoun and s.pronoun != "je"
        link = "-t-" if s.pronoun in ("il", "elle", "on") and self.finite[-1] in "ae" else "-"
        head = [] if s.is_pronoun else s.tokens
        return head + self._verb_group(self.finite + link + s.pronoun)
