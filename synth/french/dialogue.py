"""Sentence templates addressed to someone: questions (est-ce que, inversion, wh-words),
imperatives and quotations ("« ... », dit-il", "Marie a répondu : « ... »").

Each `t_*` method returns the token list of one sentence, final punctuation included.
"""

from __future__ import annotations

from synth.french.clauses import Clauses
from synth.french.orthography import QUOTE_CLOSE, QUOTE_OPEN
from synth.french.phrasebook import (
    CLAUSE_FRAMES,
    NO_IMPERATIVE,
    QUESTION_SPEECH,
    SPEECH_VERBS,
)
from synth.french.syntax import Subject


class Dialogue(Clauses):
    """Question, imperative and quotation templates."""

    def t_question(self) -> list[str]:
        r = self.rng.random()
        q = ["?"]
        if r < 0.22:  # est-ce que
            c = self.clause(neg_p=0.15)
            return ["est-ce", "que"] + c.declarative() + q
        if r < 0.42:  # inversion
            c = self.clause(neg_p=0.12, subject=self.subject(pronoun_p=0.75))
            if c.can_invert():
                return c.inverted() + q
            return c.declarative() + q
        if r < 0.5:  # intonation, or a tag question
            c = self.clause(neg_p=0.1)
            if self.chance(0.3):
                return c.declarative() + [",", "n'est-ce", "pas"] + q
            return c.declarative() + q
        return self.wh_question() + q

    def wh_question(self) -> list[str]:
        r = self.rng.random()
        subj = self.subject(pronoun_p=0.7)
        if r < 0.2:  # où / d'où
            src = self.chance(0.25)
            verb = self.pick_verb(subj.cls, need=lambda v: ("src" if src else "loc") in v.frames)
            c = self.clause(subj, verb, frame="src" if src else "loc",
                            drop="src" if src else "loc", neg_p=0.05)
            head = ["d'où"] if src else ["où"]
        elif r < 0.45:
            head = self.choice([["quand"], ["comment"], ["pourquoi"], ["à", "quelle", "heure"],
                                ["depuis", "quand"], ["avec", "qui"], ["pour", "qui"],
                                ["à", "quel", "moment"], ["combien", "de", "fois"]])
            c = self.clause(subj, neg_p=0.15 if head == ["pourquoi"] else 0.03,
                            allow_time=False)
        elif r < 0.62:  # que / qu'est-ce que: questioned direct object
            verb = self.pick_verb(subj.cls, need=lambda v: any(f.startswith("o:")
                                                                for f in v.frames))
            frame = self.choice([f for f in verb.frames if f.startswith("o:")])
            c = self.clause(subj, verb, frame=frame, drop="object", neg_p=0.03)
            if c.can_invert() and c.subject.is_pronoun and self.chance(0.5):
                return ["que"] + c.inverted()
            return ["qu'est-ce", "que"] + c.declarative()
        elif r < 0.72:  # qui + verb phrase
            who = Subject(["qui"], 2, "m", "s", "person", "")
            c = self.clause(who, neg_p=0.05)
            return c.declarative()
        elif r < 0.88:  # combien de / quel + noun as direct object (participle agreement)
            verb = self.pick_verb(subj.cls, need=lambda v: any(f.startswith("o:")
                                                                for f in v.frames))
            frame = self.choice([f for f in verb.frames if f.startswith("o:")])
            np_ = self.noun_phrase(frame[2:].split("+"), adj_p=0.0, depth=0,
                                   number="p" if self.chance(0.6) else "s")
            if self.chance(0.5) or np_.number == "s":
                q = {"ms": "quel", "fs": "quelle", "mp": "quels", "fp": "quelles"}[
                    np_.gender + np_.number]
                head = [q] + np_.bare()
            else:
                head = ["combien", "de"] + np_.bare()
            c = self.clause(subj, verb, frame=frame, drop="object", neg_p=0.0,
                            agree=(np_.gender, np_.number), allow_time=self.chance(0.5))
        else:  # de quoi / à quoi / à qui
            verb = self.pick_verb(subj.cls, need=lambda v: any(f.startswith(("p:de", "p:à"))
                                                                for f in v.frames))
            frame = self.choice([f for f in verb.frames if f.startswith(("p:de", "p:à"))])
            prep = frame.split(":")[1]
            head = [prep, "qui" if "person" in frame and self.chance(0.5) else "quoi"]
            c = self.clause(subj, verb, frame=frame, drop="pobj", neg_p=0.03)
        if c.can_invert() and self.chance(0.7):
            return head + c.inverted()
        return head + ["est-ce", "que"] + c.declarative()

    def t_imperative(self) -> list[str]:
        k = self.weighted({0: 5, 2: 3.5, 1: 1.5})  # index into (tu, nous, vous) forms
        person = (1, 3, 4)[k]
        subj = Subject([], person, self.choice("mf"), "s" if person == 1 else "p")
        verb = self.pick_verb(exclude=NO_IMPERATIVE,
                              need=lambda v: any(f not in CLAUSE_FRAMES for f in v.frames))
        frame = self.choice([f for f in verb.frames if f not in CLAUSE_FRAMES])
        neg = self.chance(0.25)
        comp = self.complement(verb, frame, subj, "pres", "pas" if neg else "", 1)
        form = verb.imperative[k]
        refl_aff = ("toi", "nous", "vous")[k]
        refl_neg = ("te", "nous", "vous")[k]
        if neg:
            pre = ([refl_neg] if verb.reflexive else []) + ([comp.clitic] if comp.clitic
                                                            else [])
            toks = ["ne"] + pre + [form, "pas"] + comp.tokens
        else:
            suffix = ("-" + refl_aff) if verb.reflexive else ""
            if comp.clitic:
                suffix = "-" + comp.clitic + suffix
            toks = [form + suffix] + comp.tokens
        if self.chance(0.25):
            toks += [",", "s'il", "te" if k == 0 else "vous", "plaît"]
        elif self.chance(0.15):
            toks = [self.choice(self.lex.first_names).text, ","] + toks
        return toks + ["!" if self.chance(0.4) else "."]

    def t_quote(self) -> list[str]:
        r = self.rng.random()
        if r < 0.35:
            inner = self.t_question()
        elif r < 0.6:
            inner = self.t_imperative()
        else:
            inner = self.clause(neg_p=0.2).declarative() + [self.end(0.3)]
        final = inner[-1]
        body = inner[:-1] if final == "." else inner
        if self.chance(0.35):  # "X a dit : « ... »"
            subj = self.subject(pronoun_p=0.4)
            verb = self.lex.verbs_by_inf[self.choice(["dire", "répondre", "écrire"])]
            aux = self.lex.verbs_by_inf["avoir"].present[subj.person]
            intro = subj.tokens + [aux, verb.participle]
            end = ["."] if final == "." else []
            return intro + [":", QUOTE_OPEN] + body + [QUOTE_CLOSE] + end
        speech = QUESTION_SPEECH if final == "?" else SPEECH_VERBS
        simple, present = self.choice(speech)
        form = self.choice([simple, present])
        if self.chance(0.5):
            pron = self.choice(["il", "elle"])  # the speech verbs are 3rd person singular
            refl, _, bare = form.rpartition("'")
            link = "-t-" if bare[-1] in "ae" else "-"
            speaker = [(refl + "'" if refl else "") + bare + link + pron]
        else:
            toks, g, n = self.name()
            if n == "p":
                toks = toks[:1]
            speaker = [form] + toks
            if self.chance(0.4):
                speaker = [form] + self.noun_phrase(["person"], dets=("def", "poss"),
                                                    number="s", adj_p=0.1, depth=0).tokens
        sep = [","] if final == "." else []
        return [QUOTE_OPEN] + body + [QUOTE_CLOSE] + sep + speaker + ["."]
