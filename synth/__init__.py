"""Synthetic demo corpus in Mozilla Common Voice's own on-disk layout.

No real corpus can be downloaded everywhere, so `synthesize` makes one: espeak-ng voices
read French sentences from `synth.french`, and the clips are written exactly as a
Common Voice release lays them out, so the pipeline that reads real releases reads this
one unchanged:

    out/                                    (the language folder, e.g. data/demo/fr)
      clips/common_voice_fr_<id>.mp3        48 kHz mono mostly; some 44.1/32 kHz, stereo
      train.tsv dev.tsv test.tsv            the split TSVs (current release columns)
      validated.tsv                         train+dev+test plus ~5 % clips in no split
      invalidated.tsv other.tsv             header only
      clip_durations.tsv                    clip, duration[ms]
      .synth.json                           parameters + completion flag, written last

Demo tooling, apart from the product: the Common Voice -> shards stage never imports it;
`asr-cli synth`, the demo, the tests and the benchmarks do. Modules:

    plan.py      speakers, voices, sentences, file names, rates, votes (no audio)
    render.py    one clip: espeak-ng, then room / microphone / noise, MP3 (worker processes)
    layout.py    the TSVs, the stamp, stale clip cleanup
    corpus.py    `synthesize`: plan, render every clip, write the layout
    bandlimit.py `band_limited_copy`: the same corpus as 8 kHz recordings (tests, benchmarks)
    french/      the French sentence generator (grammar over a hand-written lexicon)

All randomness comes from (seed, clip index), so any `jobs` gives the same bytes.
"""

from synth.corpus import CorpusExistsError, synthesize
from synth.plan import SynthConfig
from synth.render import check_espeak

__all__ = ["CorpusExistsError", "SynthConfig", "check_espeak", "synthesize"]
