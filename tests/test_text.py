"""Transcript normalisation: French and English rules, any-script fallback, rejects."""

import pytest

from pipeline.text import VERSION, get_normalizer


@pytest.mark.parametrize("raw, expected", [
    ("Bonjour, l’homme ! « Peut-être » a-t-il dit…", "bonjour l'homme peut-être a-t-il dit"),
    ("C‘est-à-dire aujourd`hui", "c'est-à-dire aujourd'hui"),
    ("\"Quoi ?\" – demanda-t-il — puis -- rien.", "quoi demanda-t-il puis rien"),
    ("L'Œuvre d'Ævar à Noël", "l'œuvre d'ævar à noël"),
    ("España, Øresund, Straße, Łódź", "espana oresund strasse lodz"),
    ("En 1998, 3,5 % des gens avaient 1 000 €.", "en mille neuf cent quatre-vingt-dix-huit trois virgule cinq "
                                                 "pour cent des gens avaient mille euros"),
    ("Le 1er mai, la 2e fois, 21 ans.", "le premier mai la deuxième fois vingt et un ans"),
    ("ﬁn de l'été", "fin de l'été"),  # NFKC ligature
    ("'Bonjour' dit-elle", "bonjour dit-elle"),  # quotes are not apostrophes
    ("rock'n'roll", "rock'n'roll"),
])
def test_french(raw, expected):
    assert get_normalizer("fr").normalize(raw) == expected


@pytest.mark.parametrize("raw, reason", [
    ("", "empty_text"), (" ... « » ", "empty_text"),
    ("Привет", "unmappable_char"), ("Il a dit 你好", "unmappable_char"), ("A ☃ B", "unmappable_char"),
])
def test_french_rejects(raw, reason):
    text, why = get_normalizer("fr").analyse(raw)
    assert why is not None and why.split(":")[0] == reason and text == ""


def test_english():
    en = get_normalizer("en")
    assert en.normalize("It's the students' 1st café — 3.14 & 1,000 dogs!") == \
        "it's the students first cafe three point one four and one thousand dogs"
    assert en.version == f"en-{VERSION}"


@pytest.mark.parametrize("lang, raw, expected", [
    ("de", "Straße „Grüß Gott“ – 2 Äpfel!", "straße grüß gott zwei äpfel"),
    ("zh-CN", "你好，世界。", "你好 世界"),
    ("ru", "Привет, мир! 5 лет", "привет мир пять лет"),
    ("tr", "İSTANBUL IRMAK", "istanbul ırmak"),
    ("ar", "مرحبا، عالم", "مرحبا عالم"),
    ("hi", "नमस्ते दुनिया।", "नमस्ते दुनिया"),  # combining vowel signs are kept
    ("ca", "L’home i l’any", "l'home i l'any"),
])
def test_generic_any_script(lang, raw, expected):
    n = get_normalizer(lang)
    assert n.name == "generic" and n.normalize(raw) == expected


def test_digits_in_a_language_num2words_lacks_are_rejected_not_guessed():
    assert get_normalizer("ka").analyse("გამარჯობა 5") == ("", "digits")
    assert get_normalizer("ka").normalize("გამარჯობა") == "გამარჯობა"
