"""CTC model (Graves et al. 2006): shared encoder -> linear -> units + blank.

    feats [B, T, F] -> encoder (BiRNN or Conformer) -> [B, T/4, D] -> Linear -> logits [B, T/4 * U, V]

U (`upsample`, default 1) output frames per encoder frame: with U = 2 the head predicts two
frames' distributions from each encoder frame (50 per second), for speech so fast that its
characters (and the blanks CTC needs between doubled letters) crowd the encoder's 25 frames
per second, at the cost of one wider linear layer. On the demo corpus (median 14.5
characters per second) it did not train faster, so it is off by default.

Units: characters, or SentencePiece pieces (`--tokens unigram:N`; decoding turns pieces back
into words, asr/decoding/ctc.py). CTC needs T' * U >= label length + repeated neighbours;
the lengths are not checked beforehand: an utterance that cannot be aligned gets an
infinite loss, which `zero_infinity` turns into 0 (no gradient). On the demo corpus (x4
subsampling, 25 frames/s) none is: the need is at most 0.99 of T' with characters (median
0.60), 0.66 with unigram:256 pieces (median 0.32), so pieces leave the most headroom.

V is the tokenizer's size (blank = 0 and <eos> = 1 included: <eos> is never a CTC target,
its output simply learns to stay improbable). The loss is CTC with `zero_infinity`, summed
over utterances and divided by the number of target tokens. Decoding (greedy, beam search,
word LM) is asr/decoding/ctc.py's, on `log_probs`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from asr.nets.config import CTCConfig  # noqa: F401  (its sizes, re-exported)
from asr.nets.encoders import make_encoder
from asr.tokens.units import BLANK


class CTCModel(nn.Module):
    kind = "ctc"

    def __init__(self, cfg: CTCConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = make_encoder(cfg.encoder)  # RNNEncoder or ConformerEncoder
        self.upsample = cfg.upsample
        self.head = nn.Linear(self.encoder.output_dim, cfg.vocab_size * cfg.upsample)

    def unit_tensors(self) -> dict[str, int]:
        """state_dict name -> blocks, of the tensors whose rows are the units: row u * V + v is unit v
        of output frame u (what --init-from maps from one unit set to another, asr/training/finetune.py)."""
        return {"head.weight": self.upsample, "head.bias": self.upsample}

    def log_probs(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """feats [B, T, F], lengths [B] -> float32 log-probabilities [B, T' * U, V], lengths [B]."""
        enc, lengths = self.encoder(feats, lengths)
        logits = self.head(enc).float()  # [B, T', U * V]
        b, t, _ = logits.shape
        logits = logits.reshape(b, t * self.upsample, -1)
        return F.log_softmax(logits, dim=-1), lengths * self.upsample

    def chunk_output(self, enc: torch.Tensor) -> torch.Tensor:
        """A stream chunk's valid encoder frames [1, n, D] -> what its strategy decodes: float32
        log-probabilities [n * U, V] (asr/inference/streaming.py)."""
        logits = self.head(enc).float()  # [1, n, U * V]
        return F.log_softmax(logits.reshape(-1, logits.shape[-1] // self.upsample), dim=-1)

    def forward(self, batch) -> dict:
        """Batch -> {"loss": per-token CTC loss, "tokens": target tokens, "log_probs", "lengths"}."""
        log_probs, lengths = self.log_probs(batch.feats, batch.feat_lens)
        tokens = batch.target_lens.sum().clamp(min=1)
        loss = F.ctc_loss(log_probs.transpose(0, 1), batch.targets, lengths, batch.target_lens,
                          blank=BLANK, reduction="sum", zero_infinity=True) / tokens
        return {"loss": loss, "tokens": tokens, "log_probs": log_probs, "lengths": lengths}
