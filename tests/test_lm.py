"""Word n-gram LM (asr/decoding/lm.py): modified Kneser-Ney values worked out by hand, ARPA validity,
normalisation of every context, agreement with flashlight's KenLM, train-only shards."""

from __future__ import annotations

import json
import math
import random
import sys
import types
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from asr.decoding.lm import build_arpa, build_lm_from_shards, read_arpa_unigrams, write_lexicon, write_lm_text

# The toy corpus of the hand-worked values below.
TOY = [
    "le chat dort",
    "le chat mange",
    "un chien dort",
    "un chat dort",
    "ce chat",
    "le chien mange bien",
]


# --------------------------------------------------------------------------------------
# An ARPA reader written for the tests (independent of asr.decoding.lm)
# --------------------------------------------------------------------------------------
def read_arpa(path: Path) -> tuple[dict[int, int], dict[tuple, tuple[float, float | None]]]:
    """(header counts, {ngram tuple: (log10 prob, log10 backoff or None)})."""
    header, grams, section = {}, {}, None
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "\\data\\" and lines[-1] == "\\end\\"
    for line in lines[1:-1]:
        if not line.strip():
            continue
        if line.startswith("ngram "):
            n, count = line[len("ngram "):].split("=")
            header[int(n)] = int(count)
        elif line.endswith("-grams:"):
            section = int(line[1:line.index("-")])
        else:
            parts = line.split("\t")
            gram = tuple(parts[1].split(" "))
            assert len(gram) == section, line
            backoff = float(parts[2]) if len(parts) > 2 else None
            grams[gram] = (float(parts[0]), backoff)
    return header, grams


def logprob(grams: dict, context: tuple, word: str) -> float:
    """log10 p(word | context) by the ARPA backoff rule."""
    if (*context, word) in grams:
        return grams[(*context, word)][0]
    if not context:
        raise KeyError(word)
    backoff = grams.get(context, (0.0, None))[1] or 0.0
    return backoff + logprob(grams, context[1:], word)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    out = tmp_path_factory.mktemp("lm") / "toy.arpa"
    stats = build_arpa(TOY, 3, out)
    header, grams = read_arpa(out)
    return stats, header, grams, out


