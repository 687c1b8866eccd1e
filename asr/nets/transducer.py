"""Transducer (RNN-T, Graves 2012): an encoder, a prediction network and a joiner.

    feats [B, T, F] --encoder (Conformer; streaming presets too)--> enc [B, T', D] --enc_proj--> e [B, T', J]
    <blank> y1 .. yU --prediction network--> [B, U + 1, P] --pred_proj--> p [B, U + 1, J]
    joiner   logits [B, T', U + 1, V] = out(tanh(e[:, t] + p[:, u]))
    loss     -log P(y | x), the sum over every alignment of blanks and units, per target unit
             (`loss`: pruned RNN-T, or the full joint: below); optionally (1 - w) rnnt + w CTC,
             with a CTC head on the encoder (`ctc_weight` w, LAS's joint loss: it gives
             `align` its posteriors)

Prediction network (`predictor`):
  * "stateless"  icefall's stateless decoder (Ghodsi et al. 2020): the embeddings of the last
                 `pred_context` units (positions before the start are zero vectors, the start is
                 <blank>), a depthwise conv over them, ReLU. No recurrence: a hypothesis' state is
                 its last units, so equal endings share their output.
  * "lstm"       an embedding then `pred_layers` LSTM layers (the classic RNN-T).

Memory: the joint is B x T' x (U + 1) x V, and its hidden layer B x T' x (U + 1) x J.
  * "pruned" (the default; Kuang et al. 2022, icefall's recipe): a trivial joiner (logits
    am[t] + lm[u] of two linear projections: its normaliser is one matrix product, no
    B x T' x U x V tensor) gives the "simple" loss and, from its lattice's occupation, a window
    of `prune_range` units per frame (asr/nets/rnnt_loss.py); the real joiner runs on those
    B x T' x S cells only. loss = simple_scale * simple + pruned_scale * pruned, the scales
    going from (1, 0.1) to (0.5, 1) over the first quarter of training (at most 2,000 steps),
    as icefall's warm-up, while the windows are still poor. An utterance whose units cannot
    fit the windows (more than S - 1 a frame) is left out of the pruned term.
  * "full": torchaudio's `rnnt_loss` on the whole joint, computed in groups of utterances of
    at most JOINT_CELLS cells b x T'_max x (U_max + 1) (each trimmed to its own lengths), each
    group's joint recomputed in the backward pass (activation checkpointing) when the batch
    needs more than one: the joint of one group at a time is alive, whatever the batch.
The logits are fp32 (under bf16 autocast too).

Units: characters or SentencePiece pieces, the tokenizer's (blank = 0; <eos> = 1 is never a
target, its output learns to stay improbable, and decoding masks it). Decoding (greedy and
modified beam search, word LM fusion, word times from the frames units are emitted at) is
asr/decoding/transducer.py's, through `frames`, `decoder_start`, `decoder_step` and `joint`
(asr/inference/onnx_model.py's transducer has the same).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from asr.nets.config import RNNTConfig  # noqa: F401  (its sizes, re-exported)
from asr.nets.encoders import make_encoder
from asr.nets.rnnt_loss import lattice_nll, pruned_ranges, simple_loss, unit_arcs
from asr.tokens.units import BLANK

# Cells (utterance x frame x unit) of the joint alive at once in training. A demo batch (10,000
# feature frames: ~20 utterances x 125 frames x 75 units) fits in one group, ~190,000 cells, about
# 0.4 GB with J = 256; a GPU batch of conformer-base is cut into groups of this size.
JOINT_CELLS = 250_000
# pruned RNN-T's warm-up (icefall's): the simple loss's scale from 1 to SIMPLE_SCALE, the pruned
# loss's from PRUNED_START to 1, over the first quarter of training, at most WARM_STEPS steps
SIMPLE_SCALE, PRUNED_START, WARM_STEPS = 0.5, 0.1, 2000


class StatelessPredictor(nn.Module):
    """[B, U] units -> [B, U + 1, P]: output u sees units u - context + 1 .. u (unit 0: <blank>).

    Decoding state: the last `context` unit ids [N, context] (-1: before the start)."""

    def __init__(self, vocab_size: int, dim: int, context: int):
        super().__init__()
        self.context, self.out_dim = context, dim
        self.embed = nn.Embedding(vocab_size, dim)
        self.conv = nn.Conv1d(dim, dim, context, groups=dim, bias=False) if context > 1 else None

    def _outputs(self, units: torch.Tensor) -> torch.Tensor:
        """[N, L] ids (-1: none) -> [N, L - context + 1, P]."""
        x = self.embed(units.clamp(min=0)) * (units >= 0)[..., None].to(self.embed.weight.dtype)
        if self.conv is not None:
            x = self.conv(x.transpose(1, 2)).transpose(1, 2)
        return F.relu(x)

    def start(self, n: int, device=None) -> torch.Tensor:
        return torch.full((n, self.context), -1, dtype=torch.long, device=device)

    def forward(self, targets: torch.Tensor) -> torch.Tensor:
        start = self.start(targets.shape[0], targets.device)
        start[:, -1] = BLANK
        return self._outputs(torch.cat([start, targets], dim=1))

    def step(self, state: torch.Tensor, units: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """state [N, context], units [N] -> (next state, output [N, P])."""
        state = torch.cat([state[:, 1:], units[:, None].to(state.dtype)], dim=1)
        return state, self._outputs(state)[:, 0]


class LSTMPredictor(nn.Module):
    """[B, U] units -> [B, U + 1, P]: an LSTM over <blank> y1 .. yU. Decoding state: h and c,
    [N, 2, layers, P]."""

    def __init__(self, vocab_size: int, dim: int, layers: int):
        super().__init__()
        self.out_dim, self.layers = dim, layers
        self.embed = nn.Embedding(vocab_size, dim)
        self.lstm = nn.LSTM(dim, dim, layers, batch_first=True)

    def start(self, n: int, device=None) -> torch.Tensor:
        return torch.zeros(n, 2, self.layers, self.out_dim, device=device, dtype=self.embed.weight.dtype)

    def forward(self, targets: torch.Tensor) -> torch.Tensor:
        units = torch.cat([torch.full_like(targets[:, :1], BLANK), targets], dim=1)
        return self.lstm(self.embed(units))[0]

    def step(self, state: torch.Tensor, units: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, c = state[:, 0].transpose(0, 1).contiguous(), state[:, 1].transpose(0, 1).contiguous()
        out, (h, c) = self.lstm(self.embed(units)[:, None], (h, c))
        return torch.stack([h, c], dim=0).permute(2, 0, 1, 3), out[:, 0]


class Joiner(nn.Module):
    """e [..., J] (projected encoder frames) + p [..., J] (projected predictions) -> logits [..., V]."""

    def __init__(self, enc_dim: int, pred_dim: int, joint_dim: int, vocab_size: int):
        super().__init__()
        self.enc_proj = nn.Linear(enc_dim, joint_dim)
        self.pred_proj = nn.Linear(pred_dim, joint_dim)
        self.out = nn.Linear(joint_dim, vocab_size)

    def forward(self, e: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(e + p))


def joint_groups(enc_lens: torch.Tensor, target_lens: torch.Tensor, cells: int = JOINT_CELLS) -> list[torch.Tensor]:
    """The batch's rows in groups whose joint, b x max T' x (max U + 1), holds at most `cells`
    cells (one utterance at least), longest first."""
    order = torch.argsort(enc_lens * (target_lens + 1), descending=True).tolist()
    t, u = enc_lens.tolist(), target_lens.tolist()
    groups, rows, t_max, u_max = [], [], 0, 0
    for i in order:
        tt, uu = max(t_max, t[i]), max(u_max, u[i] + 1)
        if rows and (len(rows) + 1) * tt * uu > cells:
            groups.append(rows)
            rows, tt, uu = [], t[i], u[i] + 1
        rows.append(i)
        t_max, u_max = tt, uu
    groups.append(rows)
    return [torch.tensor(g, dtype=torch.long, device=enc_lens.device) for g in groups]


class TransducerModel(nn.Module):
    kind = "rnnt"

    def __init__(self, cfg: RNNTConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = make_encoder(cfg.encoder)
        v = cfg.vocab_size
        self.predictor = (StatelessPredictor(v, cfg.pred_dim, cfg.pred_context) if cfg.predictor == "stateless"
                          else LSTMPredictor(v, cfg.pred_dim, cfg.pred_layers))
        self.dropout = nn.Dropout(cfg.encoder.dropout)
        self.joiner = Joiner(self.encoder.output_dim, cfg.pred_dim, cfg.joint_dim, v)
        if cfg.loss == "pruned":  # the trivial joiner of the simple loss (training only)
            self.simple_am = nn.Linear(self.encoder.output_dim, v)
            self.simple_lm = nn.Linear(cfg.pred_dim, v)
        self.ctc_head: nn.Linear | None = None
        self._set_ctc_head(cfg.ctc_weight > 0)
        self.ctc_weight = float(cfg.ctc_weight)
        self.joint_cells = JOINT_CELLS
        self.warm = 1.0  # of pruned RNN-T's warm-up done (on_step)

    # ---- training hooks (LAS's: asr/training/run.py calls configure_training) ----
    def _set_ctc_head(self, present: bool) -> None:
        if present and self.ctc_head is None:
            device = self.joiner.out.weight.device
            self.ctc_head = nn.Linear(self.encoder.output_dim, self.cfg.vocab_size).to(device)
        elif not present:
            self.ctc_head = None

    def configure_training(self, cfg, tokenizer) -> None:
        """The auxiliary CTC loss's weight from the TrainConfig (its head added or removed
        before the optimizer exists)."""
        w = float(cfg.ctc_weight)
        if not 0.0 <= w < 1.0:
            raise ValueError(f"ctc_weight of a transducer must be in [0, 1), got {w}")
        self._set_ctc_head(w > 0)
        self.ctc_weight = w

    def on_step(self, step: int, max_steps: int) -> None:
        """Pruned RNN-T's warm-up: done after a quarter of the steps, WARM_STEPS at most."""
        self.warm = min(1.0, step / max(1, min(WARM_STEPS, max_steps // 4)))

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """As nn.Module's, but the CTC head follows the weights (present iff they hold one)."""
        self._set_ctc_head(any(k.startswith("ctc_head.") for k in state_dict))
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def unit_tensors(self) -> dict[str, int]:
        """state_dict name -> blocks (1) of the tensors whose rows are the units (--init-from)."""
        names = ["predictor.embed.weight", "joiner.out.weight", "joiner.out.bias"]
        if self.cfg.loss == "pruned":
            names += ["simple_am.weight", "simple_am.bias", "simple_lm.weight", "simple_lm.bias"]
        if self.ctc_head is not None:
            names += ["ctc_head.weight", "ctc_head.bias"]
        return dict.fromkeys(names, 1)

    # ---- encoder ----
    @property
    def time_reduction(self) -> int:
        return self.encoder.time_reduction

    def encode(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """feats [B, T, F], lengths [B] -> enc [B, T', D], lengths [B]."""
        return self.encoder(feats, lengths)

    def ctc_log_probs(self, enc: torch.Tensor) -> torch.Tensor:
        """enc [B, T', D] -> float32 CTC log-probabilities [B, T', V] (the auxiliary head)."""
        if self.ctc_head is None:
            raise ValueError("this transducer has no CTC head (trained with ctc_weight 0)")
        return F.log_softmax(self.ctc_head(enc).float(), dim=-1)

    # ---- decoding interface (asr/decoding/transducer.py; the ONNX twin has the same) ----
    def frames(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """feats [B, T, F], lengths [B] -> the joiner's encoder side e [B, T', J], lengths [B]."""
        enc, lengths = self.encoder(feats, lengths)
        return self.joiner.enc_proj(enc), lengths

    def chunk_output(self, enc: torch.Tensor) -> torch.Tensor:
        """A stream chunk's valid encoder frames [1, n, D] -> what its strategy decodes, e [n, J]."""
        return self.joiner.enc_proj(enc)[0].float()

    def decoder_start(self, n: int) -> torch.Tensor:
        """The prediction network's state before anything, for n hypotheses."""
        return self.predictor.start(n, self.joiner.out.weight.device)

    def decoder_step(self, state: torch.Tensor, units: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """state [N, ...], units [N] -> (next state, the joiner's prediction side p [N, J])."""
        state, out = self.predictor.step(state, units)
        return state, self.joiner.pred_proj(out)

    def joint(self, e: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """e [N, J], p [N, J] -> float32 log-probabilities [N, V]."""
        return F.log_softmax(self.joiner(e, p).float(), dim=-1)

    # ---- training ----
    def _group_loss(self, e, p, targets, enc_lens, target_lens) -> torch.Tensor:
        from torchaudio.functional import rnnt_loss  # torchaudio: loaded on first use

        logits = self.joiner(e[:, :, None], p[:, None]).float()  # [b, T', U + 1, V]
        return rnnt_loss(logits, targets.int(), enc_lens.int(), target_lens.int(), blank=BLANK, reduction="sum")

    def transducer_loss(self, e: torch.Tensor, enc_lens: torch.Tensor, p: torch.Tensor, targets: torch.Tensor,
                        target_lens: torch.Tensor) -> torch.Tensor:
        """e [B, T', J], p [B, U + 1, J], targets [B, U] -> the summed RNN-T loss, the joint
        computed group by group (see the module docstring's "Memory")."""
        groups = joint_groups(enc_lens, target_lens, self.joint_cells)
        recompute = len(groups) > 1 and torch.is_grad_enabled()
        total = e.new_zeros((), dtype=torch.float32)
        for rows in groups:
            t, u = int(enc_lens[rows].max()), int(target_lens[rows].max())
            args = (e[rows, :t], p[rows, :u + 1], targets[rows, :u], enc_lens[rows], target_lens[rows])
            total = total + (checkpoint(self._group_loss, *args, use_reentrant=False) if recompute
                             else self._group_loss(*args))
        return total

    def pruned_loss(self, enc: torch.Tensor, enc_lens: torch.Tensor, pred: torch.Tensor, targets: torch.Tensor,
                    target_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """enc [B, T', D], pred [B, U + 1, P], targets [B, U] -> (simple, pruned) losses, summed
        (see the module docstring's "Memory")."""
        b, t_max, _ = enc.shape
        simple, occupation = simple_loss(self.simple_am(enc), self.simple_lm(pred), targets, enc_lens,
                                         target_lens, BLANK)
        s = min(self.cfg.prune_range, pred.shape[1])
        starts = pruned_ranges(occupation, enc_lens, target_lens, s)  # [B, T']
        u_index = starts[:, :, None] + torch.arange(s, device=enc.device)  # [B, T', S]
        u_at = u_index.clamp(max=pred.shape[1] - 1).reshape(b, t_max * s)
        p = self.joiner.pred_proj(pred)
        p = p.gather(1, u_at[:, :, None].expand(-1, -1, p.shape[2])).reshape(b, t_max, s, -1)
        logits = self.joiner(self.joiner.enc_proj(enc)[:, :, None], p).float()  # [B, T', S, V]
        normalizer = torch.logsumexp(logits, dim=-1)
        next_unit = torch.cat([targets, targets.new_zeros(b, 1)], dim=1).gather(1, u_at).reshape(b, t_max, s)
        y = unit_arcs(logits.gather(3, next_unit[..., None]).squeeze(3), normalizer, u_index, target_lens)
        pruned = lattice_nll(y, logits[..., BLANK] - normalizer, starts, enc_lens, target_lens)
        fits = target_lens <= (s - 1) * enc_lens  # a window can climb S - 1 units a frame
        return simple.sum(), torch.where(fits, pruned, torch.zeros_like(pruned)).sum()

    def forward(self, batch) -> dict:
        """Batch -> {"loss", "tokens": target units, "rnnt_loss" (the pruned or full term),
        "simple_loss" (pruned), "ctc_loss" (with a CTC head)}."""
        enc, enc_lens = self.encoder(batch.feats, batch.feat_lens)
        tokens = batch.target_lens.sum().clamp(min=1)
        pred = self.dropout(self.predictor(batch.targets))  # [B, U + 1, P]
        if self.cfg.loss == "pruned":
            simple, pruned = self.pruned_loss(enc, enc_lens, pred, batch.targets, batch.target_lens)
            simple, rnnt = simple / tokens, pruned / tokens
            w = self.warm if self.training else 1.0
            loss = (1 - w * (1 - SIMPLE_SCALE)) * simple + (PRUNED_START + w * (1 - PRUNED_START)) * rnnt
            result = {"tokens": tokens, "rnnt_loss": rnnt.detach(), "simple_loss": simple.detach()}
        else:
            rnnt = self.transducer_loss(self.joiner.enc_proj(enc), enc_lens, self.joiner.pred_proj(pred),
                                        batch.targets, batch.target_lens) / tokens
            loss, result = rnnt, {"tokens": tokens, "rnnt_loss": rnnt.detach()}
        if self.ctc_head is not None and self.ctc_weight > 0:
            ctc = F.ctc_loss(self.ctc_log_probs(enc).transpose(0, 1), batch.targets, enc_lens, batch.target_lens,
                             blank=BLANK, reduction="sum", zero_infinity=True) / tokens
            loss = (1 - self.ctc_weight) * loss + self.ctc_weight * ctc
            result["ctc_loss"] = ctc.detach()
        result["loss"] = loss
        return result
