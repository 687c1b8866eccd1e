"""Listen, Attend and Spell (Chan et al. 2016) with an optional joint CTC loss (Kim et al. 2017).

    feats [B, T, F] --Listener--> enc [B, T', D] --CTC head (optional)--> [B, T', V]
                                       |
    <sos> y1 .. yL --Speller (LSTM, attention over enc)--> p(y1) .. p(yL) p(<eos>)

Listener (`listener` option):
  * "conv"    asr/nets/encoders/rnn.py's RNNEncoder: two stride-2 convs (x4) + BiGRU/BiLSTM, or with
              encoder="conformer" asr/nets/encoders/conformer.py's ConformerEncoder (x4 or x8)
  * "pyramid" asr/nets/encoders/pyramid.py's PyramidListener, Chan et al.'s pyramidal BiRNN: `frame_stack`
              input frames concatenated, a Linear to `proj_dim`, then `rnn_layers` BiRNN
              layers of which the last `pyramid_layers` first concatenate adjacent frames
              (time / 2 each); the defaults (stack 2, 2 pyramid layers) reduce time x8. At
              x8 there are ~12 encoder frames per second: with characters, fast speech has
              more units than frames, its CTC term is zeroed (`zero_infinity`), so pair it
              with `--tokens unigram:N` (or `--ctc-weight 0`).

Attention (`attention` option), additive (Bahdanau) over the encoder frames:
    e_t = w . tanh(W s + V h_t + U f_t + b),   f = Conv1d(a_prev)  [location-aware only]
  * "content"   no f term
  * "location"  f: `att_conv_channels` filters of width `att_conv_kernel` over the previous
                step's alignment (Chorowski et al. 2015), and over the sum of all past
                alignments too with `att_cumulative` (Tacotron 2's variant). The alignment
                before the first step (`att_init`) is uniform over the valid frames, or all
                on frame 0 ("first").
  Normalisation (`att_norm`), over valid frames only (padding gets weight 0):
  * "softmax"   a = softmax(e / att_temperature): temperature > 1 flattens the alignment,
                < 1 sharpens it
  * "sigmoid"   a = sigmoid(e / att_temperature) / sum sigmoid(...): Chorowski's
                "smoothing", which lets several frames carry weight at once.

Speller: `decoder_layers` LSTM cells over [embedding(y_{i-1}); context_{i-1}] (input
feeding), attention with the top state s_i, then logits = Linear(tanh(Linear([s_i; c_i]))).
<sos> and <eos> are both id 1; the blank (id 0) is never predicted (its logit is masked).

Training (`forward(batch)`; `configure_training(cfg, tokenizer)` and `on_step(step, max_steps)`
are called by asr/training/loop.py):
  * teacher forcing; scheduled sampling (Bengio et al. 2015): each input token is replaced,
    with probability p, by a token sampled from the speller's own previous distribution;
    p ramps linearly from 0 at step 0 to `cfg.sampling_rate` at `max_steps`
  * label smoothing `cfg.label_smoothing` = eps: loss per token
    (1 - eps) * -log p(y) + eps * mean over every unit but blank of -log p(unit)
  * joint CTC (ESPnet's multi-task loss) with w = `cfg.ctc_weight`:
    loss = w * ctc + (1 - w) * attention, each per token (CTC per target unit, attention per
    predicted unit, <eos> included). With w == 0 no CTC head exists (DDP has no unused
    parameters); the weight in use is saved with the weights and is the default of decoding.

Decoding (greedy, joint CTC/attention beam search, word LM fusion) is asr/decoding/las.py's;
the model gives it `encode`, `ctc_log_probs`, the speller's `memory` / `initial_state` /
`step`, and `time_reduction`. Presets and construction are in asr/nets/models.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from asr.nets.config import LASConfig  # noqa: F401  (its sizes, re-exported)
from asr.nets.encoders import EncoderInterface, make_encoder
from asr.nets.encoders.pyramid import PyramidListener
from asr.tokens.units import BLANK, EOS, SOS

MASKED_LOGIT = -1e4  # the blank's logit in the speller (never predicted; finite: no inf * 0)


# --------------------------------------------------------------------------------------
# Attention and speller
# --------------------------------------------------------------------------------------
@dataclass
class Memory:
    """What the speller attends to: enc [N, T', D], keys V h [N, T', A], mask [N, T'] (True = frame)."""

    enc: torch.Tensor
    keys: torch.Tensor
    mask: torch.Tensor

    def repeat(self, k: int) -> "Memory":
        """Each utterance k times in a row (beam search rows b*k .. b*k+k-1)."""
        return Memory(*(t.repeat_interleave(k, dim=0) for t in (self.enc, self.keys, self.mask)))


@dataclass
class SpellerState:
    """h, c: one [N, H] per LSTM layer; context [N, D]; att [N, T'] (the previous alignment);
    att_sum [N, T'] (the sum of all previous alignments)."""

    h: tuple[torch.Tensor, ...]
    c: tuple[torch.Tensor, ...]
    context: torch.Tensor
    att: torch.Tensor
    att_sum: torch.Tensor

    def select(self, rows: torch.Tensor) -> "SpellerState":
        return SpellerState(tuple(h[rows] for h in self.h), tuple(c[rows] for c in self.c), self.context[rows],
                            self.att[rows], self.att_sum[rows])


class Attention(nn.Module):
    """Additive attention, content-based or location-aware (see the module docstring).

    forward(s [N, H], memory, att_prev [N, T'], att_sum [N, T']) -> context [N, D], att [N, T']
    (rows sum to 1 over valid frames, 0 on padding).
    """

    def __init__(self, cfg: LASConfig, enc_dim: int):
        super().__init__()
        self.location = cfg.attention == "location"
        self.norm, self.temperature = cfg.att_norm, cfg.att_temperature
        self.query = nn.Linear(cfg.decoder_hidden, cfg.att_dim)
        self.key = nn.Linear(enc_dim, cfg.att_dim, bias=False)
        if self.location:
            self.cumulative = cfg.att_cumulative
            self.conv = nn.Conv1d(2 if self.cumulative else 1, cfg.att_conv_channels, cfg.att_conv_kernel,
                                  padding=cfg.att_conv_kernel // 2, bias=False)
            self.loc = nn.Linear(cfg.att_conv_channels, cfg.att_dim, bias=False)
        self.energy = nn.Linear(cfg.att_dim, 1, bias=False)

    def forward(self, s: torch.Tensor, memory: Memory, att_prev: torch.Tensor, att_sum: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        x = memory.keys + self.query(s)[:, None, :]  # [N, T', A]
        if self.location:
            past = torch.stack([att_prev, att_sum], dim=1) if self.cumulative else att_prev[:, None, :]
            f = self.conv(past.to(x.dtype)).transpose(1, 2)  # [N, T', C]
            x = x + self.loc(f)
        e = self.energy(torch.tanh(x)).squeeze(-1).float() / self.temperature  # [N, T']
        if self.norm == "softmax":
            att = torch.softmax(e.masked_fill(~memory.mask, float("-inf")), dim=-1)
        else:
            w = torch.sigmoid(e) * memory.mask
            att = w / w.sum(-1, keepdim=True).clamp(min=1e-8)
        context = torch.bmm(att[:, None, :].to(memory.enc.dtype), memory.enc).squeeze(1)  # [N, D]
        return context, att


class Speller(nn.Module):
    """LSTM decoder with attention: one `step` per output unit (see the module docstring)."""

    def __init__(self, cfg: LASConfig, enc_dim: int, dropout: float):
        super().__init__()
        self.vocab_size = cfg.vocab_size
        self.att_init = cfg.att_init
        self.embed = nn.Embedding(cfg.vocab_size, cfg.embed_dim)
        self.cells = nn.ModuleList(
            nn.LSTMCell(cfg.embed_dim + enc_dim if i == 0 else cfg.decoder_hidden, cfg.decoder_hidden)
            for i in range(cfg.decoder_layers))
        self.attention = Attention(cfg, enc_dim)
        self.hidden = nn.Linear(cfg.decoder_hidden + enc_dim, cfg.decoder_hidden)
        self.out = nn.Linear(cfg.decoder_hidden, cfg.vocab_size)
        self.dropout = nn.Dropout(dropout)

    def memory(self, enc: torch.Tensor, lengths: torch.Tensor) -> Memory:
        mask = torch.arange(enc.shape[1], device=enc.device)[None, :] < lengths.clamp(min=1)[:, None]
        return Memory(enc, self.attention.key(enc), mask)

    def initial_state(self, memory: Memory) -> SpellerState:
        n, d = memory.enc.shape[0], memory.enc.shape[2]
        layers, hidden = len(self.cells), self.cells[0].hidden_size
        zeros = tuple(memory.enc.new_zeros(n, hidden) for _ in range(layers))
        if self.att_init == "uniform":
            att = memory.mask.float() / memory.mask.sum(-1, keepdim=True).float()
        else:
            att = torch.zeros_like(memory.mask, dtype=torch.float)
            att[:, 0] = 1.0
        return SpellerState(zeros, zeros, memory.enc.new_zeros(n, d), att, torch.zeros_like(att))

    def advance(self, emb: torch.Tensor, state: SpellerState, memory: Memory
                ) -> tuple[torch.Tensor, SpellerState]:
        """emb [..., E] of the previous unit -> output features [N, H + D] ([s_i; c_i]), new state."""
        x = torch.cat([emb, state.context.to(emb.dtype)], dim=-1)
        hs, cs = [], []
        for i, cell in enumerate(self.cells):
            h, c = cell(x, (state.h[i], state.c[i]))
            hs.append(h)
            cs.append(c)
            x = self.dropout(h)
        context, att = self.attention(h, memory, state.att, state.att_sum)
        return torch.cat([h, context.to(h.dtype)], dim=-1), SpellerState(tuple(hs), tuple(cs), context, att,
                                                                         state.att_sum + att)

    def output(self, features: torch.Tensor) -> torch.Tensor:
        """[..., H + D] -> float32 logits [..., V], the blank masked."""
        logits = self.out(self.dropout(torch.tanh(self.hidden(features)))).float()
        blank = torch.zeros(logits.shape[-1], dtype=torch.bool, device=logits.device)
        blank[BLANK] = True
        return logits.masked_fill(blank, MASKED_LOGIT)

    def step(self, prev: torch.Tensor, state: SpellerState, memory: Memory) -> tuple[torch.Tensor, SpellerState]:
        """prev [N] unit ids -> logits [N, V], new state."""
        features, state = self.advance(self.embed(prev), state, memory)
        return self.output(features), state


# --------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------
class LASModel(nn.Module):
    kind = "las"

    def __init__(self, cfg: LASConfig):
        super().__init__()
        self.cfg = cfg
        enc = cfg.encoder
        self.encoder: EncoderInterface = (make_encoder(enc) if cfg.listener == "conv" else
                                          PyramidListener(enc, cfg.frame_stack, cfg.pyramid_layers))
        enc_dim = self.enc_dim = self.encoder.output_dim
        self.speller = Speller(cfg, enc_dim, enc.dropout)
        self.ctc_head: nn.Linear | None = None
        self._set_ctc_head(cfg.ctc_weight > 0)
        self.ctc_weight = float(cfg.ctc_weight)
        self.label_smoothing = 0.0
        self.sampling_rate = 0.0  # scheduled sampling probability reached at max_steps
        self.sampling_prob = 0.0  # the probability in use now (on_step)
        self.units: list[str] | None = None  # unit strings, for LM fusion (saved with the weights)

    # ---- training hooks -----------------------------------------------------------
    def _set_ctc_head(self, present: bool) -> None:
        if present and self.ctc_head is None:
            device = next(self.speller.parameters()).device
            self.ctc_head = nn.Linear(self.enc_dim, self.cfg.vocab_size).to(device)
        elif not present:
            self.ctc_head = None

    def configure_training(self, cfg, tokenizer) -> None:
        """Take ctc_weight, label_smoothing and sampling_rate from the TrainConfig, the units
        (saved with the weights, for LM fusion at decoding time) from `tokenizer`.

        Called once by the training loop before the optimizer exists: the CTC head is added
        or removed here to match `cfg.ctc_weight`.
        """
        w, eps, rate = float(cfg.ctc_weight), float(cfg.label_smoothing), float(cfg.sampling_rate)
        if not 0.0 <= w <= 1.0:
            raise ValueError(f"ctc_weight must be in [0, 1], got {w}")
        if not 0.0 <= eps < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {eps}")
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"sampling_rate must be in [0, 1], got {rate}")
        self._set_ctc_head(w > 0)
        self.ctc_weight, self.label_smoothing, self.sampling_rate = w, eps, rate
        if len(tokenizer.units) == self.cfg.vocab_size:
            self.units = list(tokenizer.units)

    def unit_tensors(self) -> dict[str, int]:
        """state_dict name -> blocks (1), of the tensors whose rows are the units: the speller's
        embedding and output layer, the CTC head's (what --init-from maps, asr/training/finetune.py)."""
        names = ["speller.embed.weight", "speller.out.weight", "speller.out.bias"]
        if self.ctc_head is not None:
            names += ["ctc_head.weight", "ctc_head.bias"]
        return dict.fromkeys(names, 1)

    def on_step(self, step: int, max_steps: int) -> None:
        """Scheduled sampling: p ramps linearly from 0 to `sampling_rate` over the run."""
        self.sampling_prob = self.sampling_rate * min(1.0, step / max(1, max_steps))

    # Extra state (a uint8 tensor, so it pickles and hashes like the weights): the CTC weight
    # used in training and the unit strings; a checkpoint holds them with the weights.
    def get_extra_state(self) -> torch.Tensor:
        blob = json.dumps({"ctc_weight": self.ctc_weight, "units": self.units}).encode("utf-8")
        return torch.tensor(list(blob), dtype=torch.uint8)

    def set_extra_state(self, state) -> None:
        info = json.loads(bytes(state.cpu().tolist()).decode("utf-8"))
        self.ctc_weight = float(info["ctc_weight"])
        self.units = info["units"]

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """As nn.Module's, but the CTC head follows the weights (present iff they hold one)."""
        self._set_ctc_head(any(k.startswith("ctc_head.") for k in state_dict))
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    # ---- encoder ----------------------------------------------------------------
    @property
    def time_reduction(self) -> int:
        return self.encoder.time_reduction

    def encode(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """feats [B, T, F], lengths [B] -> enc [B, T', D], lengths [B]."""
        return self.encoder(feats, lengths)

    def ctc_log_probs(self, enc: torch.Tensor) -> torch.Tensor:
        """enc [B, T', D] -> float32 CTC log-probabilities [B, T', V]."""
        if self.ctc_head is None:
            raise ValueError("this model has no CTC head (trained with ctc_weight 0): decode with ctc_weight=0")
        return F.log_softmax(self.ctc_head(enc).float(), dim=-1)

    # ---- training ---------------------------------------------------------------
    def _teacher_forced_logits(self, enc, enc_lens, targets, target_lens, sampling_prob: float = 0.0):
        """Logits [B, L+1, V] of y1..yL <eos> given <sos> y1..yL (scheduled sampling optional)."""
        memory = self.speller.memory(enc, enc_lens)
        state = self.speller.initial_state(memory)
        B, L = targets.shape
        inputs = torch.cat([targets.new_full((B, 1), SOS), targets], dim=1)  # [B, L+1]
        emb = self.speller.embed(inputs).unbind(1)  # L+1 x [B, E]
        if sampling_prob <= 0:  # teacher forcing: the output layer once, on every step
            features = []
            for e in emb:
                f, state = self.speller.advance(e, state, memory)
                features.append(f)
            return self.speller.output(torch.stack(features, dim=1))
        steps = []
        for i, e in enumerate(emb):
            if i > 0:
                with torch.no_grad():
                    sampled = torch.multinomial(torch.softmax(steps[-1].detach(), dim=-1), 1).squeeze(1)
                    use = torch.rand(B, device=enc.device) < sampling_prob
                e = torch.where(use[:, None], self.speller.embed(sampled), e)
            f, state = self.speller.advance(e, state, memory)
            steps.append(self.speller.output(f))
        return torch.stack(steps, dim=1)

    def _attention_loss(self, logits, targets, target_lens, smoothing: float) -> torch.Tensor:
        """Mean per predicted unit (<eos> included) of the label-smoothed cross-entropy."""
        B, L1, _ = logits.shape
        out = torch.cat([targets, targets.new_zeros(B, 1)], dim=1)  # [B, L+1]
        out[torch.arange(B, device=out.device), target_lens] = EOS
        valid = torch.arange(L1, device=out.device)[None, :] <= target_lens[:, None]
        logp = F.log_softmax(logits.float(), dim=-1)
        nll = -logp.gather(-1, out[..., None]).squeeze(-1)
        if smoothing > 0:
            nll = (1 - smoothing) * nll + smoothing * -logp[..., 1:].mean(-1)  # every unit but blank
        return (nll * valid).sum() / valid.sum().clamp(min=1)

    def forward(self, batch) -> dict:
        """Batch -> {"loss": per-token joint loss, "tokens": target units, "att_loss", "ctc_loss"}."""
        enc, enc_lens = self.encode(batch.feats, batch.feat_lens)
        tokens = batch.target_lens.sum().clamp(min=1)
        sampling = self.sampling_prob if self.training else 0.0
        logits = self._teacher_forced_logits(enc, enc_lens, batch.targets, batch.target_lens, sampling)
        smoothing = self.label_smoothing if self.training else 0.0
        att_loss = self._attention_loss(logits, batch.targets, batch.target_lens, smoothing)
        result = {"tokens": tokens, "att_loss": att_loss.detach()}
        loss = att_loss
        if self.ctc_head is not None and self.ctc_weight > 0:
            log_probs = self.ctc_log_probs(enc)
            ctc_loss = F.ctc_loss(log_probs.transpose(0, 1), batch.targets, enc_lens, batch.target_lens,
                                  blank=BLANK, reduction="sum", zero_infinity=True) / tokens
            loss = self.ctc_weight * ctc_loss + (1 - self.ctc_weight) * att_loss
            result["ctc_loss"] = ctc_loss.detach()
        result["loss"] = loss
        return result

    @torch.no_grad()
    def token_logprobs(self, feats: torch.Tensor, lengths: torch.Tensor, hyps: list[list[int]]) -> list[list[float]]:
        """Teacher-forced attention log-probs of each hypothesis' units then <eos> (no dropout)."""
        was = self.training
        self.eval()
        enc, enc_lens = self.encode(feats, lengths)
        L = max((len(h) for h in hyps), default=0)
        targets = torch.zeros(len(hyps), max(L, 1), dtype=torch.long, device=enc.device)
        for b, h in enumerate(hyps):
            targets[b, : len(h)] = torch.tensor(h, dtype=torch.long)
        target_lens = torch.tensor([len(h) for h in hyps], device=enc.device)
        logp = F.log_softmax(self._teacher_forced_logits(enc, enc_lens, targets, target_lens), dim=-1)
        self.train(was)
        out = []
        for b, h in enumerate(hyps):
            ids = h + [EOS]
            out.append([float(logp[b, i, t]) for i, t in enumerate(ids)])
        return out
