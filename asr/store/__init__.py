"""Checkpoint files: safetensors for the tensors, JSON for everything else, so that loading a
file never runs code (`checkpoint.py`: save, load, validate, upgrade an older pickle). Knows
the tokenizers (to check a file's units) but no network: the model builder registers itself."""
