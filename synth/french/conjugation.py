"""French verb conjugation: one `VERB_DATA` line -> a `Verb` with every form it needs.

Regular -er / -ir / -re verbs follow their pattern (with the -ger / -cer spellings and
the mute-e stems: lève, appelle, nettoie, préfère); irregular ones copy a model from
`IRREGULAR`, swapping the prefix they differ by ("devenir" conjugates like "venir").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from synth.french.lexicon import DOUBLING_ER, FUTURE_OVERRIDES, IRREGULAR


@dataclass(frozen=True)
class Verb:
    inf: str  # without the reflexive pronoun
    reflexive: bool
    aux: str  # "avoir" | "être"
    subject: str  # "p" (person) | "a" (any animate)
    frames: tuple[str, ...]
    present: tuple[str, ...]
    imperfect: tuple[str, ...]
    future: tuple[str, ...]
    conditional: tuple[str, ...]
    subjunctive: tuple[str, ...]
    imperative: tuple[str, str, str]  # tu, nous, vous
    participle: str

    def participle_form(self, gender: str = "m", number: str = "s") -> str:
        """Agreed past participle ("partie", "pris", "mortes")."""
        pp = self.participle
        if pp == "dû":
            pp = "du" if (gender, number) != ("m", "s") else pp
        if gender == "f":
            pp += "e"
        if number == "p" and not pp.endswith(("s", "x")):
            pp += "s"
        return pp

    def tense(self, name: str) -> tuple[str, ...]:
        return {"pres": self.present, "imp": self.imperfect, "fut": self.future,
                "cond": self.conditional, "subj": self.subjunctive}[name]


_IMPERFECT_ENDINGS = ("ais", "ais", "ait", "ions", "iez", "aient")
_FUTURE_ENDINGS = ("ai", "as", "a", "ons", "ez", "ont")
_SUBJ_ENDINGS = ("e", "es", "e", "ions", "iez", "ent")


def _join_stem(stem: str, ending: str) -> str:
    """Stem + ending with the -ger/-cer spelling rules (mangeais/mangions, commençais)."""
    if ending[0] in "ao" and stem.endswith("g"):
        stem += "e"
    if ending[0] in "ao" and stem.endswith("c"):
        stem = stem[:-1] + "ç"
    if ending[0] in "ie" and stem.endswith("ge") and not stem.endswith("gue"):
        stem = stem[:-1]
    if ending[0] in "ie" and stem.endswith("ç"):
        stem = stem[:-1] + "c"
    return stem + ending


def _er_mute_stem(inf: str) -> tuple[str, str]:
    """Stem used where the ending is a mute e, and the rule that made it.

    je lève / j'appelle / il nettoie / je préfère; the rule decides the future stem
    (lèverai, appellerai, nettoierai but préférerai in the traditional spelling).
    """
    stem = inf[:-2]
    if inf in DOUBLING_ER:
        return stem + stem[-1], "double"
    if stem.endswith("y"):
        return stem[:-1] + "i", "y"
    m = re.search(r"e([bcdfghjklmnpqrstvwxz])$", stem)
    if m:
        return stem[: m.start()] + "è" + m.group(1), "grave"
    m = re.search(r"é([bcdfghjklmnpqrstvwxz]+)$", stem)
    if m:
        return stem[: m.start()] + "è" + m.group(1), "acute"
    return stem, ""


def _regular_tables(inf: str, pattern: str) -> dict:
    if pattern == "er":
        stem = inf[:-2]
        mute, rule = _er_mute_stem(inf)
        present = (mute + "e", mute + "es", mute + "e", _join_stem(stem, "ons"),
                   stem + "ez", mute + "ent")
        if inf in FUTURE_OVERRIDES:
            fut = FUTURE_OVERRIDES[inf]
        elif rule in ("double", "y", "grave"):
            fut = mute + "er"
        else:
            fut = inf
        return dict(present=present, pp=stem + "é", fut=fut, subj_stem=mute,
                    impv_tu=present[0])
    if pattern == "ir":
        stem = inf[:-2]
        present = (stem + "is", stem + "is", stem + "it", stem + "issons", stem + "issez",
                   stem + "issent")
        return dict(present=present, pp=stem + "i", fut=inf, impv_tu=present[1])
    if pattern == "re":
        stem = inf[:-2]
        present = (stem + "s", stem + "s", stem, stem + "ons", stem + "ez", stem + "ent")
        return dict(present=present, pp=stem + "u", fut=inf[:-1], impv_tu=present[1])
    raise ValueError(f"unknown verb pattern {pattern!r} for {inf!r}")


def _irregular_tables(inf: str, model: str) -> dict:
    """Conjugation of `inf` from the irregular `model`, swapping the differing prefix."""
    base = IRREGULAR[model]
    # Longest common ending: "devenir"/"venir" share "venir", "tenir"/"venir" share "enir".
    k = 0
    while k < min(len(inf), len(model)) and inf[-1 - k] == model[-1 - k]:
        k += 1
    old, new = model[: len(model) - k], inf[: len(inf) - k]

    def swap(form: str) -> str:
        if not form.startswith(old):
            raise ValueError(f"{inf}: form {form!r} of model {model} lacks prefix {old!r}")
        return new + form[len(old):]

    present = tuple(swap(f) for f in base["pres"].split())
    fut = swap(base["fut"]) if "fut" in base else (inf[:-1] if inf.endswith("re") else inf)
    tables = dict(present=present, pp=swap(base["pp"]), fut=fut)
    if "imp" in base:
        tables["imp_stem"] = swap(base["imp"])
    if "subj" in base:
        tables["subj"] = tuple(swap(f) for f in base["subj"].split())
    if "impv" in base:
        tables["impv"] = tuple(swap(f) for f in base["impv"].split())
    else:
        tu = present[1]
        tables["impv_tu"] = tu[:-1] if tu.endswith("es") else tu
    return tables


def build_verb(line: str) -> Verb:
    head, _, frames = line.partition("|")
    name, pattern, aux, subject = head.split()
    reflexive = name.startswith(("se_", "s'"))
    inf = name[3:] if name.startswith("se_") else name[2:] if name.startswith("s'") else name
    if pattern in ("er", "ir", "re"):
        t = _regular_tables(inf, pattern)
    else:
        t = _irregular_tables(inf, inf if pattern == "irr" else pattern)
    present = t["present"]
    imp_stem = t.get("imp_stem", present[3][:-3])
    imperfect = tuple(_join_stem(imp_stem, e) for e in _IMPERFECT_ENDINGS)
    future = tuple(t["fut"] + e for e in _FUTURE_ENDINGS)
    conditional = tuple(t["fut"] + e for e in _IMPERFECT_ENDINGS)
    if "subj" in t:
        subjunctive = t["subj"]
    else:
        sg_stem = t.get("subj_stem", present[5][:-3])
        subjunctive = (sg_stem + "e", sg_stem + "es", sg_stem + "e", imperfect[3],
                       imperfect[4], sg_stem + "ent")
    imperative = t.get("impv", (t.get("impv_tu", present[1]), present[3], present[4]))
    return Verb(inf=inf, reflexive=reflexive, aux="être" if aux == "e" else "avoir",
                subject=subject, frames=tuple(frames.split()), present=present,
                imperfect=imperfect, future=future, conditional=conditional,
                subjunctive=subjunctive, imperative=tuple(imperative),
                participle=t["pp"])