# --------------------------------------------------------------------------------------
# Hand-worked modified Kneser-Ney on TOY, order 3
# --------------------------------------------------------------------------------------
# Padded sentences:
#   <s> le chat dort </s> | <s> le chat mange </s> | <s> un chien dort </s>
#   <s> un chat dort </s> | <s> ce chat </s>       | <s> le chien mange bien </s>
#
# Trigrams (raw counts, the highest order keeps them): "<s> le chat" 2, "chat dort </s>" 2,
# and 14 trigrams seen once -> 16 trigrams, t = [14, 2, 0, 0]: t3 = 0, so the trigram
# discounts are the fallback D1 = 0.5, D2 = 1, D3+ = 1.5.
#
# Bigrams (adjusted): "<s> ..." keep their raw counts: "<s> le" 3, "<s> un" 2, "<s> ce" 1;
# the others count distinct left words: "chat dort" {le, un} 2, "dort </s>" {chat, chien} 2,
# and 12 more with one left word -> 17 bigrams, t = [13, 3, 1, 0]:
#   Y = 13 / (13 + 2*3) = 13/19
#   D1 = 1 - 2 Y 3/13 = 13/19,  D2 = 2 - 3 Y 1/3 = 25/19,  D3+ = 3 - 4 Y 0/1 = 3
#
# Unigrams (distinct left words): le, un, ce {<s>} 1; bien {mange} 1; chien {un, le} 2;
# dort {chat, chien} 2; mange {chat, chien} 2; chat {le, un, ce} 3;
# </s> {dort, mange, chat, bien} 4; <unk> 0  -> t = [4, 3, 1, 1]:
#   Y = 4 / (4 + 2*3) = 0.4
#   D1 = 1 - 2*0.4*3/4 = 0.4,  D2 = 2 - 3*0.4*1/3 = 1.6,  D3+ = 3 - 4*0.4*1/1 = 1.4
#
# Unigram level: sum of adjusted counts = 1+1+1+1 + 2+2+2 + 3 + 4 = 17; the vocabulary
# (every word, </s>, <unk>; not <s>) has 10 entries.
#   gamma() = (0.4*4 + 1.6*3 + 1.4*2) / 17 = 9.2/17; uniform share 9.2/17/10 = 0.92/17
P_UNK = 0.92 / 17                      # 0 + 0.92/17
P_CHAT = (3 - 1.4) / 17 + 0.92 / 17    # = 2.52/17
P_EOS = (4 - 1.4) / 17 + 0.92 / 17     # = 3.52/17
P_LE = (1 - 0.4) / 17 + 0.92 / 17      # = 1.52/17 (also un, ce, bien)
P_DORT = (2 - 1.6) / 17 + 0.92 / 17    # = 1.32/17 (also chien, mange)
# Bigram contexts:
#   "chat": dort 2, mange 1, </s> 1 -> sum 4, gamma = (25/19 + 2*13/19)/4 = 51/76
#   "<s>": le 3, un 2, ce 1 -> sum 6, gamma = (3 + 25/19 + 13/19)/6 = 5/6
#   "dort": </s> 2 -> sum 2, gamma = (25/19)/2 = 25/38
#   "ce", "le", "un", "chien", "mange", "bien": one or two extensions seen once,
#        gamma = D1 = 13/19
GAMMA_CHAT = 51 / 76
P_DORT_G_CHAT = (2 - 25 / 19) / 4 + GAMMA_CHAT * P_DORT     # = 13/76 + 51/76 * 1.32/17
P_MANGE_G_CHAT = (1 - 13 / 19) / 4 + GAMMA_CHAT * P_DORT    # = 6/76 + 51/76 * 1.32/17
P_LE_G_BOS = (3 - 3) / 6 + 5 / 6 * P_LE  # raw count 3 minus D3+ = 3: all from the backoff
P_EOS_G_DORT = (2 - 25 / 19) / 2 + 25 / 38 * P_EOS
# Trigram contexts (fallback discounts):
#   "le chat": dort 1, mange 1 -> sum 2, gamma = (0.5 + 0.5)/2 = 0.5
#   "chat dort": </s> 2 -> sum 2, gamma = 1/2
#   "un chat": dort 1 -> gamma = 0.5;  "<s> ce": chat 1 -> gamma = 0.5
P_DORT_G_LE_CHAT = (1 - 0.5) / 2 + 0.5 * P_DORT_G_CHAT
P_EOS_G_CHAT_DORT = (2 - 1) / 2 + 0.5 * P_EOS_G_DORT


def test_counts_and_discounts_by_hand(toy):
    stats, header, _, _ = toy
    assert header == {1: 8 + 3, 2: 17, 3: 16}  # 8 words + <unk> <s> </s>
    assert stats["ngrams"] == [11, 17, 16]
    assert stats["vocab_size"] == 8
    assert stats["counts_of_counts"] == [[4, 3, 1, 1], [13, 3, 1, 0], [14, 2, 0, 0]]
    assert stats["discount_fallback"] == [False, False, True]
    assert stats["discounts"][0] == pytest.approx([0.4, 1.6, 1.4])
    assert stats["discounts"][1] == pytest.approx([13 / 19, 25 / 19, 3.0])
    assert stats["discounts"][2] == pytest.approx([0.5, 1.0, 1.5])


def test_unigrams_by_hand(toy):
    _, _, grams, _ = toy
    assert grams[("chat",)][0] == pytest.approx(math.log10(P_CHAT), abs=1e-6)
    assert grams[("le",)][0] == pytest.approx(math.log10(P_LE), abs=1e-6)
    assert grams[("</s>",)][0] == pytest.approx(math.log10(P_EOS), abs=1e-6)
    assert grams[("<unk>",)][0] == pytest.approx(math.log10(P_UNK), abs=1e-6)
    assert grams[("</s>",)][1] is None and grams[("<unk>",)][1] is None  # never a context
    # <s>: never predicted, but a context with backoff gamma(<s>) = 5/6
    assert grams[("<s>",)] == (pytest.approx(-99.0), pytest.approx(math.log10(5 / 6), abs=1e-6))
    assert grams[("chat",)][1] == pytest.approx(math.log10(GAMMA_CHAT), abs=1e-6)


