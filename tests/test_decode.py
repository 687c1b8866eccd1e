"""CTC decoding (asr/decoding/ctc.py): greedy on hand-made log-probs, flashlight beam search with and
without a word LM, edge cases."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from asr.decoding.ctc import CTCBeamDecoder, CTCGreedyDecoder
from asr.decoding.decoder import DecodeOptions, Decoder, greedy_texts
from asr.decoding.lm import build_arpa
from asr.tokens.tokenizer import CharTokenizer

TOK = CharTokenizer(list(" abcdefghijklmnopqrstuvwxyz'éè"))
FLOOR = 1e-4  # probability of every unit a frame does not name
SPELL_IDS = {"_": 0, "^": 1}  # blank, <eos>


def frames(spec: list[dict[str, float]], tok: CharTokenizer = TOK) -> torch.Tensor:
    """[T, V] log-probs from a list of {unit: probability} ("_" = blank, "^" = <eos>)."""
    rows = []
    for frame in spec:
        p = torch.full((len(tok),), FLOOR)
        for unit, q in frame.items():
            p[SPELL_IDS[unit] if unit in SPELL_IDS else tok.units.index(unit)] = q
        rows.append((p / p.sum()).log())
    return torch.stack(rows)


def spell(text: str) -> list[dict[str, float]]:
    """Frames that say `text` with certainty ("_" = a blank frame)."""
    return [{c: 1.0} for c in text]


def batch(*utterances: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad [T_i, V] tensors into [B, T, V] (padding frames say 'z') with lengths [B]."""
    T = max(u.shape[0] for u in utterances)
    pad = frames([{"z": 1.0}])[0]
    out = pad.repeat(len(utterances), T, 1)
    for b, u in enumerate(utterances):
        out[b, : u.shape[0]] = u
    return out, torch.tensor([u.shape[0] for u in utterances])


def ctc_log_likelihood(log_probs: torch.Tensor, text: str, tok: CharTokenizer = TOK) -> float:
    """log p(text | frames), summed over every CTC alignment (torch's CTC loss)."""
    target = torch.tensor([tok.encode(text)], dtype=torch.long)
    loss = F.ctc_loss(log_probs.unsqueeze(1), target, torch.tensor([log_probs.shape[0]]),
                      torch.tensor([target.shape[1]]), blank=0, reduction="sum",
                      zero_infinity=False)
    return -loss.item()


# --------------------------------------------------------------------------------------
# Greedy
# --------------------------------------------------------------------------------------
def test_greedy_collapses_repeats_and_keeps_blank_separated_ones():
    x, lengths = batch(
        frames(spell("cc_hh_aa_tt")),      # repeats collapse -> "chat"
        frames(spell("a_a__l_l")),         # a blank between equal units keeps both
        frames(spell("oo^ui")),            # <eos> dropped (after collapsing)
        frames(spell(" le  chat ")),       # spaces tidied
        frames(spell("____")),             # all blanks
    )
    assert CTCGreedyDecoder(TOK).decode(x, lengths) == ["chat", "aall", "oui", "le chat", ""]


def test_greedy_respects_lengths_and_zero_length():
    x, _ = batch(frames(spell("chat")))
    x = torch.cat([x, x])
    assert CTCGreedyDecoder(TOK).decode(x, torch.tensor([2, 0])) == ["ch", ""]
    with pytest.raises(ValueError, match="lengths"):
        CTCGreedyDecoder(TOK).decode(x, torch.tensor([5, 1]))


class FixedCTC(torch.nn.Module):
    """A CTC "model" whose log-probs are given: log_probs(feats, lengths) -> (them, lengths)."""

    kind = "ctc"

    def __init__(self, log_probs: torch.Tensor):
        super().__init__()
        self.fixed = log_probs

    def log_probs(self, feats, lengths):
        return self.fixed, lengths


