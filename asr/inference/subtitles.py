"""Subtitles (SRT, WebVTT) from word timestamps (asr/decoding/timestamps.py's `Word`s).

Words are grouped into cues in order: a cue ends before a word that would make it longer
than MAX_CUE_S seconds or MAX_CUE_CHARS characters, or that starts more than MAX_GAP_S after
the previous word ends. Without word times (a LAS model without a CTC head) the whole text
is one cue over the file's duration.

    srt:  1\\n00:00:01,230 --> 00:00:02,000\\nle chat dort\\n\\n2\\n...
    vtt:  WEBVTT\\n\\n00:00:01.230 --> 00:00:02.000\\nle chat dort\\n\\n...
"""

from __future__ import annotations

MAX_CUE_S = 7.0
MAX_CUE_CHARS = 42
MAX_GAP_S = 1.5


def cues(words, duration: float) -> list[tuple[float, float, str]]:
    """(start, end, text) per cue; `words`: (word, start, end, score) items."""
    words = list(words)
    if not words:
        return []
    if any(w[1] is None or w[2] is None for w in words):
        return [(0.0, duration, " ".join(w[0] for w in words))]
    out: list[list] = []
    for word, start, end, _ in words:
        if out:
            c = out[-1]
            text = c[2] + " " + word
            if end - c[0] <= MAX_CUE_S and len(text) <= MAX_CUE_CHARS and start - c[1] <= MAX_GAP_S:
                c[1], c[2] = max(c[1], end), text
                continue
        out.append([start, end, word])
    return [(s, max(e, s + 0.001), t) for s, e, t in out]


def timestamp(seconds: float, decimal: str = ",") -> str:
    """12.5 -> 00:00:12,500 (SRT); decimal "." for WebVTT."""
    ms = max(0, round(seconds * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{decimal}{ms:03d}"


def srt(words, duration: float) -> str:
    return "".join(f"{i}\n{timestamp(s)} --> {timestamp(e)}\n{t}\n\n"
                   for i, (s, e, t) in enumerate(cues(words, duration), start=1))


def vtt(words, duration: float) -> str:
    return "WEBVTT\n\n" + "".join(f"{timestamp(s, '.')} --> {timestamp(e, '.')}\n{t}\n\n"
                                  for s, e, t in cues(words, duration))