def test_bigrams_and_trigrams_by_hand(toy):
    _, _, grams, _ = toy
    assert grams[("chat", "dort")][0] == pytest.approx(math.log10(P_DORT_G_CHAT), abs=1e-6)
    assert grams[("<s>", "le")][0] == pytest.approx(math.log10(P_LE_G_BOS), abs=1e-6)
    # trigram with its full context
    assert grams[("le", "chat", "dort")][0] == pytest.approx(math.log10(P_DORT_G_LE_CHAT),
                                                             abs=1e-6)
    # </s> predicted by a trigram
    assert grams[("chat", "dort", "</s>")][0] == pytest.approx(math.log10(P_EOS_G_CHAT_DORT),
                                                               abs=1e-6)


def test_backoff_by_hand(toy):
    _, _, grams, _ = toy
    # "un chat mange" was never seen: backoff("un chat") = log10 0.5, then p(mange | chat)
    assert ("un", "chat", "mange") not in grams
    assert grams[("un", "chat")][1] == pytest.approx(math.log10(0.5), abs=1e-6)
    assert logprob(grams, ("un", "chat"), "mange") == pytest.approx(
        math.log10(0.5 * P_MANGE_G_CHAT), abs=1e-6)
    # two levels: "<s> ce bien" and "ce bien" unseen -> 0.5 * gamma(ce) * p(bien)
    assert logprob(grams, ("<s>", "ce"), "bien") == pytest.approx(
        math.log10(0.5 * 13 / 19 * P_LE), abs=1e-6)
    # <unk> after "le chat": gamma(le chat) * gamma(chat) * p(<unk>)
    assert logprob(grams, ("le", "chat"), "<unk>") == pytest.approx(
        math.log10(0.5 * GAMMA_CHAT * P_UNK), abs=1e-6)


def _assert_every_context_sums_to_one(grams: dict, order: int) -> int:
    vocab = [g[0] for g in grams if len(g) == 1 and g[0] != "<s>"]
    contexts = [()] + [g for g, (_, bo) in grams.items() if bo is not None and len(g) < order]
    for context in contexts:
        total = sum(10 ** logprob(grams, context, w) for w in vocab)
        assert total == pytest.approx(1.0, abs=1e-4), context
    return len(contexts)


def test_toy_contexts_sum_to_one(toy):
    _, _, grams, _ = toy
    # (), 9 unigram contexts (<s> included), 13 bigram contexts (not those ending in </s>)
    assert _assert_every_context_sums_to_one(grams, 3) == 1 + 9 + 13


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_random_corpus_sums_to_one(tmp_path, order):
    rng = random.Random(order)
    words = [f"w{i}" for i in range(60)]
    # a Zipf-ish corpus: big enough for discounts computed from counts-of-counts at some
    # orders, small enough for the fallback at others
    sentences = [" ".join(rng.choices(words, weights=[1 / (i + 1) for i in range(60)],
                                      k=rng.randint(1, 7))) for _ in range(300)]
    stats = build_arpa(sentences, order, tmp_path / "r.arpa")
    assert False in stats["discount_fallback"]
    header, grams = read_arpa(tmp_path / "r.arpa")
    assert header == {n: sum(1 for g in grams if len(g) == n) for n in range(1, order + 1)}
    _assert_every_context_sums_to_one(grams, order)


# --------------------------------------------------------------------------------------
# File properties and errors
# --------------------------------------------------------------------------------------
def test_arpa_is_deterministic_and_atomic(tmp_path, toy):
    _, _, _, toy_path = toy
    out = tmp_path / "sub" / "m.arpa"
    out.parent.mkdir()
    out.write_text("old content")
    build_arpa(list(reversed(TOY)), 3, out)  # sentence order must not matter
    assert out.read_bytes() == toy_path.read_bytes()
    assert sorted(p.name for p in out.parent.iterdir()) == ["m.arpa"]  # no temp file left
    text = out.read_text()
    assert text.index("\t<unk>\n") < text.index("\t<s>\t") < text.index("\t</s>\n")


def test_fallback_discounts_are_used_and_checked(tmp_path):
    stats = build_arpa(["a b"], 2, tmp_path / "x.arpa", discount_fallback=(0.3, 0.6, 0.9))
    assert stats["discount_fallback"] == [True, True]
    assert stats["discounts"] == [pytest.approx([0.3, 0.6, 0.9])] * 2
    with pytest.raises(ValueError, match="discount_fallback"):
        build_arpa(["a b"], 2, tmp_path / "y.arpa", discount_fallback=(0.5, 2.5, 1.5))


