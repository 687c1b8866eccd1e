"""cv-asr's models side. `from asr import Recognizer` is the Python API (asr/inference/api.py); it is
imported on first use, so `import asr` (and every `asr.x` module) stays light."""

__all__ = ["Recognizer"]


def __getattr__(name: str):
    if name == "Recognizer":
        from asr.inference.api import Recognizer

        return Recognizer
    raise AttributeError(f"module 'asr' has no attribute {name!r}")
