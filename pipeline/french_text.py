"""Deterministic French sentence generator for the synthetic demo corpus.

`generate_sentences(n, seed)` returns n distinct French sentences built by a small
grammar over the hand-written lexicon of `pipeline.french_lexicon`:

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
"""

from __future__ import annotations

import random
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Callable, Sequence

from pipeline.french_lexicon import (
    Lexicon,
    Noun,
    Verb,
    lexicon,
    number_to_words,
    starts_with_vowel,
)

MIN_WORDS = 4
MAX_WORDS = 20
DIGIT_SENTENCE_RATE = 0.02  # sentences that write a number in digits (~1.5 % kept)
TYPOGRAPHIC_APOSTROPHE_RATE = 0.3  # ’ instead of '
FRENCH_SPACING_RATE = 0.75  # "Tu viens ?" rather than "Tu viens?"
STRAIGHT_QUOTES_RATE = 0.3  # "..." instead of « ... »
MAX_ATTEMPTS_PER_SENTENCE = 50
SHORT_WORDS = 8  # sentences shorter than this are kept only with SHORT_KEEP_RATE,
SHORT_KEEP_RATE = 0.35  # which moves the mean length towards Common Voice's ~10 words

PRONOUNS = ("je", "tu", "il", "nous", "vous", "ils")
REFLEXIVE = ("me", "te", "se", "nous", "vous", "se")
STRESSED = ("moi", "toi", "lui", "nous", "vous", "eux")
POSSESSIVE = {  # person -> (m sg / f sg before vowel, f sg, plural)
    0: ("mon", "ma", "mes"), 1: ("ton", "ta", "tes"), 2: ("son", "sa", "ses"),
    3: ("notre", "notre", "nos"), 4: ("votre", "votre", "vos"), 5: ("leur", "leur", "leurs"),
}
CONTRACTIONS = {("à", "le"): "au", ("à", "les"): "aux", ("de", "le"): "du", ("de", "les"): "des"}
ELIDING = frozenset({"le", "la", "de", "je", "me", "te", "se", "ne", "que", "jusque",
                     "lorsque", "puisque", "ce"})
PUNCT_NO_SPACE_BEFORE = frozenset({",", ".", "..."})
PUNCT_FRENCH_SPACE = frozenset({"?", "!", ";", ":"})
QUOTE_OPEN, QUOTE_CLOSE = "«", "»"
PUNCTUATION = PUNCT_NO_SPACE_BEFORE | PUNCT_FRENCH_SPACE | {QUOTE_OPEN, QUOTE_CLOSE}

TENSE_WEIGHTS = {"pres": 40, "passe": 22, "imp": 12, "fut": 10, "cond": 4, "futproche": 6,
                 "recent": 2, "pqp": 3}
# Time adverbials and the tenses they fit: P present, A passé composé, I imperfect, F future.
TIME_EXPRESSIONS = """
hier|AI ; avant-hier|A ; hier soir|AI ; hier matin|AI ; la semaine dernière|AI ;
le mois dernier|AI ; l'année dernière|AI ; l'été dernier|AI ; lundi dernier|A ;
samedi dernier|A ; autrefois|I ; à cette époque|I ; il y a longtemps|AI ; ce matin|PAF ;
tout à l'heure|AF ; la veille|AI ; récemment|A ; pendant les vacances|AIF ;
l'hiver dernier|AI ; demain|F ; après-demain|F ; demain matin|F ; demain soir|F ;
la semaine prochaine|F ; le mois prochain|F ; l'année prochaine|F ; l'été prochain|F ;
lundi prochain|F ; bientôt|F ; plus tard|F ; ce soir|PF ; cet après-midi|PAF ;
un jour|AF ; à la rentrée|F ; aujourd'hui|PAF ; maintenant|P ; en ce moment|PF ;
tous les jours|PI ; chaque matin|PI ; chaque semaine|PIF ; souvent|PI ; d'habitude|PI ;
le dimanche|PI ; le samedi matin|PI ; toute la journée|PAIF ; depuis ce matin|P ;
le soir|PI ; la nuit|PI ; en hiver|PIF ; en été|PIF ; au printemps|PIF ; en automne|PIF ;
à midi|PAIF ; vers minuit|PAIF ; lundi|PAF ; mardi|PAF ; mercredi|PAF ; jeudi|PAF ;
vendredi|PAF ; samedi|PAF ; dimanche|PAF ; en août|PAIF ; en février|PAIF ;
en décembre|PAIF ; à Noël|PAIF ; à Pâques|PAIF ; le matin|PI ; l'après-midi|PI ;
pendant la nuit|PAIF ; avant le dîner|PAF ; après le travail|PAIF ; au petit matin|PAF ;
à l'aube|PAIF ; au coucher du soleil|PAIF ; chaque été|PI ; tous les matins|PI ;
depuis toujours|P ; jadis|I ; dans la soirée|PAF ; à la fin du mois|PAF ; ce week-end|PAF
"""
TENSE_TIME_TAG = {"pres": "P", "passe": "A", "pqp": "A", "imp": "I", "fut": "F",
                  "futproche": "F", "cond": "F", "recent": "P", "subj": "P"}

