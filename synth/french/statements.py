"""Sentence templates built on clauses: statements, complex sentences, reported speech,
clefts ("c'est ... qui"), "ça ..." sentences and subjects carrying a relative clause.

Each `t_*` method returns the token list of one sentence, final punctuation included.
"""

from __future__ import annotations

from synth.french.clauses import Clauses
from synth.french.orthography import prep_np
from synth.french.phrasebook import CLAUSE_FRAMES, INF_FRAMES, REFLEXIVE, TENSE_WEIGHTS
from synth.french.syntax import Subject


class Statements(Clauses):
    """Declarative sentence templates."""

    def t_statement(self) -> list[str]:
        c = self.clause(neg_p=0.2)
        toks = c.declarative()
        if self.chance(0.15):
            # Move a trailing time adverbial to the front: "Hier, ..."
            t = self.time_for("pres").split()
            toks = t + [","] + self.clause(neg_p=0.2, tense="pres",
                                           allow_time=False).declarative()
        return self.opener() + toks + [self.end()]

    def t_complex(self) -> list[str]:
        r = self.rng.random()
        if r < 0.3:  # coordination
            a = self.clause(depth=1, neg_p=0.15)
            b = self.clause(depth=1, neg_p=0.15, allow_time=False)
            conj = self.weighted({(",", "mais"): 4, ("et",): 3, (",", "car"): 1,
                                  (",", "donc"): 1, (";",): 1, (",", "puis"): 1,
                                  (",", "alors"): 1, (",", "et", "pourtant"): 0.5,
                                  (":",): 0.5, (",", "sinon"): 0.3})
            return a.declarative() + list(conj) + b.declarative() + [self.end()]
        if r < 0.45:  # conditional
            if self.chance(0.55):
                cond_t, main_t = "pres", self.choice(["fut", "pres", "futproche"])
            else:
                cond_t, main_t = "imp", "cond"
            a = self.clause(tense=cond_t, depth=1, neg_p=0.1, allow_time=False)
            b = self.clause(tense=main_t, depth=1, neg_p=0.1)
            if self.chance(0.7):
                return ["si"] + a.declarative() + [","] + b.declarative() + [self.end()]
            return b.declarative() + ["si"] + a.declarative() + [self.end()]
        if r < 0.58:  # subjunctive subordinate
            conj = self.choice(["bien que", "pour que", "avant que", "jusqu'à ce que",
                                "à moins que", "sans que", "afin que", "quoique"])
            main = self.clause(depth=1, neg_p=0.1,
                               tense=self.choice(["pres", "fut", "passe", "futproche"]))
            sub = self.clause(tense="subj", depth=1, neg_p=0.1, allow_time=False)
            conj_t = conj.replace("jusqu'à", "jusque à").split()
            if conj in ("bien que", "quoique") and self.chance(0.5):
                return conj_t + sub.declarative() + [","] + main.declarative() + [self.end()]
            return main.declarative() + conj_t + sub.declarative() + [self.end()]
        if r < 0.68:  # infinitive adjunct
            subj = self.subject()
            main = self.clause(subj, depth=1, neg_p=0.1,
                               tense=self.choice(["passe", "pres", "fut", "imp"]))
            form = self.choice(["avant de", "pour", "sans", "au lieu de", "afin de",
                                "après"])
            if form == "après":
                verb = self.pick_verb(subj.cls, exclude=frozenset({"pouvoir", "devoir",
                                                                   "vouloir", "savoir"}),
                                      need=lambda v: not any(f in CLAUSE_FRAMES or f in
                                                             INF_FRAMES for f in v.frames))
                aux = "être" if (verb.aux == "être" or verb.reflexive) else "avoir"
                refl = [REFLEXIVE[subj.person]] if verb.reflexive else []
                frames = [f for f in verb.frames if f not in CLAUSE_FRAMES | INF_FRAMES]
                comp = self.complement(verb, self.choice(frames), subj, "passe", "", 2)
                pp = self.participle(verb, subj, comp.agree)
                clitic = [comp.clitic] if comp.clitic else []
                adj = ["après"] + refl + clitic + [aux, pp] + comp.tokens
            else:
                adj = form.split() + self.infinitive_group(subj, 2)
            return adj + [","] + main.declarative() + [self.end()]
        # indicative subordinate
        conj = self.choice(["quand", "lorsque", "parce que", "puisque", "pendant que",
                            "dès que", "alors que", "depuis que", "tandis que", "même si",
                            "comme", "une fois que", "aussitôt que", "tant que"])
        main_t = self.weighted(TENSE_WEIGHTS)
        if main_t == "recent":
            main_t = "pres"
        main = self.clause(depth=1, neg_p=0.12, tense=main_t)
        if conj == "depuis que":
            sub_t = "passe" if main_t in ("pres", "futproche") else "pqp"
        elif conj in ("dès que", "une fois que", "aussitôt que", "quand", "lorsque") \
                and main_t in ("fut", "futproche"):
            sub_t = "fut"
        else:
            sub_t = self.adverbial_tense(main_t)
        sub = self.clause(depth=1, neg_p=0.12, allow_time=False, tense=sub_t)
        if conj in ("parce que", "tandis que", "alors que") or self.chance(0.4):
            return main.declarative() + conj.split() + sub.declarative() + [self.end()]
        return conj.split() + sub.declarative() + [","] + main.declarative() + [self.end()]

    def t_reported(self) -> list[str]:
        verb = self.lex.verbs_by_inf[self.choice(["dire", "penser", "croire", "savoir",
                                                  "espérer", "remarquer", "expliquer",
                                                  "annoncer", "imaginer", "découvrir",
                                                  "apprendre", "comprendre", "promettre",
                                                  "répondre", "oublier", "deviner"])]
        head = self.opener(0.08)
        if self.chance(0.15):
            head += ["peut-être", "que"]
            return head + self.clause(depth=1).declarative() + [self.end()]
        c = self.clause(verb=verb, frame="que", neg_p=0.1,
                        tense=self.choice(["pres", "passe", "imp", "fut"]))
        return head + c.declarative() + [self.end()]

    def t_cleft(self) -> list[str]:
        r = self.rng.random()
        if r < 0.35:
            if self.chance(0.4):
                toks, g, n = self.name()
                s = Subject(toks, 5 if n == "p" else 2, g, n)
            else:
                np_ = self.noun_phrase(["person", "animal"], dets=("def", "poss", "dem"),
                                       depth=0)
                s = Subject(np_.tokens, np_.person, np_.gender, np_.number, np_.cls)
            who = Subject(["qui"], s.person, s.gender, s.number, s.cls, "")
            c = self.clause(who, depth=1, neg_p=0.1)
            head = ["ce", "sont"] if s.number == "p" else ["c'est"]
            return head + s.tokens + c.declarative() + [self.end()]
        if r < 0.55:
            cls = self.choice(["abstract", "place", "food", "time", "text", "object"])
            np_ = self.noun_phrase([cls], dets=("indef",), number="s", adj_p=0.7)
            head = self.choice([["c'est"], ["c'était"], ["ce", "n'est", "pas"],
                                ["ce", "sera"], ["c'est", "peut-être"],
                                ["ce", "n'était", "pas"]])
            return head + np_.tokens + [self.end(0.15)]
        if r < 0.7:
            return ["c'est-à-dire", "que"] + self.clause(depth=1).declarative() + ["."]
        if r < 0.85:
            return ["c'est", "à", self.choice(self.lex.first_names).text, "de",
                    self.choice(["jouer", "parler", "choisir", "décider", "commencer",
                                 "répondre"])] + ["!" if self.chance(0.4) else "."]
        adj = self.choice(["facile", "difficile", "important", "dommage", "normal",
                           "étonnant", "impossible", "dangereux", "agréable", "inutile"])
        return ["c'est", adj, "de"] + self.infinitive_group(self.subject(), 1) + [self.end()]

    def t_ca(self) -> list[str]:
        r = self.rng.random()
        if r < 0.25:
            return ["ça"] + self.choice([["me", "plaît", "beaucoup"],
                                         ["ne", "fait", "rien"], ["sent", "bon"],
                                         ["vaut", "la", "peine"], ["ne", "me", "dérange",
                                                                   "pas"],
                                         ["m'étonnerait", "beaucoup"]]) + self.choice(
                [[], [",", "tu", "sais"], [",", "je", "t'assure"], self.time_for(
                    "pres").split()]) + ["."]
        if r < 0.5:
            np_ = self.noun_phrase(["abstract", "time", "person"], dets=("def", "poss"),
                                   depth=0)
            return ["ça", "dépend"] + prep_np("de", np_.tokens) + ["."]
        if r < 0.75:
            n = self.rng.randint(2, 20)
            unit = self.choice(["jours", "ans", "mois", "semaines", "heures", "minutes"])
            return ["ça", "fait", self.number(n), unit, "que"] + self.clause(
                depth=1, tense="pres", neg_p=0.3, allow_time=False).declarative() + ["."]
        return ["ça", "va", "mieux", "depuis", "que"] + self.clause(
            depth=1, tense="passe", allow_time=False).declarative() + [self.end()]

    def t_relative(self) -> list[str]:
        """Sentences whose subject carries a relative clause."""
        r = self.rng.random()
        if r < 0.4:  # qui
            cls = self.choice(["person", "person", "animal"])
            np_ = self.noun_phrase([cls], dets=("def", "dem", "indef"), adj_p=0.2, depth=0)
            rel = ["qui"] + self.vp_for(np_, self.choice(["pres", "passe", "imp"]))
        elif r < 0.75:  # que, with participle agreement
            cls = self.choice(["object", "text", "food", "clothing", "place", "animal"])
            np_ = self.noun_phrase([cls], dets=("def", "dem"), adj_p=0.1, depth=0)
            verbs = [v for v in self.verbs if any(f.startswith("o:") and cls in f[2:].split("+")
                                                  for f in v.frames)]
            verb = self.choice(verbs)
            frame = next(f for f in verb.frames if f.startswith("o:") and cls in
                         f[2:].split("+"))
            c = self.clause(self.subject(pronoun_p=0.7), verb, frame=frame, drop="object",
                            tense=self.choice(["passe", "pres", "passe", "imp"]),
                            agree=(np_.gender, np_.number), neg_p=0.0, allow_time=False,
                            depth=1)
            rel = ["que"] + c.declarative()
        else:  # où / dont
            if self.chance(0.5):
                np_ = self.noun_phrase(["place", "time"], dets=("def",), number="s",
                                       adj_p=0.1, depth=0)
                rel = ["où"] + self.clause(depth=2, neg_p=0.05, allow_time=False,
                                           tense=self.choice(["pres", "passe", "imp"])
                                           ).declarative()
            else:
                np_ = self.noun_phrase(["person", "abstract", "text", "place"],
                                       dets=("def", "dem"), adj_p=0.1, depth=0)
                s = self.subject(pronoun_p=0.8)
                v = self.choice(["parler", "rêver"])
                verb = self.lex.verbs_by_inf[v]
                c = self.clause(s, verb, frame="i", tense=self.choice(["pres", "passe", "imp"]),
                                neg_p=0.0, allow_time=False, depth=2)
                c.rest = []
                rel = ["dont"] + c.declarative()
        # Main predicate about the noun phrase.
        subj = Subject([], np_.person, np_.gender, np_.number,
                       np_.cls if np_.cls in ("person", "animal") else "thing", np_.pronoun)
        if np_.cls in ("person", "animal") and self.chance(0.6):
            pred = self.clause(subj, depth=1, neg_p=0.1, allow_time=self.chance(0.3))
            return np_.tokens + rel + pred.declarative() + [self.end()]
        adj = self.choice(self.predicative(np_.cls)).form(np_.gender, np_.number)
        be = self.lex.verbs_by_inf["être"]
        tense = self.choice(["pres", "imp", "pres"])
        return np_.tokens + rel + [be.tense(tense)[np_.person]] + (
            [self.choice(["très", "vraiment", "assez", "plutôt", "trop"])]
            if self.chance(0.3) else []) + [adj, self.end()]