def test_training_greedy_is_eval_greedy():
    """The training loop's dev CER decodes with greedy_texts: eval's greedy, spaces tidied."""
    x, lengths = batch(frames(spell(" le  chat ")), frames(spell("oo^ui_")))
    model = FixedCTC(x)
    texts = greedy_texts(model, TOK, torch.zeros(2, 10, 3), lengths)
    assert texts == Decoder(model, TOK, DecodeOptions())(torch.zeros(2, 10, 3), lengths) == ["le chat", "oui"]


# --------------------------------------------------------------------------------------
# Beam search without LM
# --------------------------------------------------------------------------------------
def test_beam_finds_the_more_likely_labelling_than_greedy():
    # Two frames, p(blank) = 0.6, p(a) = 0.4 each: greedy takes "_ _" -> "" (p = 0.36), but
    # "a" has three alignments "aa", "a_", "_a": 0.16 + 0.24 + 0.24 = 0.64.
    x = frames([{"_": 0.6, "a": 0.4}] * 2)
    assert CTCGreedyDecoder(TOK).decode(x[None], torch.tensor([2])) == [""]
    assert CTCBeamDecoder(TOK, DecodeOptions(beam=10)).decode(x[None], torch.tensor([2])) == ["a"]
    assert ctc_log_likelihood(x, "a") == pytest.approx(math.log(0.64), abs=1e-2)


def test_beam_is_at_least_as_likely_as_greedy_on_random_emissions():
    torch.manual_seed(0)
    tok = CharTokenizer(list(" ab"))
    scores = torch.randn(16, 7, len(tok)) * 1.5
    # <eos> and the space get no mass, so the output strings are the labellings themselves
    # (the decoders drop <eos> and tidy spaces, which would change the likelihood compared)
    scores[..., 1:3] = -30.0
    x = scores.log_softmax(-1)
    lengths = torch.full((16,), 7)
    beams = CTCBeamDecoder(tok, DecodeOptions(beam=64)).decode(x, lengths)
    greedy = CTCGreedyDecoder(tok).decode(x, lengths)
    gains = [ctc_log_likelihood(x[b], beams[b], tok) - ctc_log_likelihood(x[b], greedy[b], tok)
             for b in range(16)]
    assert min(gains) > -1e-3
    assert max(gains) > 0.01  # somewhere the beam found a better labelling than greedy


def test_beam_equals_greedy_on_peaky_emissions():
    x, lengths = batch(frames(spell("bb_onn_jour")), frames(spell("__l'été ")))
    decoder = CTCBeamDecoder(TOK, DecodeOptions(beam=8))
    assert decoder.decode(x, lengths) == CTCGreedyDecoder(TOK).decode(x, lengths) == ["bonjour", "l'été"]


def test_beam_edge_cases_without_lm():
    decoder = CTCBeamDecoder(TOK, DecodeOptions(beam=8))
    x, _ = batch(frames(spell("____")), frames(spell("oui_")))
    assert decoder.decode(x, torch.tensor([4, 0])) == ["", ""]  # all blanks; zero length
    assert decoder.decode(x[:0], torch.tensor([], dtype=torch.long)) == []
    # half precision, non-contiguous input is converted
    strided = x.half().transpose(0, 1).contiguous().transpose(0, 1)
    assert not strided.is_contiguous()
    assert decoder.decode(strided, torch.tensor([4, 4])) == ["", "oui"]
    with pytest.raises(ValueError, match="units"):
        decoder.decode(x[..., :-1], torch.tensor([4, 4]))


def test_tokenizer_checks():
    with pytest.raises(ValueError, match="space"):
        CTCBeamDecoder(CharTokenizer(list("abc")), DecodeOptions())
    with pytest.raises(ValueError, match="boundary"):
        CTCBeamDecoder(CharTokenizer(list(" ab|")), DecodeOptions())
    decoder = CTCBeamDecoder(TOK, DecodeOptions())
    assert decoder.symbols[:3] == ["<blank>", "<eos>", "|"]  # the space is the boundary


