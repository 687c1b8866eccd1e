"""The networks, nothing else: the encoder interface and its implementations (`encoders/`:
conv fronts, BiRNN, pyramidal BiRNN, Conformer), the CTC and LAS models (`ctc.py`, `las.py`),
the model kinds (`kinds.py`), the presets and `build_model` (`models.py`), and CTC's frame-rate
choice (`ctc_frames.py`). Decoding, training and inference sit above and import from here."""
