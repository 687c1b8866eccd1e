"""Where the work runs: devices, ranks and torchrun / `--procs` (`distributed.py`), and the
precision a machine trains fastest in, measured (`precision.py`). Imports nothing else of asr/."""