# --------------------------------------------------------------------------------------
# Beam search with a word LM
# --------------------------------------------------------------------------------------
LM_TEXT = [
    "un verre d'eau",
    "je bois un verre",
    "un verre de vin",
    "le pré est vert",
    "le mur est vert",
    "ce verre est plein",
]


@pytest.fixture(scope="module")
def toy_lm(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("lm") / "toy.arpa"
    build_arpa(LM_TEXT, 3, path)
    return path


def ambiguous(prefix: str) -> torch.Tensor:
    """`prefix` + "ver", then frames as likely to end it as "vert" ("t _ _") as "verre"
    ("_ r e"): each of those two labellings has one alignment of probability 0.125."""
    return frames(spell(prefix + "ver") + [{"t": 0.5, "_": 0.5}, {"r": 0.5, "_": 0.5},
                                           {"e": 0.5, "_": 0.5}])


def test_acoustics_alone_cannot_choose():
    x = ambiguous("un ")
    assert ctc_log_likelihood(x, "un vert") == pytest.approx(ctc_log_likelihood(x, "un verre"),
                                                             abs=1e-3)


def test_lm_picks_the_spelling_it_knows_in_context(toy_lm):
    decoder = CTCBeamDecoder(TOK, DecodeOptions(beam=20, lm=toy_lm, lm_weight=1.0, word_score=0.0))
    assert decoder.lexicon_size == 14  # every word of LM_TEXT is spelt with TOK's characters
    x, lengths = batch(ambiguous("un "), ambiguous("est "))
    # the same acoustics: "un verre" (seen 3 times, "un vert" never) but "est vert"
    assert decoder.decode(x, lengths) == ["un verre", "est vert"]


def test_lm_decoder_keeps_the_last_word_and_handles_edges(toy_lm):
    decoder = CTCBeamDecoder(TOK, DecodeOptions(beam=20, lm=toy_lm, word_score=0.0))
    # no trailing space after "vin": the appended boundary frame completes the last word
    x, lengths = batch(frames(spell("un_ ver_re de vin")), frames(spell("___")),
                       frames(spell("de")))
    assert decoder.decode(x, lengths) == ["un verre de vin", "", "de"]
    assert decoder.decode(x, torch.tensor([0, 0, 0])) == ["", "", ""]


def test_lm_decoder_only_outputs_lexicon_words(toy_lm, tmp_path):
    # "chat" is not in the LM: the lexicon decoder cannot spell it (unk_score = -inf)
    x = frames(spell("un chat"))[None]
    decoder = CTCBeamDecoder(TOK, DecodeOptions(beam=20, lm=toy_lm, word_score=0.0))
    text = decoder.decode(x, torch.tensor([7]))[0]
    assert "chat" not in text.split()
    assert set(text.split()) <= {w for s in LM_TEXT for w in s.split()}
    # an explicit word list narrows the lexicon further
    words = tmp_path / "words.txt"
    words.write_text("un\nvert\n", encoding="utf-8")
    narrow = CTCBeamDecoder(TOK, DecodeOptions(beam=20, lm=toy_lm, word_score=0.0), lexicon=words)
    assert narrow.lexicon_size == 2
    assert narrow.decode(ambiguous("un ")[None], torch.tensor([9])) == ["un vert"]


def test_lm_decoder_errors(tmp_path, toy_lm):
    with pytest.raises(FileNotFoundError, match="nope.arpa"):
        CTCBeamDecoder(TOK, DecodeOptions(lm=tmp_path / "nope.arpa"))
    foreign = tmp_path / "foreign.arpa"
    build_arpa(["ζωή και θάνατος"], 2, foreign)
    with pytest.raises(ValueError, match="can be spelt"):
        CTCBeamDecoder(TOK, DecodeOptions(lm=foreign))
    binary = tmp_path / "lm.bin"
    binary.write_bytes(b"mmap lm http://kheafield.com/code format version 5\n\0\0")
    with pytest.raises(ValueError, match="lexicon="):
        CTCBeamDecoder(TOK, DecodeOptions(lm=binary))
