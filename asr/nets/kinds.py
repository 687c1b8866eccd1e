"""The model kinds: `model.kind` of every network asr/nets/models.py builds (a leaf module, so the
decoders can check a kind without importing the networks)."""

KINDS = ("ctc", "las", "rnnt")  # asr/nets/ctc.py's CTCModel, asr/nets/las.py's LASModel, asr/nets/transducer.py's
