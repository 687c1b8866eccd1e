"""The model kinds: `model.kind` of every network asr/models.py builds (a leaf module, so the
decoders can check a kind without importing the networks)."""

KINDS = ("ctc", "las")  # asr/ctc.py's CTCModel, asr/las.py's LASModel
