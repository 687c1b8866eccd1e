"""What every `asr-cli export` graph shares: the opset, the check's tolerance, the error, and
`onnx_bytes`, torch's TorchScript-based exporter (`dynamo=False`) with its notes silenced.

asr/inference/export.py (CTC, and the entry point) and asr/inference/export_transducer.py (the
transducer's three graphs) trace with it.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import warnings

import torch
from torch import nn

OPSET = 17
CHECK_ATOL = 1e-3  # log-probs (and a transducer's frames); measured differences are ~1e-6


class ExportError(ValueError):
    pass


@contextlib.contextmanager
def quiet_stderr():
    """File descriptor 2 to /dev/null: the exporter's C++ side prints notes there directly
    ("The shape inference of prim::PackPadded type is missing": the check after an export is
    what tells whether the graph is right)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def onnx_bytes(wrapper: nn.Module, args: tuple, inputs, outputs, axes: dict) -> bytes:
    """The serialised ONNX graph of `wrapper` (traced in eval mode on `args`), inputs and outputs
    named, `axes` its dynamic axes. The wrapped model is left in eval mode."""
    wrapper.eval()  # eval, so the exporter restores eval mode afterwards
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad(), quiet_stderr():
        warnings.simplefilter("ignore")  # the exporter's deprecation and RNN batch_first notes, its tracer's
        torch.onnx.export(wrapper, args, buf, dynamo=False, opset_version=OPSET, input_names=list(inputs),
                          output_names=list(outputs), dynamic_axes=axes)
    return buf.getvalue()
