"""Training: `TrainConfig` (every training default, `config.py`), the loop (`loop.py`), what a
run logs (`log.py`), fine-tuning from a parent checkpoint (`finetune.py`) and checkpoint
averaging (`averaging.py`). Uses the networks, the loader and greedy decoding (the dev CER)."""
