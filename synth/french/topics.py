"""Sentence templates with a fixed frame on a theme: "il y a ...", attributes and
exclamations, weather, encyclopedic and parliamentary sentences, comparisons, numbers
(ages, dates, clock times, quantities, prices).

The number-bearing ones are also the templates a digits sentence is drawn from.
Each `t_*` method returns the token list of one sentence, final punctuation included.
"""

from __future__ import annotations

from synth.french.clauses import Clauses
from synth.french.numbers import ordinal
from synth.french.orthography import starts_with_vowel
from synth.french.phrasebook import MONUMENTS
from synth.french.syntax import Subject


class Topics(Clauses):
    """Themed sentence templates."""

    def t_existential(self) -> list[str]:
        r = self.rng.random()
        tense_form = self.weighted({"a": 5, "avait": 2, "aura": 1, "aurait": 0.5})
        cls = self.choice(["animal", "object", "food", "person", "nature", "plant", "vehicle",
                           "place"])
        where = self.location().split() if self.chance(0.8) else []
        if r < 0.2:
            np_ = self.noun_phrase([cls], dets=("indef",), adj_p=0.3, depth=0)
            neg = self.choice(["pas", "plus", "jamais"])
            return ["il", "n'y", tense_form, neg] + np_.negated() + where + ["."]
        if r < 0.3:
            n = self.small_number()
            noun = self.noun([cls])
            while noun.mass:
                noun = self.noun([cls])
            return (["il", "y", tense_form, self.number(n, noun.gender == "f"),
                     noun.pl] + where + ["."])
        np_ = self.noun_phrase([cls], dets=("indef", "num", "quant"), adj_p=0.35)
        if np_.det == "quant" and np_.number == "s":
            np_ = self.noun_phrase([cls], dets=("indef",), adj_p=0.35)
        head = ["il", "y", tense_form]
        if self.chance(0.1):
            head = ["il", "était", "une", "fois"]
            np_ = self.noun_phrase(["person", "animal"], dets=("indef",), number="s",
                                   adj_p=0.5)
            return head + np_.tokens + ["qui"] + self.vp_for(np_, "imp") + ["."]
        return head + np_.tokens + where + [self.end()]

    def t_attribute(self) -> list[str]:
        cls = self.choice(["person", "animal", "object", "food", "place", "nature", "plant",
                           "abstract", "time", "text", "clothing", "drink", "vehicle"])
        np_ = self.noun_phrase([cls], dets=("def", "poss", "dem"), adj_p=0.15)
        adjs = self.adj_by_class[cls]
        adj = self.choice(self.predicative(cls)).form(np_.gender, np_.number)
        r = self.rng.random()
        if r < 0.15:
            return ["comme"] + np_.tokens + [("sont" if np_.number == "p" else "est"), adj, "!"]
        if r < 0.25:
            noun = self.noun([cls])
            a = self.choice(adjs)
            q = {"ms": "quel", "fs": "quelle", "mp": "quels", "fp": "quelles"}[
                noun.gender + np_.number]
            head = noun.form(np_.number)
            if a.pre:
                return [q, a.form(noun.gender, np_.number, starts_with_vowel(head)), head, "!"]
            return [q, head, a.form(noun.gender, np_.number), "!"]
        verb = self.weighted({"être": 6, "sembler": 1.5, "devenir": 1, "rester": 1,
                              "paraître": 0.5})
        subj = Subject(np_.tokens, np_.person, np_.gender, np_.number, "person", np_.pronoun)
        v = self.lex.verbs_by_inf.get(verb) or self.lex.verbs_by_inf["sembler"]
        tense = self.weighted({"pres": 5, "imp": 2, "passe": 1, "fut": 1, "cond": 0.5})
        neg = self.chance(0.15)
        if tense == "passe":
            aux = self.lex.verbs_by_inf["être" if v.aux == "être" else "avoir"]
            verb_t = [aux.present[np_.person]] + (["pas"] if neg else []) + [
                self.participle(v, subj, None)]
        else:
            verb_t = [v.tense(tense)[np_.person]] + (["pas"] if neg else [])
        if neg:
            verb_t = ["ne"] + verb_t
        intens = [self.choice(["très", "si", "trop", "assez", "vraiment", "plutôt",
                               "tellement", "un peu", "toujours", "bien"])] \
            if self.chance(0.3) else []
        tail = []
        if self.chance(0.2):
            tail = self.time_for(tense).split()
        elif self.chance(0.15):
            tail = ["aujourd'hui"] if tense == "pres" else []
        return self.opener(0.08) + np_.tokens + verb_t + intens + [adj] + tail + [self.end()]

    def t_weather(self) -> list[str]:
        tense = self.weighted({"pres": 4, "imp": 2, "fut": 2, "passe": 1})
        forms = {
            "pres": ["il pleut", "il neige", "il fait beau", "il fait froid", "il fait chaud",
                     "il fait nuit", "il y a du vent", "il y a du brouillard", "il gèle",
                     "il fait doux", "le soleil brille", "il fait un temps magnifique"],
            "imp": ["il pleuvait", "il neigeait", "il faisait beau", "il faisait froid",
                    "il faisait chaud", "il y avait du vent", "il gelait",
                    "le ciel était gris", "il faisait déjà nuit"],
            "fut": ["il pleuvra", "il neigera", "il fera beau", "il fera froid",
                    "il fera chaud", "il y aura du vent", "il gèlera", "le ciel sera couvert"],
            "passe": ["il a plu", "il a neigé", "il a fait beau", "il a fait très chaud",
                      "il y a eu un orage", "il a gelé"],
        }[tense]
        toks = self.choice(forms).split()
        if self.chance(0.7):
            toks += self.time_for(tense).split()
        if self.chance(0.6):
            toks += self.choice(["à " + self.choice(self.lex.cities), "en " + self.choice(
                self.lex.regions), "sur la côte", "dans les montagnes", "sur toute la France",
                "dans le nord du pays", "au bord de la mer", "en altitude",
                "dans la vallée"]).split()
        if self.chance(0.3):
            toks += self.choice([[",", "alors", "prends", "ton", "parapluie"],
                                 [",", "mais", "il", "fera", "meilleur", "demain"],
                                 [",", "comme", "d'habitude"],
                                 ["depuis", "plusieurs", "jours"]])
        return self.opener(0.1) + toks + [self.end()]

    def t_encyclopedic(self) -> list[str]:
        r = self.rng.random()
        first = self.choice(self.lex.first_names)
        person = [first.text, self.choice(self.lex.surnames)]
        fem = first.gender == "f"
        city = self.choice(self.lex.cities)
        if r < 0.2:
            toks = person + ["est", "née" if fem else "né", "à", city, "en", self.year()]
            if self.chance(0.4):
                toks += [",", "dans", "une", "famille", self.choice(
                    ["modeste", "nombreuse", "de musiciens", "d'agriculteurs",
                     "de commerçants", "bourgeoise", "d'artistes"])]
            return toks + ["."]
        if r < 0.32:
            what = self.choice(["son premier roman", "un recueil de poèmes",
                                "une biographie", "plusieurs essais", "un livre de cuisine",
                                "sa thèse", "un album", "un court métrage"])
            verb = self.choice(["a publié", "publie", "a présenté", "a réalisé", "signe"])
            return person + verb.split() + what.split() + ["en", self.year(), "."]
        if r < 0.45:
            region = self.choice(self.lex.regions)
            kind = self.choice(["une ville", "une commune", "un village", "une petite ville",
                                "un port", "une cité"])
            e = "e" if kind.split()[0] == "une" else ""
            return ([city, "est"] + kind.split() + self.choice(
                [["située" if e else "situé", "en", region], ["du", "sud", "de", "la", "France"],
                 ["connu" + e, "pour", "son", "marché", "de", "Noël"],
                 ["célèbre", "pour", "son", "château"],
                 ["qui", "compte", "environ", self.number(self.rng.randint(2, 900) * 100),
                  "habitants"]]) + ["."])
        if r < 0.55:
            river = self.choice(self.lex.rivers)
            art = "la" if river.gender == "f" else "le"
            return ([art, river.text, "traverse", "la", "ville", "de", city] +
                    self.choice([[], ["avant", "de", "se", "jeter", "dans", "la", "mer"],
                                 ["du", "nord", "au", "sud"], ["sur", "plusieurs",
                                                               "kilomètres"]]) + ["."])
        if r < 0.7:
            place, gender = self.choice(MONUMENTS)
            built = "construite" if gender == "f" else "construit"
            restored = "restaurée" if gender == "f" else "restauré"
            century = ordinal(self.rng.randint(10, 20))
            return place.split() + self.choice(
                [["a", "été", built, "au", century, "siècle"],
                 ["date", "du", century, "siècle"],
                 ["a", "été", restored, "en", self.year()],
                 ["se", "trouve", "au", "centre", "de", city]]) + ["."]
        if r < 0.85:
            team = ["l'équipe", "de", city]
            return team + self.choice([["a", "remporté", "le", "championnat", "en",
                                        self.year()],
                                       ["a", "gagné", "le", "match", "par",
                                        self.number(self.rng.randint(2, 5)), "buts", "à",
                                        self.number(self.rng.randint(0, 1))],
                                       ["joue", "ses", "matchs", "au", "stade", "municipal"]]) \
                + ["."]
        if self.chance(0.5):
            years = self.number(self.rng.randint(2, 40))
            return person + ["a", "vécu", "à", city, "pendant", years, "ans", "."]
        age = self.number(self.rng.randint(18, 99))
        return person + ["avait", age, "ans", "quand", "elle" if fem else "il", "a",
                         "quitté", city, "."]

    def t_parliament(self) -> list[str]:
        r = self.rng.random()
        title = self.choice(["monsieur le président", "madame la présidente",
                             "monsieur le ministre", "madame la ministre",
                             "mes chers collègues", "madame la rapporteure",
                             "monsieur le rapporteur"]).split()
        if r < 0.3:
            return title + [","] + self.clause(neg_p=0.15, depth=1).declarative() + ["."]
        if r < 0.45:
            return ["cet", "amendement"] + self.choice(
                [["a", "été", "adopté", "par", "la", "commission"],
                 ["vise", "à", "supprimer", "cet", "article"],
                 ["est", "satisfait", "par", "le", "texte", "actuel"],
                 ["n'a", "pas", "été", "défendu", "en", "commission"],
                 ["tend", "à", "préciser", "la", "rédaction", "de", "l'alinéa"]]) + ["."]
        if r < 0.55:
            g = self.choice(["monsieur", "madame"])
            return ["la", "parole", "est", "à", g, self.choice(self.lex.surnames), "."] \
                if self.chance(0.5) else ["je", "donne", "la", "parole", "à", g,
                                          self.choice(self.lex.surnames), "."]
        if r < 0.65:
            return ["la", "séance", "est", self.choice(["levée", "suspendue", "reprise",
                                                        "ouverte"]),
                    "à", self.number(self.rng.randint(9, 23), True), "heures", "."]
        if r < 0.75:
            return ["quel", "est", "l'avis", "de", "la", self.choice(
                ["commission", "rapporteure", "commission des finances"]),
                "sur", "cet", self.choice(["amendement", "article"]), "?"]
        if r < 0.85:
            return ["le", "gouvernement", "est", self.choice(["favorable", "défavorable"]),
                    "à", "cette", self.choice(["proposition", "réforme", "mesure"]), "."]
        return ["je", "vous", "remercie", ","] + title + ["."]

    def t_comparison(self) -> list[str]:
        cls = self.choice(["person", "animal", "object", "place", "food", "nature", "plant"])
        a = self.noun_phrase([cls], dets=("def", "poss", "dem"), adj_p=0.0)
        b = self.noun_phrase([cls], dets=("def", "poss", "dem"), adj_p=0.0)
        adj = self.choice(self.predicative(cls)).form(a.gender, a.number)
        est = "sont" if a.number == "p" else "est"
        if self.chance(0.1):  # superlative + subjunctive: "que j'aie jamais vue"
            n = self.noun([cls])
            art = "la" if n.gender == "f" else "le"
            sup_adj = self.choice(self.predicative(cls)).form(n.gender, "s")
            seen = "vue" if n.gender == "f" else "vu"
            return ["c'est", art, n.sg, art, "plus", sup_adj, "que", "j'aie", "jamais",
                    seen, "."]
        if self.chance(0.1):  # superlative in a group: "la plus belle de la région"
            art = "les" if a.number == "p" else ("la" if a.gender == "f" else "le")
            return a.tokens + [est, art, "plus", adj] + self.choice(
                [["de", "la", "région"], ["du", "quartier"], ["de", "tous"],
                 ["du", "monde"]]) + ["."]
        comp = self.weighted({"plus": 3, "moins": 2, "aussi": 2})
        return a.tokens + [est, comp, adj, "que"] + b.tokens + [self.end()]

    def t_numbers(self) -> list[str]:
        r = self.rng.random()
        if r < 0.2:
            age = self.rng.randint(2, 99)
            s = self.subject(pronoun_p=0.3)
            have = self.lex.verbs_by_inf["avoir"]
            tense = self.choice(["pres", "pres", "imp", "fut"])
            return s.tokens + [have.tense(tense)[s.person], self.number(age), "ans", "."]
        if r < 0.35:
            return ["nous", "sommes", "le"] + self.date().split()[1:] + [
                self.year() if self.chance(0.3) else "", "."]
        if r < 0.5:
            h = self.rng.randint(1, 11)
            hours = "heure" if h == 1 else "heures"
            return ["il", "est", self.number(h, feminine=True), hours] + self.choice(
                [[], ["pile"], ["du", "matin"], ["du", "soir"], ["et", "demie"],
                 ["et", "quart"], ["moins", "le", "quart"], ["passées"]]) + ["."]
        if r < 0.62:
            toks = self.choice([["mon", "anniversaire", "est"], ["le", "concert", "aura",
                                                                  "lieu"],
                                ["la", "réunion", "est", "prévue"], ["le", "rendez-vous",
                                                                    "est", "fixé"],
                                ["les", "vacances", "commencent"]])
            return toks + self.date().split() + ["."]
        if r < 0.78:
            s = self.subject(pronoun_p=0.6)
            have = self.lex.verbs_by_inf["avoir"]
            a, b = self.noun(["person", "animal"]), self.noun(["person", "animal"])
            na, nb = self.rng.randint(2, 12), self.rng.randint(2, 12)
            return s.tokens + [have.present[s.person], self.number(na, a.gender == "f"),
                               a.pl, "et", self.number(nb, b.gender == "f"), b.pl, "."]
        if r < 0.9:
            n = self.rng.randint(2, 500)
            noun = self.noun(["object", "food", "text", "vehicle"])
            s = self.subject(pronoun_p=0.5)
            v = self.lex.verbs_by_inf[self.choice(["acheter", "vendre", "compter",
                                                   "commander", "livrer"])]
            if noun.cls == "text":
                v = self.lex.verbs_by_inf["lire"]
            tense = self.choice(["pres", "passe", "fut"])
            c = self.clause(s, v, tense=tense, frame="i", neg_p=0.0, allow_time=False)
            c.rest = [self.number(n, noun.gender == "f"), noun.pl]
            c.mid = []
            if tense == "passe":
                c.post = [v.participle_form()]
            return c.declarative() + ["."]
        price = self.rng.randint(2, 300)
        np_ = self.noun_phrase(["object", "clothing", "food", "vehicle"], dets=("def", "dem"),
                               adj_p=0.2, depth=0)
        verb = "coûtent" if np_.number == "p" else "coûte"
        return np_.tokens + [verb, self.number(price), self.choice(["euros", "francs",
                                                                    "dollars"]), "."]