MID_ADVERBS = ("souvent", "toujours", "déjà", "encore", "bien", "vraiment", "beaucoup",
               "enfin", "aussi", "vite", "rarement", "parfois")
# Adverbs that fit with être / devenir + attribute ("elle est souvent fatiguée").
MID_ADVERBS_ATTR = ("toujours", "souvent", "déjà", "encore", "vraiment", "parfois", "aussi",
                    "enfin", "rarement")
# Adverbs that may follow "ne ... pas" ("il ne mange pas beaucoup").
MID_ADVERBS_NEGATED = ("souvent", "toujours", "bien", "vraiment", "beaucoup", "trop", "vite")
# Adjectives that only work in front of a noun, never as "X est <adj>".
NOT_PREDICATIVE = frozenset({"autre", "premier", "dernier", "meilleur", "vrai", "prochain",
                             "entier", "vaste", "pareil", "unique"})
END_ADVERBS = ("lentement", "rapidement", "doucement", "facilement", "tranquillement",
               "calmement", "gentiment", "poliment", "prudemment", "attentivement",
               "simplement", "naïvement", "brièvement", "précisément", "énormément",
               "spontanément", "à haute voix", "avec soin", "en silence",
               "sans bruit", "de bon cœur", "à toute vitesse", "tout de suite",
               "volontiers", "exprès", "par hasard", "sans hésiter", "avec plaisir",
               "en courant", "à l'improviste", "de temps en temps", "au fur et à mesure",
               "là-bas", "ici", "dehors", "partout", "quelque part", "à nouveau")
DISCOURSE = ("au fait", "bien sûr", "en effet", "pourtant", "d'ailleurs", "tout à coup",
             "par conséquent", "néanmoins", "autrement dit", "heureusement",
             "malheureusement", "selon moi", "à mon avis", "en fait", "franchement",
             "évidemment", "au contraire", "après tout", "du coup", "enfin", "ensuite",
             "d'abord", "finalement", "soudain", "cependant", "toutefois", "de plus",
             "en revanche", "entre nous", "sans doute", "à vrai dire", "honnêtement",
             "bref", "ainsi", "oui", "non", "eh bien", "ah", "oh", "hélas", "voilà",
             "à propos", "d'après moi", "de toute façon", "quant à moi",
             "de mon côté", "au fond")
GAMES = ("au football", "aux cartes", "aux échecs", "au tennis", "au basket", "au rugby",
         "à cache-cache", "aux dames", "à la marelle", "au ping-pong", "aux billes",
         "au ballon", "à la poupée", "aux jeux vidéo", "au volley", "au golf")
AVOIR_IDIOMS = ("faim", "soif", "sommeil", "froid", "chaud", "raison", "tort",
                "de la chance", "mal à la tête", "mal au dos", "mal aux dents",
                "besoin de repos", "envie de dormir", "peur du noir", "hâte de partir",
                "l'habitude de travailler tard", "le temps de lire", "du mal à comprendre",
                "rendez-vous chez le dentiste", "les yeux fermés", "beaucoup de travail",
                "confiance en l'avenir", "de la fièvre", "le cœur gros")
FAIRE_IDIOMS = ("la cuisine", "la vaisselle", "les courses", "du sport", "du vélo",
                "une promenade", "la sieste", "attention", "de son mieux", "ses devoirs",
                "le ménage", "la queue", "du bruit", "un effort", "une pause",
                "un gâteau au chocolat", "une erreur", "la fête", "du ski",
                "la connaissance de ses voisins", "le tour du lac", "un pique-nique",
                "un vœu", "la grasse matinée", "des économies", "un détour")
ETRE_STATES = ("en retard", "à l'heure", "d'accord", "en vacances", "au courant",
               "de bonne humeur", "de mauvaise humeur", "en forme", "en colère",
               "à bout de souffle", "sur le point de partir", "prêt à partir",
               "au chômage", "en avance", "en bonne santé", "à la retraite")
