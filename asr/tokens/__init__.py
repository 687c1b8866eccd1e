"""Units: what a model writes. The reserved ids (`units.py`: blank, eos), the character
tokenizer and `tokenizer_from_state` (`tokenizer.py`), SentencePiece unigram pieces
(`subword.py`). The lowest floor of asr/: it imports nothing else of ours."""