def test_empty_input_and_bad_order_raise(tmp_path):
    with pytest.raises(ValueError, match="no words"):
        build_arpa(["", "   "], 3, tmp_path / "x.arpa")
    with pytest.raises(ValueError, match="order"):
        build_arpa(TOY, 0, tmp_path / "x.arpa")
    assert not (tmp_path / "x.arpa").exists()


# --------------------------------------------------------------------------------------
# Flashlight's KenLM reads the file and agrees with it
# --------------------------------------------------------------------------------------
def test_kenlm_scores_match_arpa_in_log10(toy):
    from flashlight.lib.text.decoder.kenlm import KenLM
    from flashlight.lib.text.dictionary import Dictionary

    _, _, grams, path = toy
    words = ["le", "chat", "dort", "mange", "un", "chien", "ce", "bien", "zèbre", "<unk>"]
    word_dict = Dictionary(words)  # user ids; KenLM maps them to its own ("zèbre" -> <unk>)
    lm = KenLM(str(path), word_dict)
    for sentence in ["le chat dort", "un chat mange bien", "ce zèbre dort", "chien"]:
        state, context = lm.start(False), ("<s>",)  # False: start after <s>
        for w in sentence.split():
            state, score = lm.score(state, word_dict.get_index(w))
            arpa_word = w if (w,) in grams else "<unk>"
            expected = logprob(grams, context[-2:], arpa_word)
            assert score == pytest.approx(expected, abs=1e-5), (sentence, w)
            # natural log would be ln(10) = 2.3 times larger
            assert abs(score - expected * math.log(10)) > 1e-3
            context += (arpa_word,)
        state, score = lm.finish(state)  # </s>
        assert score == pytest.approx(logprob(grams, context[-2:], "</s>"), abs=1e-5)
    # the hand-worked trigram, once more through KenLM
    state, _ = lm.score(lm.start(False), word_dict.get_index("le"))
    state, _ = lm.score(state, word_dict.get_index("chat"))
    _, score = lm.score(state, word_dict.get_index("dort"))
    assert score == pytest.approx(math.log10(P_DORT_G_LE_CHAT), abs=1e-5)


# --------------------------------------------------------------------------------------
# Lexicon
# --------------------------------------------------------------------------------------
def test_write_lexicon(tmp_path):
    arpa = tmp_path / "l.arpa"
    build_arpa(["le chat dort", "l'été est là", "un zèbre"], 2, arpa)
    assert read_arpa_unigrams(arpa)[:3] == ["<unk>", "<s>", "</s>"]
    out = tmp_path / "lexicon.txt"
    n = write_lexicon(arpa, list(" abcdehilnorstuàé'"), out)  # no "z", no "è"
    lines = out.read_text(encoding="utf-8").splitlines()
    assert n == len(lines) == 7
    assert lines[0] == "chat\tc h a t |"
    assert "l'été\tl ' é t é |" in lines
    assert not any(line.startswith(("zèbre", "<")) for line in lines)
    assert [line.split("\t")[0] for line in lines] == sorted(line.split("\t")[0] for line in lines)


def test_write_lexicon_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.arpa"):
        write_lexicon(tmp_path / "missing.arpa", list("abc "), tmp_path / "lex.txt")
    arpa = tmp_path / "l.arpa"
    build_arpa(["xyz"], 2, arpa)
    with pytest.raises(ValueError, match="can be spelt"):
        write_lexicon(arpa, list("abc "), tmp_path / "lex.txt")
    not_arpa = tmp_path / "n.txt"
    not_arpa.write_text("hello\n")
    with pytest.raises(ValueError, match="not an ARPA"):
        write_lexicon(not_arpa, list("abc "), tmp_path / "lex.txt")


# --------------------------------------------------------------------------------------
# From shards: train sentences only
# --------------------------------------------------------------------------------------
def _make_shards(root: Path, rows: list[tuple[str, str]], lang: str = "fr") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    table = pa.table({
        "id": [f"u{i}" for i in range(len(rows))],
        "split": [s for s, _ in rows],
        "text": [t for _, t in rows],
        "frames": list(range(len(rows))),
    })
    pq.write_table(table, root / "index.parquet")
    (root / "dataset.json").write_text(json.dumps(
        {"lang": lang, "normalizer": {"name": "fr", "version": "fr-1"}}))
    return root