SPEECH_VERBS = (  # passé simple / present forms for "« ... », dit-il"
    ("dit", "dit"), ("répondit", "répond"), ("ajouta", "ajoute"), ("expliqua", "explique"),
    ("murmura", "murmure"), ("cria", "crie"), ("annonça", "annonce"), ("soupira", "soupire"),
    ("déclara", "déclare"), ("répéta", "répète"), ("lança", "lance"), ("s'écria", "s'écrie"),
    ("affirma", "affirme"), ("conclut", "conclut"),
)
QUESTION_SPEECH = (("demanda", "demande"), ("s'étonna", "s'étonne"), ("insista", "insiste"))
MONTHS = ("janvier février mars avril mai juin juillet août septembre octobre novembre "
          "décembre").split()
WEEKDAYS = "lundi mardi mercredi jeudi vendredi samedi dimanche".split()
MONUMENTS = (("l'église", "f"), ("le château", "m"), ("la cathédrale", "f"), ("le pont", "m"),
             ("l'abbaye", "f"), ("la tour", "f"), ("le moulin", "m"), ("la chapelle", "f"),
             ("le phare", "m"), ("l'hôtel de ville", "m"), ("la mairie", "f"),
             ("le théâtre", "m"), ("la gare", "f"), ("le musée", "m"))
PLACE_PHRASES = ("à la campagne", "à la montagne", "en ville", "au centre-ville",
                 "au bord de la mer", "au bord du lac", "près de la gare", "loin d'ici",
                 "en face de l'église", "à côté du stade", "derrière la maison",
                 "devant le musée", "au milieu de la forêt", "au coin de la rue",
                 "au fond du jardin", "au-dessus du village", "le long du canal",
                 "à travers la forêt", "sous les arbres", "sur la place du marché",
                 "au sommet de la colline", "à l'étranger", "dans le quartier",
                 "de l'autre côté de la rivière", "au rez-de-chaussée", "au premier étage",
                 "au sous-sol", "là-haut", "jusqu'au bout du chemin", "vers le nord",
                 "vers l'ouest", "en pleine nature", "au bord de la route")

# Verbs a clause may not start from in certain roles.
NO_IMPERATIVE = frozenset({"pouvoir", "vouloir", "devoir", "savoir", "naître", "mourir",
                           "plaire", "sembler", "durer", "apparaître", "disparaître",
                           "fleurir", "avoir", "grandir", "vieillir", "refroidir"})
CLAUSE_FRAMES = frozenset({"que", "qs", "si"})
INF_FRAMES = frozenset({"inf", "inf:à", "inf:de"})
VERB_WEIGHTS = {"être": 6, "avoir": 5, "aller": 4, "faire": 4, "pouvoir": 3, "vouloir": 3,
                "devoir": 2, "prendre": 2, "voir": 2, "venir": 2, "dire": 2, "savoir": 2,
                "parler": 2, "aimer": 2, "manger": 2, "trouver": 2, "donner": 2,
                "mettre": 1.5, "penser": 1.5, "partir": 1.5, "lire": 1.5, "écrire": 1.5,
                "acheter": 1.5, "chercher": 1.5, "regarder": 1.5, "attendre": 1.5}


# --------------------------------------------------------------------------------------
# Phrase structures
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# Surface realisation
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Style:
    typographic_apostrophe: bool
    french_spacing: bool
    straight_quotes: bool


def _elide(word: str, nxt: str) -> str | None:
    """Elided form of `word` before `nxt` ("l'", "qu'", "s'"), or None."""
    lw = word.lower()
    if lw in ELIDING and starts_with_vowel(nxt):
        return word[:-1] + "'"
    if lw == "si" and nxt.lower() in ("il", "ils"):
        return word[0] + "'"
    return None


def realize(tokens: Sequence[str], style: Style) -> str:
    """Join tokens into a sentence: elision, spacing, quotes, capitals, apostrophes."""
    toks = [t for t in tokens if t]
    pieces: list[tuple[str, bool]] = []  # (text, glued to the previous piece)
    glue_next = False
    for i, tok in enumerate(toks):
        nxt = toks[i + 1] if i + 1 < len(toks) else ""
        glue = glue_next
        glue_next = False
        if tok in PUNCT_NO_SPACE_BEFORE:
            glue = True
        elif tok in PUNCT_FRENCH_SPACE:
            glue = not style.french_spacing
        elif tok == QUOTE_OPEN and style.straight_quotes:
            tok, glue_next = '"', True
        elif tok == QUOTE_CLOSE and style.straight_quotes:
            tok, glue = '"', True
        elif nxt and nxt not in PUNCTUATION:
            elided = _elide(tok, nxt)
            if elided is not None:
                tok, glue_next = elided, True
        pieces.append((tok, glue))
    text = ""
    for tok, glue in pieces:
        text += tok if (glue or not text) else " " + tok
    # Capitals: sentence start, and the first word inside a quotation.
    text = _capitalize_at(text, 0)
    for m in re.finditer(r'(?:« |(?:^|: |\s)")\w', text):
        text = _capitalize_at(text, m.end() - 1)
    if style.typographic_apostrophe:
        text = text.replace("'", "’")
    return text


