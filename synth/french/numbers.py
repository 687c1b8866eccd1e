"""French number spelling: cardinals (`number_to_words`) and ordinals (`ordinal`)."""

from __future__ import annotations

_UNITS = ("zéro un deux trois quatre cinq six sept huit neuf dix onze douze treize "
          "quatorze quinze seize dix-sept dix-huit dix-neuf").split()
_TENS = {2: "vingt", 3: "trente", 4: "quarante", 5: "cinquante", 6: "soixante"}


def _below_hundred(n: int) -> str:
    if n < 20:
        return _UNITS[n]
    tens, unit = divmod(n, 10)
    if tens in (7, 9):  # soixante-dix, quatre-vingt-dix: count on from the previous ten
        base = "soixante" if tens == 7 else "quatre-vingt"
        rest = n - (60 if tens == 7 else 80)
        if rest == 11 and tens == 7:
            return "soixante et onze"
        return f"{base}-{_UNITS[rest]}"
    if tens == 8:
        return "quatre-vingts" if unit == 0 else f"quatre-vingt-{_UNITS[unit]}"
    word = _TENS[tens]
    if unit == 0:
        return word
    if unit == 1:
        return f"{word} et un"
    return f"{word}-{_UNITS[unit]}"


def _below_thousand(n: int) -> str:
    hundreds, rest = divmod(n, 100)
    parts = []
    if hundreds:
        if hundreds == 1:
            parts.append("cent")
        else:
            parts.append(_UNITS[hundreds] + (" cents" if rest == 0 else " cent"))
    if rest or not hundreds:
        parts.append(_below_hundred(rest))
    return " ".join(parts)


def number_to_words(n: int, feminine: bool = False) -> str:
    """French words for 0 <= n < 1,000,000, traditional spelling (quatre-vingts, deux cents).

    `feminine` gives "une" for the final "un" ("vingt et une pages").
    """
    if not 0 <= n < 1_000_000:
        raise ValueError(f"number_to_words handles 0..999999, got {n}")
    thousands, rest = divmod(n, 1000)
    parts = []
    if thousands:
        if thousands == 1:
            parts.append("mille")
        else:
            # "quatre-vingt mille", "deux cent mille": no plural s before mille
            words = _below_thousand(thousands)
            if words.endswith(("cents", "vingts")):
                words = words[:-1]
            parts.append(words + " mille")
    if rest or not thousands:
        parts.append(_below_thousand(rest))
    out = " ".join(parts)
    if feminine and (out == "un" or out.endswith((" un", "-un"))):
        out = out[:-2] + "une"
    return out


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
