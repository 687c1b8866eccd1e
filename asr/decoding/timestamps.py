"""Word timestamps from a CTC alignment: a decoded text aligned against the frame log-probs.

    log_probs [T, V] (natural log, one utterance, CTC units: 0 = blank)
    text "le chat dort" (what any decoding gave: greedy, beam, beam + LM)
        --targets: the words' unit ids (a space unit between words for characters) [L]--
        --torchaudio.functional.forced_align--> one unit per frame [T] (the best CTC path
          that spells exactly `text`), its log-prob per frame [T]
        --> per word: first frame of its first unit, one past the last frame of its last
            unit (x frame_shift seconds), and the mean probability of those units' frames

The frame shift is the seconds between two log-prob frames: the feature hop x the
encoder's time reduction / the CTC head's upsampling (`frame_shift`), e.g. 10 ms x 4 = 40 ms
for the conv front's two stride-2 layers. Feature frame i is centred on i x hop (centred
STFT) and the conv front keeps that origin, so frame t of the log-probs sits at t x shift.

CTC emits each unit as a spike of a frame or two: a word starts at its first unit's first
frame and ends after its last unit's last frame on the path. The times are where the model
put its spikes: a well-trained model puts them on the sound (a little after a letter's
onset); a model that memorised its few training clips may emit them well ahead of it, and
where the path keeps a unit across a pause, the word stretches over the pause.

A word that cannot be placed (no unit of it in the model's units, or more units than frames)
gets start / end / score None.

A transducer needs no alignment: its search records the frame each unit was emitted at
(`emitted_words`): a word starts at its first unit's frame and ends one frame after its last
unit's, its score the mean probability of its units where they were emitted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from asr.tokens.subword import WORD_START
from asr.tokens.units import BLANK, EOS, SPACE


@dataclass
class Word:
    """A word and where it is: seconds from the start of the audio, and the mean probability
    of its frames on the alignment (None when it could not be placed). Unpacks as a tuple:
    `word, start, end, score = w`."""

    word: str
    start: float | None
    end: float | None
    score: float | None

    def __iter__(self):
        return iter((self.word, self.start, self.end, self.score))

    def __getitem__(self, i):
        return (self.word, self.start, self.end, self.score)[i]

    def __len__(self) -> int:
        return 4

    def to_dict(self) -> dict:
        return asdict(self)


def time_reduction(model) -> int:
    """Feature frames per encoder frame of `model` (a torch model's encoder, or an ONNX model's)."""
    encoder = getattr(model, "encoder", None)
    return int(getattr(encoder, "time_reduction", None) or model.time_reduction)


def frame_shift(model, hop_s: float) -> float:
    """Seconds between two of `model`'s CTC log-prob frames, features `hop_s` apart.

    CTC model: encoder time reduction / upsample; LAS: its encoder's time reduction (its
    CTC head runs on the encoder frames)."""
    return hop_s * time_reduction(model) / getattr(model, "upsample", 1)


def _targets(words: list[str], tokenizer) -> tuple[list[int], list[int]]:
    """Unit ids of `words` and, per id, the index of its word (-1: a separating space)."""
    space = None
    if getattr(tokenizer, "kind", "char") == "char" and SPACE in tokenizer.vocab:
        space = tokenizer.encode(SPACE)[0]
    ids: list[int] = []
    owner: list[int] = []
    for i, word in enumerate(words):
        units = [u for u in tokenizer.encode(word) if u != BLANK]
        if not units:
            continue
        if ids and space is not None:
            ids.append(space)
            owner.append(-1)
        ids += units
        owner += [i] * len(units)
    return ids, owner


def _unit_spans(labels: list[int]) -> list[tuple[int, int]]:
    """The frames [start, end) of each emitted unit on a CTC path (labels [T]), in order.

    A new unit starts wherever a non-blank label differs from the previous frame's (two
    equal units in a row always have a blank between them on a valid path)."""
    spans: list[tuple[int, int]] = []
    prev = BLANK
    for t, label in enumerate(labels):
        if label != BLANK:
            if label != prev:
                spans.append((t, t + 1))
            else:
                spans[-1] = (spans[-1][0], t + 1)
        prev = label
    return spans


def align_words(log_probs: torch.Tensor, text: str, tokenizer, shift: float) -> list[Word]:
    """Words of `text` with their times, aligned on one utterance's CTC log-probs.

    log_probs: [T, V] natural-log CTC posteriors (the valid frames only, any device);
    text: the decoded words, space separated; tokenizer: the model's (char or unigram);
    shift: seconds per frame (`frame_shift`). Returns one Word per word of `text`, in order.
    """
    words = text.split()
    if not words:
        return []
    ids, owner = _targets(words, tokenizer)
    unplaced = [Word(w, None, None, None) for w in words]
    if not ids or len(ids) > log_probs.shape[0]:
        return unplaced
    from torchaudio.functional import forced_align

    emissions = log_probs.detach().to("cpu", torch.float32).unsqueeze(0).contiguous()  # [1, T, V]
    targets = torch.tensor([ids], dtype=torch.int32)  # [1, L]
    try:
        labels, scores = forced_align(emissions, targets, blank=BLANK)  # [1, T] each
    except RuntimeError:  # no valid path (repeats need blanks between them: too few frames)
        return unplaced
    spans = _unit_spans(labels[0].tolist())
    if len(spans) != len(ids):
        return unplaced
    probs = scores[0].exp()
    result = []
    for i, w in enumerate(words):
        mine = [span for span, o in zip(spans, owner) if o == i]
        if not mine:
            result.append(Word(w, None, None, None))
            continue
        frames = torch.cat([probs[a:b] for a, b in mine])
        result.append(Word(w, round(mine[0][0] * shift, 3), round(mine[-1][1] * shift, 3),
                           round(float(frames.mean()), 4)))
    return result


def emitted_words(units: list[int], frames: list[int], probs: list[float], text: str, tokenizer,
                  shift: float) -> list[Word]:
    """Words of `text` with the times of a transducer's emissions: units [n] (no blank), the
    frame each was emitted at [n], its probability there [n]; shift: seconds per frame. The
    units are cut into words where characters have a space or a piece starts with "▁"; when
    they make as many words as `text` has (the normaliser may respell one), word i of the text
    takes the i-th group's times, else every word is unplaced."""
    words = text.split()
    groups: list[list] = []  # [first frame, last frame, probs]
    open_word = False
    for u, f, p in zip(units, frames, probs):
        piece = tokenizer.units[u]
        if u in (BLANK, EOS) or piece == SPACE:
            open_word = False
            continue
        if piece.startswith(WORD_START):
            open_word, piece = False, piece[len(WORD_START):]
            if not piece:
                continue
        if not open_word:
            groups.append([f, f, []])
            open_word = True
        groups[-1][1] = f
        groups[-1][2].append(p)
    if len(groups) != len(words):
        return [Word(w, None, None, None) for w in words]
    return [Word(w, round(a * shift, 3), round((b + 1) * shift, 3), round(sum(ps) / len(ps), 4))
            for w, (a, b, ps) in zip(words, groups)]
