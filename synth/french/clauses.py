"""Finite clauses: verb choice, tense, negation, complements, adverbs and agreement.

`Clauses.clause` picks a verb and one of its complement frames (lexicon `VERB_DATA`),
conjugates it (simple tenses, passé composé / plus-que-parfait with the right auxiliary
and participle agreement, futur proche, passé récent), negates it, and fills the frame;
frames that embed a clause or an infinitive recurse with a depth limit.
"""

from __future__ import annotations

from typing import Callable

from synth.french.conjugation import Verb
from synth.french.orthography import prep_np
from synth.french.phrasebook import (
    AVOIR_IDIOMS,
    CLAUSE_FRAMES,
    END_ADVERBS,
    ETRE_STATES,
    FAIRE_IDIOMS,
    GAMES,
    INF_FRAMES,
    MID_ADVERBS,
    MID_ADVERBS_ATTR,
    MID_ADVERBS_NEGATED,
    REFLEXIVE,
    TENSE_WEIGHTS,
    VERB_WEIGHTS,
)
from synth.french.phrases import Phrases
from synth.french.syntax import NP, Clause, Complement, Subject
from synth.french.words import Lexicon


class Clauses(Phrases):
    """Clauses and the verb phrases inside them."""

    def __init__(self, seed: int, lex: Lexicon | None = None):
        super().__init__(seed, lex)
        self.verbs = tuple(v for v in self.lex.verbs)
        self.verb_weights = [VERB_WEIGHTS.get(v.inf, 1.0) for v in self.verbs]

    def pick_verb(self, subject_cls: str = "person", exclude: frozenset[str] = frozenset(),
                  need: Callable[[Verb], bool] | None = None) -> Verb:
        while True:
            v = self.rng.choices(self.verbs, weights=self.verb_weights)[0]
            if v.inf in exclude or (subject_cls == "animal" and v.subject != "a"):
                continue
            if need is None or need(v):
                return v

    def participle(self, verb: Verb, subject: Subject, agree: tuple[str, str] | None) -> str:
        if verb.aux == "être" or verb.reflexive:
            gender, number = subject.gender, subject.number
            if subject.pronoun == "on":
                gender, number = "m", "s"
            return verb.participle_form(gender, number)
        if agree is not None:
            return verb.participle_form(*agree)
        return verb.participle_form()

    def clause(self, subject: Subject | None = None, verb: Verb | None = None, *,
               tense: str | None = None, neg_p: float = 0.15, frame: str | None = None,
               depth: int = 0, drop: str = "", allow_time: bool = True,
               agree: tuple[str, str] | None = None) -> Clause:
        """A finite clause. `drop` suppresses a questioned or relativised slot:
        "object", "loc", "src", "time"."""
        if verb is None:
            allowed = self._frames_allowed(depth)
            verb = self.pick_verb(
                subject.cls if subject else "person",
                need=lambda v: any(allowed(f) for f in v.frames))
        if subject is None:
            subject = self.subject(allow_animal=verb.subject == "a")
        if tense is None:
            tense = self.weighted(TENSE_WEIGHTS)
            if tense == "recent" and verb.inf in ("venir", "devenir", "revenir"):
                tense = "pres"
        if frame is None:
            allowed = self._frames_allowed(depth)
            frames = [f for f in verb.frames if allowed(f)] or list(verb.frames)
            frame = self.choice(frames)
        neg = ""
        if self.chance(neg_p) and tense != "recent":
            neg = self.weighted({"pas": 70, "jamais": 10, "plus": 10, "pas encore": 4,
                                 "rien": 3, "personne": 3})
            if neg == "pas encore" and tense not in ("passe", "pqp"):
                neg = "pas"
            if neg == "rien" and not frame.startswith("o:"):
                neg = "pas"
            if neg == "personne" and not (frame.startswith("o:") and "person" in frame):
                neg = "pas"
        comp = self.complement(verb, frame, subject, tense, neg, depth, drop)
        if neg in ("rien", "personne"):
            comp = Complement([], "", None)
        if agree is None:
            agree = comp.agree
        person = subject.person
        refl = [REFLEXIVE[person]] if verb.reflexive else []
        clitic = [comp.clitic] if comp.clitic else []
        c = Clause(subject, "", rest=comp.tokens, neg=neg, neg_late=neg == "personne")
        if tense in ("pres", "imp", "fut", "cond", "subj"):
            c.finite = verb.tense(tense)[person]
            c.pre = refl + clitic
        elif tense in ("passe", "pqp"):
            aux = self.lex.verbs_by_inf["être" if (verb.aux == "être" or verb.reflexive)
                                        else "avoir"]
            c.finite = (aux.present if tense == "passe" else aux.imperfect)[person]
            c.pre = refl + clitic
            c.post = [self.participle(verb, subject, agree)]
        elif tense == "futproche":
            c.finite = self.lex.verbs_by_inf["aller"].present[person]
            c.post = refl + clitic + [verb.inf]
        elif tense == "recent":
            c.finite = self.lex.verbs_by_inf["venir"].present[person]
            c.post = ["de"] + refl + clitic + [verb.inf]
        else:
            raise ValueError(tense)
        # Adverbs and adverbials.
        clausal = frame in CLAUSE_FRAMES
        copular = frame in ("attr", "prog", "idiom")
        if not clausal and neg in ("", "pas") and not (neg and copular) and self.chance(0.12):
            c.mid = [self.choice(MID_ADVERBS_ATTR if copular else
                                 MID_ADVERBS_NEGATED if neg else MID_ADVERBS)]
        if not clausal:
            if self.chance(0.10):
                c.rest = c.rest + [self.choice(END_ADVERBS)]
            if allow_time and drop != "time" and depth == 0 and self.chance(0.22):
                c.rest = c.rest + self.time_for(tense).split()
        return c

    def _frames_allowed(self, depth: int) -> Callable[[str], bool]:
        if depth >= 2:
            return lambda f: f not in CLAUSE_FRAMES and f not in INF_FRAMES
        if depth == 1:
            return lambda f: f not in CLAUSE_FRAMES
        return lambda f: True

    def complement(self, verb: Verb, frame: str, subject: Subject, tense: str, neg: str,
                   depth: int, drop: str = "") -> Complement:
        kind, _, arg = frame.partition(":")
        negate = bool(neg) and neg not in ("rien", "personne")
        if kind == "i":
            return Complement()
        if kind == "o":
            if drop == "object":
                return Complement()
            np_ = self.noun_phrase(arg.split("+"))
            if not negate and tense != "subj" and self.chance(0.06) and np_.det in (
                    "def", "poss", "dem"):
                clitic = "les" if np_.number == "p" else ("la" if np_.gender == "f" else "le")
                return Complement([], clitic, (np_.gender, np_.number))
            return Complement(np_.negated() if negate and verb.inf != "être" else np_.tokens)
        if kind == "oi":
            what, prep, whom = arg.split(":")
            obj = self.noun_phrase(what.split("+"), adj_p=0.15)
            dative = self.noun_phrase(whom.split("+"), dets=("def", "poss", "dem"),
                                      adj_p=0.1, depth=0)
            if self.chance(0.25):
                dative = NP([self.choice(self.lex.first_names).text], "m", "s", "person",
                            "name", 0)
            obj_t = obj.negated() if negate else obj.tokens
            return Complement(obj_t + prep_np(prep, dative.tokens))
        if kind == "p":
            prep, _, classes = arg.partition(":")
            if drop == "pobj":
                return Complement()
            if "person" in classes and self.chance(0.3):
                return Complement([prep, self.choice(self.lex.first_names).text])
            np_ = self.noun_phrase(classes.split("+"), dets=("def", "poss", "dem", "num"),
                                   adj_p=0.2)
            return Complement(prep_np(prep, np_.tokens))
        if kind == "loc":
            return Complement([] if drop == "loc" else self.location(verb).split())
        if kind == "src":
            return Complement([] if drop == "src" else self.source())
        if kind == "inf":
            group = self.infinitive_group(subject, depth + 1)
            prep = {"": [], "à": ["à"], "de": ["de"]}[arg]
            return Complement(prep + group)
        if kind == "que":
            sub = self.clause(depth=depth + 1, neg_p=0.1, tense=self.sequence_tense(tense))
            return Complement(["que"] + sub.declarative())
        if kind == "qs":
            other = self.subject(pronoun_p=0.6)
            while other.person == subject.person and other.is_pronoun:
                other = self.subject(pronoun_p=0.6)
            sub = self.clause(other, tense="subj", depth=depth + 1, neg_p=0.08)
            return Complement(["que"] + sub.declarative())
        if kind == "si":
            sub = self.clause(depth=depth + 1, neg_p=0.1, tense=self.sequence_tense(tense))
            return Complement(["si"] + sub.declarative())
        if kind == "attr":
            return Complement(self.attribute(subject, verb))
        if kind == "game":
            return Complement(self.choice(GAMES).split())
        if kind == "instr":
            n = self.choice(self.lex.nouns["instrument"])
            return Complement(prep_np("de", [("la" if n.gender == "f" else "le"), n.sg]))
        if kind == "idiom":
            return Complement(self.choice(AVOIR_IDIOMS if verb.inf == "avoir"
                                          else FAIRE_IDIOMS).split())
        if kind == "prog":
            if tense not in ("pres", "imp", "fut"):
                return Complement(self.attribute(subject, verb))
            return Complement(["en", "train", "de"] + self.infinitive_group(subject, depth + 1))
        if kind == "city":
            return Complement(self.choice([["à", self.choice(self.lex.cities)],
                                           self.country_phrase("in").split(),
                                           ["dans", "un", "petit", "village"]]))
        raise ValueError(f"unknown frame {frame!r} for {verb.inf}")

    def sequence_tense(self, main: str) -> str:
        """Tense of a subordinate clause that agrees with the main clause's tense."""
        if main in ("passe", "imp", "pqp"):
            return self.weighted({"imp": 5, "pqp": 2, "cond": 2, "passe": 1})
        if main in ("fut", "futproche"):
            return self.weighted({"pres": 2, "fut": 3, "passe": 1})
        if main == "cond":
            return self.weighted({"imp": 3, "cond": 2, "pres": 1})
        return self.weighted({"pres": 4, "passe": 3, "imp": 1, "fut": 2})

    def adverbial_tense(self, main: str) -> str:
        """Tense of a quand / parce que / pendant que clause for a given main tense."""
        if main in ("passe", "imp", "pqp"):
            return self.weighted({"imp": 4, "passe": 3, "pqp": 1})
        if main in ("fut", "futproche"):
            return self.weighted({"fut": 3, "pres": 1})
        if main == "cond":
            return "imp"
        return self.weighted({"pres": 4, "passe": 2})

    def attribute(self, subject: Subject, verb: Verb) -> list[str]:
        r = self.rng.random()
        if verb.inf == "être" and r < 0.15:
            return self.choice(ETRE_STATES).split()
        if subject.cls == "person" and r < 0.3 and verb.inf in ("être", "devenir"):
            n = self.choice([x for x in self.lex.nouns["person"] if
                             x.gender == subject.gender or subject.gender == "m"])
            if subject.gender == "f" and n.gender == "m":
                n = self.choice([x for x in self.lex.nouns["person"] if x.gender == "f"])
            return [n.form(subject.number)]
        adj = self.choice(self.predicative(subject.cls))
        out = [adj.form(subject.gender, subject.number)]
        if self.chance(0.25):
            out = [self.choice(["très", "si", "trop", "assez", "vraiment", "plutôt",
                                "tellement", "un peu", "toujours", "parfois"])] + out
        return [w for t in out for w in t.split()]

    def infinitive_group(self, subject: Subject, depth: int) -> list[str]:
        allowed = self._frames_allowed(depth)
        verb = self.pick_verb(subject.cls, exclude=frozenset({"pouvoir", "devoir", "vouloir",
                                                              "savoir", "être", "oser"}),
                              need=lambda v: any(allowed(f) for f in v.frames))
        frames = [f for f in verb.frames if allowed(f)]
        frame = self.choice(frames)
        comp = self.complement(verb, frame, subject, "inf", "", depth)
        refl = [REFLEXIVE[subject.person]] if verb.reflexive else []
        clitic = [comp.clitic] if comp.clitic else []
        return refl + clitic + [verb.inf] + comp.tokens

    def vp_for(self, np_: NP, tense: str) -> list[str]:
        """A verb phrase whose subject is `np_` ("... qui VP", "il était une fois X qui VP")."""
        subj = Subject([], np_.person, np_.gender, np_.number, np_.cls
                       if np_.cls in ("person", "animal") else "person", np_.pronoun)
        c = self.clause(subj, tense=tense, depth=1, neg_p=0.1, allow_time=False)
        return c.declarative()
