"""Decoding a CTC model (asr/nets/ctc.py): greedy best path, and beam search with an optional word LM.

    CTCGreedyDecoder   the best unit per frame (the one CTC greedy decoder: eval, transcribe
                       and the training loop's dev CER all go through it); CTCGreedyStream, its
                       live twin (both collapse with asr/decoding/strategy.py's `collapse`)
    CTCBeamDecoder     flashlight-text's beam search (torchaudio), lexicon-free or with a word
                       LM, on whole utterances (`decode`) or live (`begin/step/partial/end`)

and, at the end, the strategies (asr/decoding/strategy.py's interface) that
asr/decoding/decoder.py registers for model kind "ctc".

The beam decoder takes a DecodeOptions (asr/decoding/decoder.py: every default is there).

Both take the acoustic model's log-probabilities `[B, T, V]` (natural log, softmax over the
tokenizer's V units: 0 = blank, 1 = <eos>, 2.. = characters) and the valid lengths `[B]`,
and return one string per utterance, words joined by single spaces, no leading/trailing
space.

`CTCGreedyDecoder` takes the best unit per frame, collapses repeats, drops blanks and <eos>.

`CTCBeamDecoder` wraps torchaudio's flashlight-text decoder
(`torchaudio.models.decoder.ctc_decoder`):

* no LM: lexicon-free beam search over characters (any character string can come out);
* with a word LM (ARPA file, e.g. from `asr.decoding.lm`, or a KenLM binary): lexicon-based search.
  The lexicon is the LM's word list spelt in the model's characters, each word ending in the
  word-boundary token `|` (the tokenizer's space). Only lexicon words can come out, each
  scored by the LM; words the LM does not know cannot be produced (unk_score = -inf), so
  the LM's vocabulary bounds the output vocabulary.

Flashlight facts this module relies on (checked in tests/test_lm.py, tests/test_decode.py):

* Scores add up as `sum(emission log-probs, natural log) + lm_weight * LM score +
  word_score * words (+ sil_score per '|' frame)`, and flashlight's KenLM returns **log10**
  probabilities, so lm_weight = ln(10) ~ 2.3 would weigh LM and acoustics as equal
  probabilities. Tune lm_weight and word_score on dev (typically lm_weight 0.5-2.5,
  word_score -1..2).
* In lexicon mode the text is the hypothesis' word list, not its tokens: the best
  hypothesis' tokens can end in the letters of an unfinished word (e.g. `c a r t |` while
  the lexicon has "carte" but not "cart"), which are not a word and are dropped.
* A lexicon word is complete only once its `|` is consumed. Our models emit no space after
  the last word, so in lexicon mode one extra frame where `|` is certain is appended to
  every utterance (without it flashlight drops the unfinished last word, or forces a `|`
  onto the last real frame). It adds 0 to every score.
* The decoder wants float32, CPU, contiguous emissions; `decode` converts what it gets.
* The lexicon is a text file of `word c h a r |` lines and flashlight's word dictionary
  must hold `<unk>`; both are written to a temporary folder while the decoder is built
  (flashlight has read them when the constructor returns).
* Speed (one CPU core, beam 50, V = 33): lexicon-free about 0.5 ms per frame; with a
  lexicon and a trigram LM (26k words, 2.6M n-grams, 85 MB ARPA) about 0.1 ms per frame
  (the lexicon prunes the search), after about 1 s to load the ARPA file. KenLM prints
  "Loading the LM will be faster if you build a binary file." on stderr for ARPA files;
  KenLM's `build_binary` makes a file that loads at once.

Sub-word units (`--tokens unigram:N`, asr/tokens/subword.py): SentencePiece pieces carry the word
boundary themselves ('▁' starts a word); no unit separates words, so the character scheme
(a '|' unit) does not apply:

* no LM: lexicon-free search over the pieces; the text is `tokenizer.decode` of the best
  hypothesis' pieces ('▁' -> space);
* with a word LM: lexicon search, each LM word spelt in the pieces `tokenizer.encode` gives it
  (the spelling the model was trained to emit; `write_subword_lexicon`). A word is complete
  on its last piece (the trie emits it there, while also extending to longer words with the
  same first pieces), so no closing frame is appended. flashlight wants a silence unit: it is
  <eos>, which a CTC model never emits. The lexicon-free search with a word LM would need a
  word-boundary unit between words, which pieces do not have; hence the lexicon.

Edge cases: a zero-length utterance decodes to "" (flashlight is not called); an utterance
whose best path is all blanks decodes to ""; if no hypothesis survives the beam (possible
with a lexicon when no word fits the acoustics within `beam_threshold`), the result is "".
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from asr.decoding.arpa import SPECIAL_WORDS, UNK, WORD_BOUNDARY, kenlm_error, lm_words, write_lexicon_from_words
from asr.decoding.options import DecodeOptions
from asr.decoding.strategy import BatchStrategy, Decoded, StreamStrategy, collapse, tidy
from asr.tokens.units import BLANK, EOS, SPACE, SPECIALS

BLANK_SYMBOL, EOS_SYMBOL = SPECIALS  # the flashlight token list uses the tokenizer's names
CLOSING_FRAME_OTHERS = -1e4  # log-prob of every unit but '|' in the appended final frame


def _check_inputs(log_probs: torch.Tensor, lengths: torch.Tensor) -> list[int]:
    if log_probs.dim() != 3:
        raise ValueError(f"log_probs must be [B, T, V], got shape {tuple(log_probs.shape)}")
    lengths = [int(n) for n in torch.as_tensor(lengths).reshape(-1).tolist()]
    B, T, _ = log_probs.shape
    if len(lengths) != B:
        raise ValueError(f"{len(lengths)} lengths for a batch of {B}")
    bad = [n for n in lengths if not 0 <= n <= T]
    if bad:
        raise ValueError(f"lengths {bad} outside [0, T={T}]")
    return lengths


class CTCGreedyDecoder:
    """Best-path CTC decoding with `tokenizer` (characters or SentencePiece pieces)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def decode(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        """log_probs: [B, T, V] (any float dtype/device); lengths: [B] valid frames -> B strings.

        Per utterance: argmax per frame, collapse repeats, drop blanks (0) and <eos> (1), map
        through `tokenizer.decode`, tidy spaces. A blank between two equal units keeps both
        ("a _ a" -> "aa").
        """
        lengths = _check_inputs(log_probs, lengths)
        best = log_probs.detach().argmax(dim=-1).cpu()  # [B, T]
        return [tidy(self.tokenizer.decode(collapse(best[b, :n].tolist())[0])) for b, n in enumerate(lengths)]


class CTCGreedyStream(StreamStrategy):
    """CTC's best path of one live segment, piece by piece (the collapse carries over between
    pieces, so the pieces give the whole segment's greedy text)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.begin()

    def begin(self) -> None:
        self.ids, self.prev = [], BLANK

    def step(self, log_probs: torch.Tensor) -> list[int]:
        best = log_probs.argmax(dim=-1).tolist()
        units, self.prev = collapse(best, self.prev)
        self.ids += units
        return best

    def partial(self) -> str:
        return tidy(self.tokenizer.decode(self.ids))

    end = partial


def _read_word_list(path: Path) -> list[str]:
    """Words of a word list or lexicon file: the first field of each non-empty line."""
    with open(path, encoding="utf-8") as f:
        return [line.split()[0] for line in f if line.strip()]


def write_subword_lexicon(words, tokenizer, out: Path, source: str = "the word list") -> list[str]:
    """The lexicon of `words` in a unigram tokenizer's pieces (`word<TAB>▁pi eces` lines), each
    spelt as `encode` spells it in training targets; words with a character the tokenizer
    does not know are left out. Returns the words written, sorted; ValueError when none is left."""
    lines, kept = [], []
    for w in sorted({w for w in words if w and w not in SPECIAL_WORDS}):
        pieces = tokenizer.spell(w)
        if pieces:
            kept.append(w)
            lines.append(f"{w}\t{' '.join(pieces)}\n")
    if not kept:
        raise ValueError(f"none of the words of {source} can be spelt with the model's pieces: was the LM "
                         "built from this dataset's normalised text?")
    Path(out).write_text("".join(lines), encoding="utf-8")
    return kept


class CTCBeamDecoder(StreamStrategy):
    """CTC beam search (flashlight-text via torchaudio), with an optional word n-gram LM.

    tokenizer: a CharTokenizer (`.units` by id, `.vocab` the characters, holding " "), or a
    UnigramTokenizer (pieces; see the module docstring).
    options (a DecodeOptions): beam (None: options.ctc_beam) hypotheses kept per frame;
    beam_threshold: drop hypotheses that far (in score) below the best; lm: ARPA file or
    KenLM binary (None = no LM, lexicon-free); lm_weight, word_score: flashlight's LM score
    terms (see the module docstring).
    beam_size_token: units tried per frame (None = all). unk_score, sil_score: flashlight's
    score of an unknown word and of a '|' frame.
    log_add: merge equal hypotheses by log-sum-exp (the CTC prefix probability) rather than max.
    lexicon: word list (one word per line, or a lexicon file: first field) giving the words
    the decoder may output; default the ARPA file's unigrams (required for a KenLM binary).
    """

    def __init__(
        self,
        tokenizer,
        options: DecodeOptions,
        unk_score: float = float("-inf"),
        sil_score: float = 0.0,
        beam_size_token: int | None = None,
        log_add: bool = True,
        lexicon: Path | None = None,
    ) -> None:
        from torchaudio.models.decoder import ctc_decoder  # pulls in flashlight-text

        self.tokenizer = tokenizer
        self.subword = getattr(tokenizer, "kind", "char") == "unigram"
        if self.subword:  # the pieces as they are; '▁' starts a word, no unit separates words
            self.symbols = list(tokenizer.units)
            self.boundary_id, sil_token = EOS, EOS_SYMBOL  # flashlight needs a silence unit: <eos>, never emitted
        else:
            self.symbols = self._char_symbols(tokenizer)
            self.boundary_id, sil_token = self.symbols.index(WORD_BOUNDARY), WORD_BOUNDARY
        self.beam = options.search_beam("ctc")
        self.lm = None if options.lm is None else Path(options.lm)
        self.lexicon_size = 0
        common = dict(
            tokens=self.symbols, nbest=1, beam_size=self.beam, beam_size_token=beam_size_token,
            beam_threshold=options.beam_threshold, sil_score=sil_score, log_add=log_add,
            blank_token=BLANK_SYMBOL, sil_token=sil_token, unk_word=UNK,
        )
        if self.lm is None:
            self._decoder = ctc_decoder(lexicon=None, lm=None, **common)
            return

        arpa_words = lm_words(self.lm)  # the file checked before KenLM sees it; None: a KenLM binary
        if lexicon is not None:
            words, source = _read_word_list(Path(lexicon)), str(lexicon)
        elif arpa_words is not None:
            words, source = arpa_words, str(self.lm)
        else:
            raise ValueError(f"{self.lm} is not an ARPA file (a KenLM binary?): pass "
                             "lexicon= its word list (e.g. write_lexicon of the ARPA file)")
        with tempfile.TemporaryDirectory(prefix="asr-lexicon-") as tmp:
            lexicon_path, words_path = Path(tmp) / "lexicon.txt", Path(tmp) / "words.txt"
            if self.subword:
                kept = write_subword_lexicon(words, tokenizer, lexicon_path, source)
            else:
                kept = write_lexicon_from_words(words, list(tokenizer.vocab), lexicon_path, source)
            # the LM's word dictionary: the lexicon's words and <unk> (flashlight needs it)
            words_path.write_text("".join(w + "\n" for w in [*kept, UNK]), encoding="utf-8")
            self.lexicon_size = len(kept)
            try:
                self._decoder = ctc_decoder(
                    lexicon=str(lexicon_path), lm=str(self.lm), lm_dict=str(words_path),
                    lm_weight=options.lm_weight, word_score=options.word_score, unk_score=unk_score, **common,
                )
            except RuntimeError as e:  # what the checks above cannot see (a damaged KenLM binary)
                raise kenlm_error(self.lm, e) from None

    @staticmethod
    def _char_symbols(tokenizer) -> list[str]:
        """id -> flashlight symbol for characters; the space becomes the word boundary '|'."""
        vocab = list(tokenizer.vocab)
        if SPACE not in vocab:
            raise ValueError("the vocabulary has no space character: the beam decoder needs it "
                             "as the word boundary")
        if WORD_BOUNDARY in vocab:
            raise ValueError(f"the vocabulary holds {WORD_BOUNDARY!r}, the decoder's word "
                             "boundary symbol; it cannot be a character as well")
        symbols = [BLANK_SYMBOL, EOS_SYMBOL] + [WORD_BOUNDARY if c == SPACE else c for c in vocab]
        if len(symbols) != len(tokenizer.units):
            raise ValueError("tokenizer units do not follow the <blank> <eos> chars... layout")
        return symbols

    @property
    def uses_lexicon(self) -> bool:
        return self.lm is not None

    def decode(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        """Best hypothesis per utterance.

        log_probs: [B, T, V] log-softmax outputs (converted to float32 CPU contiguous here);
        lengths: [B] valid frames. Returns B strings.
        """
        lengths = _check_inputs(log_probs, lengths)
        V = log_probs.shape[-1]
        if V != len(self.symbols):
            raise ValueError(f"log_probs have {V} units, the tokenizer {len(self.symbols)}")
        emissions = log_probs.detach().to("cpu", torch.float32)
        closing = torch.full((1, V), CLOSING_FRAME_OTHERS)
        closing[0, self.boundary_id] = 0.0
        texts = []
        for b, n in enumerate(lengths):
            if n == 0:
                texts.append("")
                continue
            x = emissions[b, :n]
            if self.uses_lexicon and not self.subword:  # a piece word is complete on its last piece
                x = torch.cat([x, closing])
            texts.append(self._best(self._decoder(x.unsqueeze(0).contiguous())[0]))
        return texts

    # --- online: one utterance given in pieces (asr/inference/streaming.py's live decoding) ---
    # flashlight's decode_begin / decode_step / decode_end: the hypotheses after each piece are
    # those of the whole search at that frame, so pieces give the whole-utterance result
    # (tests/test_streaming.py). The search holds every frame's hypotheses until `end`: a stream
    # closes its segments (endpoints) to keep that bounded.

    def begin(self) -> None:
        """Start an utterance (after `end`, a new one)."""
        self._decoder.decode_begin()

    def step(self, log_probs: torch.Tensor) -> list[int]:
        """The next frames of the utterance: log_probs [n, V] (any float dtype or device); returns
        each frame's best unit."""
        if log_probs.shape[0]:
            self._decoder.decode_step(log_probs.detach().to("cpu", torch.float32).contiguous())
        return log_probs.argmax(dim=-1).tolist()

    def partial(self) -> str:
        """The best hypothesis so far (with a lexicon: its completed words)."""
        return self._best(self._all_hypotheses())

    def _all_hypotheses(self):
        """Every hypothesis of the search at its last frame. torchaudio's `get_final_hypothesis`
        gives the first `nbest` (1) of flashlight's list, which is in score order only once the
        search has ended: mid-utterance its first was not the best in 26 of 32 blocks, and two runs
        of the same audio showed different partials. Hence the whole list, and the best by score."""
        return self._decoder._to_hypo(self._decoder.decoder.get_all_final_hypothesis())

    def end(self) -> str:
        """The utterance's final text; `begin` starts the next."""
        if self.uses_lexicon and not self.subword:
            closing = torch.full((1, len(self.symbols)), CLOSING_FRAME_OTHERS)
            closing[0, self.boundary_id] = 0.0
            self._decoder.decode_step(closing.contiguous())
        self._decoder.decode_end()
        return self._best(self._all_hypotheses())

    def _best(self, hyps) -> str:
        """The best-scoring hypothesis' text (`_all_hypotheses` says why by score)."""
        if not hyps:
            return ""
        best = max(hyps, key=lambda h: h.score)  # the first of equal scores: the same every run
        if self.uses_lexicon:  # the completed words: the tokens may end in an unfinished one
            return tidy(" ".join(best.words))
        return self._text(best.tokens.tolist())

    def _text(self, ids: list[int]) -> str:
        """Collapsed token ids (blanks already out) -> text; '|' -> space, <eos> dropped."""
        if self.subword:
            return tidy(self.tokenizer.decode(ids))
        chars = [SPACE if i == self.boundary_id else self.tokenizer.units[i]
                 for i in ids if i not in (BLANK, EOS)]
        return tidy("".join(chars))


# --------------------------------------------------------------------------------------
# the strategies asr/decoding/decoder.py registers for model kind "ctc"
# --------------------------------------------------------------------------------------
class CTCBatch(BatchStrategy):
    """The model's log-probs (`model.log_probs`), then a log-prob decoder (greedy or beam):
    the log-probs are those the words are aligned on."""

    def __init__(self, model, tokenizer, options: DecodeOptions, search):
        super().__init__(model, tokenizer, options)
        self.search = search

    def __call__(self, feats: torch.Tensor, lengths: torch.Tensor, align: bool = False) -> Decoded:
        log_probs, out_lens = self.model.log_probs(feats, lengths)  # [B, T', V], [B]
        return Decoded(self.search.decode(log_probs, out_lens), log_probs, out_lens)


def greedy_batch(model, tokenizer, options: DecodeOptions) -> CTCBatch:
    return CTCBatch(model, tokenizer, options, CTCGreedyDecoder(tokenizer))


def beam_batch(model, tokenizer, options: DecodeOptions) -> CTCBatch:
    return CTCBatch(model, tokenizer, options, CTCBeamDecoder(tokenizer, options))


def greedy_stream(model, tokenizer, options: DecodeOptions) -> CTCGreedyStream:
    return CTCGreedyStream(tokenizer)


def beam_stream(model, tokenizer, options: DecodeOptions) -> CTCBeamDecoder:
    return CTCBeamDecoder(tokenizer, options)