SHARD_ROWS = [
    ("train", "le chat dort"),
    ("train", "le chat dort"),  # a second speaker reading the same sentence
    ("train", "un chien mange"),
    ("dev", "la girafe court"),
    ("test", "le hibou vole"),
]


def test_build_from_shards_reads_train_only(tmp_path):
    shards = _make_shards(tmp_path / "shards", SHARD_ROWS)
    stats = build_lm_from_shards(shards, 3, tmp_path / "lm" / "fr.arpa")
    words = set(read_arpa_unigrams(tmp_path / "lm" / "fr.arpa"))
    assert {"le", "chat", "dort", "un", "chien", "mange"} <= words
    assert not words & {"la", "girafe", "court", "hibou", "vole"}
    assert stats["train_sentences"] == 2  # each distinct sentence once
    # same bytes as the two distinct train sentences given directly
    build_arpa(["le chat dort", "un chien mange"], 3, tmp_path / "direct.arpa")
    assert (tmp_path / "lm" / "fr.arpa").read_bytes() == (tmp_path / "direct.arpa").read_bytes()


class FakeNormalizer:
    version = "fr-1"

    def normalize(self, raw: str) -> str | None:
        if "#" in raw:
            return None  # rejected
        return " ".join(raw.lower().replace(",", " ").split())


def _fake_text_module(normalizer) -> types.ModuleType:
    module = types.ModuleType("pipeline.text")
    module.get_normalizer = lambda lang: normalizer
    return module


def test_build_from_shards_with_extra_text(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pipeline.text", _fake_text_module(FakeNormalizer()))
    shards = _make_shards(tmp_path / "shards", SHARD_ROWS)
    extra = tmp_path / "extra.txt"
    extra.write_text("Le Renard, DORT\n\nbad # line\nLa girafe court\n", encoding="utf-8")
    stats = build_lm_from_shards(shards, 2, tmp_path / "fr.arpa", extra_text=extra)
    words = set(read_arpa_unigrams(tmp_path / "fr.arpa"))
    assert {"renard", "le", "dort"} <= words  # normalised by the dataset's normaliser
    assert not words & {"Le", "Renard,", "DORT", "bad", "#", "line", "girafe"}
    assert stats["extra_sentences"] == 1
    assert stats["extra_rejected"] == 1
    assert stats["extra_heldout_dropped"] == 1  # equal to a dev sentence
    # the text for lmplz: the same sentences
    counts = write_lm_text(shards, tmp_path / "lm.txt", extra_text=extra)
    lines = (tmp_path / "lm.txt").read_text(encoding="utf-8").splitlines()
    assert lines == ["le chat dort", "un chien mange", "le renard dort"]
    assert counts["train_sentences"] == 2 and counts["extra_sentences"] == 1


def test_extra_text_warns_on_normaliser_version_change(tmp_path, monkeypatch):
    newer = FakeNormalizer()
    newer.version = "fr-2"
    monkeypatch.setitem(sys.modules, "pipeline.text", _fake_text_module(newer))
    shards = _make_shards(tmp_path / "shards", SHARD_ROWS)
    extra = tmp_path / "extra.txt"
    extra.write_text("un renard\n", encoding="utf-8")
    with pytest.warns(UserWarning, match="fr-1"):
        build_lm_from_shards(shards, 2, tmp_path / "fr.arpa", extra_text=extra)


def test_build_from_shards_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="index.parquet"):
        build_lm_from_shards(tmp_path / "nowhere", 3, tmp_path / "x.arpa")
    shards = _make_shards(tmp_path / "s", [("dev", "a b"), ("test", "c d")])
    with pytest.raises(ValueError, match="no train sentences"):
        build_lm_from_shards(shards, 3, tmp_path / "x.arpa")
    shards = _make_shards(tmp_path / "t", SHARD_ROWS)
    with pytest.raises(FileNotFoundError, match="extra"):
        build_lm_from_shards(shards, 3, tmp_path / "x.arpa", extra_text=tmp_path / "none.txt")
