"""Batches from shards: the streaming loader (`loader.py`: bucketing, CMVN, exactly-once
splits over ranks and workers) and SpecAugment with the frequency warp (`specaug.py`; its
defaults in `config.py`, without torch). Reads shards only through pipeline.shardformat."""