def _capitalize_at(text: str, start: int) -> str:
    for i in range(start, len(text)):
        if text[i].isalpha():
            return text[:i] + text[i].upper() + text[i + 1:]
    return text


def word_count(sentence: str) -> int:
    return sum(1 for w in sentence.split() if any(c.isalnum() for c in w))


def _spell_digits(text: str) -> str:
    return re.sub(r"\d+", lambda m: " " + number_to_words(int(m.group())) + " ", text)


def sentence_key(sentence: str) -> str:
    """Comparison key: lowercase, digits spelled out, only letters and digits kept.

    Stricter than any normaliser the pipeline applies (it also ignores spaces and
    apostrophes), so sentences with different keys stay different after normalisation.
    """
    text = unicodedata.normalize("NFC", _spell_digits(sentence).lower())
    return "".join(c for c in text if c.isalnum())


# --------------------------------------------------------------------------------------
# The generator
# --------------------------------------------------------------------------------------


def prep_np(prep: str, tokens: list[str]) -> list[str]:
    """Preposition + noun phrase with contraction (à le -> au, de les -> des)."""
    if prep in ("à", "de") and len(tokens) > 1 and tokens[0] in ("le", "les"):
        if tokens[0] == "les" or not starts_with_vowel(tokens[1]):
            return [CONTRACTIONS[(prep, tokens[0])]] + tokens[1:]
    return [prep] + tokens


def _parse_times() -> tuple[tuple[str, str], ...]:
    out = []
    for entry in TIME_EXPRESSIONS.replace("\n", " ").split(";"):
        if entry.strip():
            text, tags = entry.strip().split("|")
            out.append((text, tags))
    return tuple(out)


def ordinal(n: int) -> str:
    """Ordinal adjective: 1 -> premier, 19 -> dix-neuvième, 21 -> vingt et unième."""
    if n == 1:
        return "premier"
    w = number_to_words(n)
    if w.endswith("cinq"):
        return w + "uième"
    if w.endswith("neuf"):
        return w[:-1] + "vième"
    if w.endswith("un"):
        return w + "ième"
    return (w[:-1] if w.endswith("e") else w.rstrip("s")) + "ième"


class SentenceGenerator:
    """One seeded stream of French sentences; call `sentence()` repeatedly."""

    def __init__(self, seed: int, lex: Lexicon | None = None):
        self.rng = random.Random(seed)
        self.lex = lex or lexicon()
        self.digits = False  # the current sentence writes its number in digits
        self.times = _parse_times()
        self.adj_by_class = {c: self.lex.adjectives_for(c) for c in self.lex.nouns}
        self.verbs = tuple(v for v in self.lex.verbs)
        self.verb_weights = [VERB_WEIGHTS.get(v.inf, 1.0) for v in self.verbs]
        self.templates: list[tuple[Callable[[], list[str]], float]] = [
            (self.t_statement, 24), (self.t_complex, 14), (self.t_reported, 5),
            (self.t_question, 15), (self.t_imperative, 5), (self.t_quote, 4),
            (self.t_existential, 4), (self.t_attribute, 6), (self.t_weather, 2),
            (self.t_encyclopedic, 4), (self.t_parliament, 3), (self.t_comparison, 2),
            (self.t_numbers, 3), (self.t_cleft, 3), (self.t_ca, 1.5), (self.t_relative, 4),
        ]
        self.number_templates = [self.t_numbers, self.t_encyclopedic, self.t_existential]

    # ------------------------------------------------------------------ small helpers
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
        options = [t for t, tags in self.times if tag in tags]
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

    # ------------------------------------------------------------------ nouns
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

    # ------------------------------------------------------------------ verbs
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

    # ------------------------------------------------------------------ sentences
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

    def vp_for(self, np_: NP, tense: str) -> list[str]:
        subj = Subject([], np_.person, np_.gender, np_.number, np_.cls
                       if np_.cls in ("person", "animal") else "person", np_.pronoun)
        c = self.clause(subj, tense=tense, depth=1, neg_p=0.1, allow_time=False)
        return c.declarative()

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
