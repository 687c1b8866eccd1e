"""Where the work runs: devices, ranks and torchrun / `--procs` (`distributed.py`), the
precision a machine trains fastest in, measured (`precision.py`), and the rule of the batch
that fits its memory (`batchsize.py`). Imports nothing else of asr/."""
