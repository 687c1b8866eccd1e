"""From a network's outputs to text: `DecodeOptions` (every default, `options.py`), the
`Decoder` facade (`decoder.py`), CTC greedy and flashlight beam search (`ctc.py`), LAS greedy
and joint CTC/attention beam search (`las.py`), prefix and word-LM scorers (`scorers.py`), the
word n-gram LM (`lm.py`) and word times from the CTC alignment (`timestamps.py`). Knows the
model kinds, never the networks' code."""
