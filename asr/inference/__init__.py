"""Using a trained model: opening a checkpoint or an ONNX export (`loading.py`,
`onnx_model.py`), transcribing files (`transcribe.py`, long ones in windows: `longform.py`),
live streams (`streaming.py`), CER / WER on a split (`evaluate.py`), the Python API
(`api.py`: `Recognizer`), subtitles and the ONNX export itself (`export.py`). Never imports
training."""
