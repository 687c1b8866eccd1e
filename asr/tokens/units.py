"""The unit ids every tokenizer, model and decoder shares (a leaf: imports nothing of ours).

    0            <blank>  CTC blank; also the padding value of target tensors
    1            <eos>    end of sentence, also <sos> for the attention speller
    2 .. V-1     units    characters of the dataset's vocabulary, or SentencePiece pieces

Fixed, so CTC and attention models share one output layer layout.
"""

BLANK = 0
EOS = 1
SOS = EOS  # the attention speller starts from <eos>
SPECIALS = ("<blank>", "<eos>")
SPACE = " "  # the word separator: a unit like any other for characters
