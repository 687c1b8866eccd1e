"""Training: `TrainConfig` (every training default, `config.py`), the run's set-up (`run.py`)
and the batch it trains with on its device (`autobatch.py`), the loop (`loop.py`), what a run
logs (`log.py`), fine-tuning from a parent checkpoint (`finetune.py`) and checkpoint averaging
(`averaging.py`). Uses the networks, the loader and greedy decoding (the dev CER)."""
