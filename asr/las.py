"""Listen, Attend and Spell (Chan et al. 2016) with an optional joint CTC loss (Kim et al. 2017).

    feats [B, T, F] --Listener--> enc [B, T', D] --CTC head (optional)--> [B, T', V]
                                       |
    <sos> y1 .. yL --Speller (LSTM, attention over enc)--> p(y1) .. p(yL) p(<eos>)

Listener (`listener` option):
  * "conv"    the shared front of asr/encoder.py: two stride-2 convs (x4) + BiGRU/BiLSTM
  * "pyramid" Chan et al.'s pyramidal BiRNN: `frame_stack` input frames concatenated, a
              Linear to `proj_dim`, then `rnn_layers` BiRNN layers of which the last
              `pyramid_layers` first concatenate adjacent frames (time / 2 each); the
              defaults (stack 2, 2 pyramid layers) reduce time x8. At x8 there are ~12
              encoder frames per second: with characters, fast speech has more units than
              frames, its CTC term is zeroed (`zero_infinity`), so pair it with
              `--tokens unigram:N` (or `--ctc-weight 0`).

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

Training (`forward(batch)`; `configure_training(cfg)` and `on_step(step, max_steps)` are
called by asr/train.py):
  * teacher forcing; scheduled sampling (Bengio et al. 2015): each input token is replaced,
    with probability p, by a token sampled from the speller's own previous distribution;
    p ramps linearly from 0 at step 0 to `cfg.sampling_rate` at `max_steps`
  * label smoothing `cfg.label_smoothing` = eps: loss per token
    (1 - eps) * -log p(y) + eps * mean over every unit but blank of -log p(unit)
  * joint CTC (ESPnet's multi-task loss) with w = `cfg.ctc_weight`:
    loss = w * ctc + (1 - w) * attention, each per token (CTC per target unit, attention per
    predicted unit, <eos> included). With w == 0 no CTC head exists (DDP has no unused
    parameters); the weight in use is saved with the weights and is the default of decoding.

Decoding (`greedy`, `beam_search`, `beam_search_nbest`), batched over utterances and beams.
A hypothesis y1..yL (then <eos>) scores

    score = sum_i (1 - lam) log p_att(y_i | y_<i)  + lam * log p_ctc_prefix(y_1..L <eos>)
            + lm_weight * sum_words log10 P_lm(word | history)  + word_bonus * words

where lam is the CTC weight (joint decoding: the CTC prefix score of Watanabe et al. 2017,
added step by step as the difference of prefix scores, so the sum telescopes to the full
sequence probability once <eos> is emitted) and the word n-gram LM (an ARPA file, read by
flashlight's KenLM) scores a word when the unit after it starts a new word (the space for
characters, a "▁" piece for SentencePiece units) or at <eos> (which also adds </s>); like
asr/decode.py the LM term is log10, so lm_weight = ln 10 weighs it as much as the acoustics.
Hypotheses are ranked by the length-normalised score

    normalised = score / (L + 1) ** length_penalty        (L + 1 counts the <eos>)

End-of-sentence rules, shared by greedy and beam search: at most
`max_len = max(min_len, ceil(max_len_ratio * T'))` units (T' the utterance's encoder frames;
default ratio MAX_UNITS_PER_INPUT_FRAME x the listener's time reduction, i.e. 25 units per
second of audio) after which <eos> is forced; no <eos> before `min_len` units; and in the
beam, <eos> is only accepted when its step score is within `eos_threshold` (natural log) of
the best candidate's. Each beam keeps `beam` hypotheses; one that emits <eos> leaves the
beam (which refills from the others' expansions), and an utterance is done once it holds
`beam` finished hypotheses or has no live one. `pre_beam` units per hypothesis (the
best by attention score, plus <eos>) are scored by CTC and the LM. With beam 1, no CTC and
no LM the beam search returns exactly the greedy hypothesis.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from asr.encoder import EncoderConfig, RNNEncoder
from asr.tokenizer import BLANK, EOS

SOS = EOS  # the speller starts from <eos>
MASKED_LOGIT = -1e4  # the blank's logit in the speller (never predicted; finite: no inf * 0)
LOG_ZERO = -1e10  # log 0 of the CTC prefix scorer (finite, so no inf - inf)
IMPOSSIBLE = LOG_ZERO / 2  # CTC prefix scores below this are zero probability
MAX_UNITS_PER_INPUT_FRAME = 0.25  # default max length: 25 units per second of 10 ms frames
DEFAULT_BEAM = 10
DEFAULT_MIN_LEN = 1
DEFAULT_EOS_THRESHOLD = 1.5  # nats
DEFAULT_LENGTH_PENALTY = 1.0
DEFAULT_LM_WEIGHT = 0.5
PRE_BEAM_FACTOR = 1.5
MAX_TICK_LABELS = 60  # attention figure: name the output units when there are at most this many

ENCODER_FIELDS = {f.name for f in dataclasses.fields(EncoderConfig)} - {"n_mels"}

# name -> options (EncoderConfig fields and LASConfig fields); parameters with 45 units
LAS_PRESETS: dict[str, dict] = {
    # tests: seconds on a CPU (0.20 M)
    "tiny": dict(conv_channels=8, proj_dim=64, rnn="gru", rnn_layers=1, rnn_hidden=64, dropout=0.0,
                 embed_dim=32, decoder_hidden=96, att_dim=48, att_conv_channels=4, att_conv_kernel=15),
    # the demo: ctc/small's encoder (conv front + 3 x 256 BiGRU with LayerNorm, padded batches, see
    # asr/encoder.py) + a 1 x 256 LSTM speller (1.17 M)
    "small": dict(conv_channels=32, proj_dim=256, rnn="gru", rnn_layers=3, rnn_hidden=256, dropout=0.1,
                  pack=False, layer_norm=True, embed_dim=64, decoder_hidden=256, att_dim=128, att_conv_channels=10,
                  att_conv_kernel=31),
    # the same sizes with Chan et al.'s pyramidal listener (x8, 5.96 M): use with --tokens unigram:N
    "small-pyramid": dict(listener="pyramid", proj_dim=256, rnn="gru", rnn_layers=3, rnn_hidden=256,
                          dropout=0.1, embed_dim=64, decoder_hidden=256, att_dim=128, att_conv_channels=10,
                          att_conv_kernel=15),
    # Chan et al.'s LAS on a GPU: stacked frames, 1 BLSTM + 2 pBLSTM of 512 per direction (x8),
    # 2 x 512 LSTM speller (32.3 M); use with --tokens unigram:N (see the module docstring)
    "lab": dict(listener="pyramid", proj_dim=512, rnn="lstm", rnn_layers=3, rnn_hidden=512, dropout=0.2,
                embed_dim=256, decoder_layers=2, decoder_hidden=512, att_dim=256, att_conv_channels=10,
                att_conv_kernel=31),
}


@dataclass
class LASConfig:
    vocab_size: int
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    listener: str = "conv"  # conv | pyramid
    frame_stack: int = 2  # pyramid: input frames concatenated before the first layer
    pyramid_layers: int = 2  # pyramid: the last N BiRNN layers halve time
    attention: str = "location"  # location | content
    att_dim: int = 128
    att_conv_channels: int = 10
    att_conv_kernel: int = 31  # odd
    att_norm: str = "softmax"  # softmax | sigmoid
    att_cumulative: bool = False  # location features also from the sum of the past alignments
    att_init: str = "uniform"  # the alignment before the first step: uniform | first (all on frame 0)
    att_temperature: float = 1.0
    embed_dim: int = 64
    decoder_layers: int = 1
    decoder_hidden: int = 256
    ctc_weight: float = 0.3  # builds a CTC head when > 0; training may override (configure_training)

    def __post_init__(self) -> None:
        checks = [
            (self.listener in ("conv", "pyramid"), f"listener must be conv or pyramid, not {self.listener!r}"),
            (self.attention in ("location", "content"),
             f"attention must be location or content, not {self.attention!r}"),
            (self.att_norm in ("softmax", "sigmoid"), f"att_norm must be softmax or sigmoid, not {self.att_norm!r}"),
            (self.att_init in ("uniform", "first"), f"att_init must be uniform or first, not {self.att_init!r}"),
            (self.att_temperature > 0, "att_temperature must be > 0"),
            (self.att_conv_kernel % 2 == 1, "att_conv_kernel must be odd"),
            (0.0 <= self.ctc_weight <= 1.0, "ctc_weight must be in [0, 1]"),
            (self.frame_stack >= 1, "frame_stack must be >= 1"),
            (self.listener != "pyramid" or 0 <= self.pyramid_layers <= self.encoder.rnn_layers,
             "pyramid_layers must be between 0 and rnn_layers"),
            (self.decoder_layers >= 1, "decoder_layers must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @property
    def time_reduction(self) -> int:
        if self.listener == "conv":
            return math.prod(self.encoder.time_strides)
        return self.frame_stack * 2 ** self.pyramid_layers


def build_las(vocab_size: int, n_mels: int, options: dict) -> "LASModel":
    """LASModel from a model config's options (EncoderConfig and LASConfig fields, flat)."""
    las_fields = {f.name for f in dataclasses.fields(LASConfig)} - {"vocab_size", "encoder"}
    unknown = set(options) - ENCODER_FIELDS - las_fields
    if unknown:
        raise ValueError(f"options {sorted(unknown)} do not apply to the LAS model "
                         f"(known: {', '.join(sorted(ENCODER_FIELDS | las_fields))})")
    enc = {k: v for k, v in options.items() if k in ENCODER_FIELDS}
    if "conv_kernels" in enc:
        enc["conv_kernels"] = tuple(tuple(k) for k in enc["conv_kernels"])
    las = {k: v for k, v in options.items() if k in las_fields}
    return LASModel(LASConfig(vocab_size, EncoderConfig(n_mels=n_mels, **enc), **las))


# --------------------------------------------------------------------------------------
# Listener
# --------------------------------------------------------------------------------------
def _stack_frames(x: torch.Tensor, lengths: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, T, D] -> [B, ceil(T/k), k*D]: k consecutive frames side by side (zero-padded)."""
    if k == 1:
        return x, lengths
    b, t, d = x.shape
    pad = (-t) % k
    if pad:
        x = F.pad(x, (0, 0, 0, pad))
    return x.reshape(b, (t + pad) // k, k * d), torch.div(lengths + k - 1, k, rounding_mode="floor")


class PyramidListener(nn.Module):
    """Chan et al.'s pyramidal BiRNN: [B, T, F] -> [B, T / (stack * 2^pyramid_layers), 2H].

        stack `frame_stack` frames -> Linear(stack*F -> proj_dim) -> BiRNN
        -> (concatenate frame pairs -> BiRNN) x pyramid_layers
    """

    def __init__(self, enc: EncoderConfig, frame_stack: int, pyramid_layers: int):
        super().__init__()
        self.frame_stack, self.pyramid_layers = frame_stack, pyramid_layers
        self.proj = nn.Linear(enc.n_mels * frame_stack, enc.proj_dim)
        rnn = {"gru": nn.GRU, "lstm": nn.LSTM}[enc.rnn]
        n_plain = enc.rnn_layers - pyramid_layers
        sizes = [enc.proj_dim] + [2 * enc.rnn_hidden * (1 if i < n_plain else 2) for i in range(1, enc.rnn_layers)]
        if n_plain == 0:
            sizes[0] = 2 * enc.proj_dim
        self.layers = nn.ModuleList(rnn(size, enc.rnn_hidden, batch_first=True, bidirectional=True) for size in sizes)
        self.halves = [i >= n_plain for i in range(enc.rnn_layers)]
        self.dropout = nn.Dropout(enc.dropout)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        lengths = torch.div(lengths + self.frame_stack - 1, self.frame_stack, rounding_mode="floor")
        for _ in range(self.pyramid_layers):
            lengths = torch.div(lengths + 1, 2, rounding_mode="floor")
        return lengths

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """feats [B, T, F], lengths [B] -> encodings [B, T', 2H], lengths [B]."""
        x, lengths = _stack_frames(feats, lengths, self.frame_stack)
        x = self.dropout(self.proj(x))
        for rnn, halve in zip(self.layers, self.halves):
            if halve:
                x, lengths = _stack_frames(x, lengths, 2)
            packed = pack_padded_sequence(x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
            out, _ = rnn(packed)
            x, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
            x = self.dropout(x)
        return x, lengths


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
@dataclass
class Hypothesis:
    """One finished hypothesis of the beam search (scores as in the module docstring)."""

    tokens: list[int]  # unit ids, without <eos>
    score: float  # the total score
    normalized: float  # score / (len(tokens) + 1) ** length_penalty: the ranking key
    att_score: float  # sum of attention log-probs, <eos> included (unweighted)
    ctc_score: float  # CTC log-probability of the sequence (0.0 when not used)
    lm_score: float  # sum of the LM's log10 word probabilities, </s> included (0.0 when no LM)
    words: int  # words counted for the word bonus
    token_logps: list[float]  # attention log-prob of every unit then of <eos>


class LASModel(nn.Module):
    kind = "las"

    def __init__(self, cfg: LASConfig):
        super().__init__()
        self.cfg = cfg
        enc = cfg.encoder
        if cfg.listener == "conv":
            self.encoder = RNNEncoder(enc)
            enc_dim = enc.output_dim
        else:
            self.encoder = PyramidListener(enc, cfg.frame_stack, cfg.pyramid_layers)
            enc_dim = 2 * enc.rnn_hidden
        self.enc_dim = enc_dim
        self.speller = Speller(cfg, enc_dim, enc.dropout)
        self.ctc_head: nn.Linear | None = None
        self._set_ctc_head(cfg.ctc_weight > 0)
        self.ctc_weight = float(cfg.ctc_weight)
        self.label_smoothing = 0.0
        self.sampling_rate = 0.0  # scheduled sampling probability reached at max_steps
        self.sampling_prob = 0.0  # the probability in use now (on_step)
        self.units: list[str] | None = None  # unit strings, for LM fusion (saved with the weights)
        self._lm_cache: dict = {}

    # ---- training hooks -----------------------------------------------------------
    def _set_ctc_head(self, present: bool) -> None:
        if present and self.ctc_head is None:
            device = next(self.speller.parameters()).device
            self.ctc_head = nn.Linear(self.enc_dim, self.cfg.vocab_size).to(device)
        elif not present:
            self.ctc_head = None

    def configure_training(self, cfg, tokenizer=None) -> None:
        """Take ctc_weight, label_smoothing and sampling_rate from the TrainConfig.

        Called once by the training loop before the optimizer exists: the CTC head is added
        or removed here to match `cfg.ctc_weight`. The units (for LM fusion at decoding
        time) come from `tokenizer`, or else are rebuilt the way asr/train.py builds them.
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
        units = tokenizer.units if tokenizer is not None else _units_from_train_config(cfg)
        if units is not None and len(units) == self.cfg.vocab_size:
            self.units = list(units)

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
        return self.cfg.time_reduction

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

    # ---- decoding ---------------------------------------------------------------
    def max_lengths(self, enc_lens: torch.Tensor, max_len_ratio: float | None, min_len: int) -> torch.Tensor:
        """Longest hypothesis (units) per utterance: max(min_len, ceil(ratio * T'))."""
        ratio = MAX_UNITS_PER_INPUT_FRAME * self.time_reduction if max_len_ratio is None else max_len_ratio
        return torch.clamp(torch.ceil(enc_lens.float() * ratio).long(), min=max(min_len, 1))

    @torch.no_grad()
    def greedy(self, feats: torch.Tensor, lengths: torch.Tensor, min_len: int = DEFAULT_MIN_LEN,
               max_len_ratio: float | None = None) -> list[list[int]]:
        """Attention-only greedy decoding -> unit ids per utterance (no <eos>)."""
        return self.greedy_with_attention(feats, lengths, min_len, max_len_ratio)[0]

    @torch.no_grad()
    def greedy_with_attention(self, feats: torch.Tensor, lengths: torch.Tensor, min_len: int = DEFAULT_MIN_LEN,
                              max_len_ratio: float | None = None) -> tuple[list[list[int]], list[torch.Tensor]]:
        """Greedy decoding and its alignments: ids per utterance, attention [L+1, T'_b] each
        (one row per emitted unit, the last for <eos> when it was emitted)."""
        enc, enc_lens = self.encode(feats, lengths)
        B = enc.shape[0]
        memory = self.speller.memory(enc, enc_lens)
        state = self.speller.initial_state(memory)
        maxlen = self.max_lengths(enc_lens, max_len_ratio, min_len)
        prev = torch.full((B,), SOS, dtype=torch.long, device=enc.device)
        alive = torch.ones(B, dtype=torch.bool, device=enc.device)
        tokens, atts = [], []
        for i in range(int(maxlen.max()) + 1):
            logits, state = self.speller.step(prev, state, memory)
            atts.append(state.att)
            if i < min_len:
                logits[:, EOS] = float("-inf")
            best = logits.argmax(-1)
            best = torch.where(i >= maxlen, torch.full_like(best, EOS), best)
            best = torch.where(alive, best, torch.full_like(best, EOS))
            tokens.append(best)
            alive = alive & (best != EOS)
            prev = best
            if not bool(alive.any()):
                break
        tok = torch.stack(tokens, 1).cpu()  # [B, steps]
        att = torch.stack(atts, 1).float().cpu()  # [B, steps, T']
        hyps, alignments = [], []
        for b in range(B):
            seq = tok[b].tolist()
            n = seq.index(EOS) if EOS in seq else len(seq)
            hyps.append(seq[:n])
            alignments.append(att[b, : min(n + 1, len(seq)), : int(enc_lens[b])])
        return hyps, alignments

    @torch.no_grad()
    def beam_search(self, feats: torch.Tensor, lengths: torch.Tensor, beam: int = DEFAULT_BEAM,
                    ctc_weight: float | None = None, lm_path: Path | str | None = None,
                    lm_weight: float = DEFAULT_LM_WEIGHT, word_bonus: float = 0.0, **options) -> list[list[int]]:
        """Best hypothesis per utterance (unit ids, no <eos>); see `beam_search_nbest`."""
        nbest = self.beam_search_nbest(feats, lengths, beam=beam, ctc_weight=ctc_weight, lm_path=lm_path,
                                       lm_weight=lm_weight, word_bonus=word_bonus, nbest=1, **options)
        return [hyps[0].tokens if hyps else [] for hyps in nbest]

    @torch.no_grad()
    def beam_search_nbest(
        self, feats: torch.Tensor, lengths: torch.Tensor, beam: int = DEFAULT_BEAM,
        ctc_weight: float | None = None, lm_path: Path | str | None = None, lm_weight: float = DEFAULT_LM_WEIGHT,
        word_bonus: float = 0.0, nbest: int | None = None, length_penalty: float = DEFAULT_LENGTH_PENALTY,
        eos_threshold: float = DEFAULT_EOS_THRESHOLD, min_len: int = DEFAULT_MIN_LEN,
        max_len_ratio: float | None = None, pre_beam: int | None = None, tokenizer=None,
    ) -> list[list[Hypothesis]]:
        """Batched joint CTC/attention beam search with optional word LM shallow fusion.

        feats [B, T, F], lengths [B] -> per utterance, its finished hypotheses sorted by
        normalised score (best first), at most `nbest` (default `beam`). ctc_weight None is
        the training weight, 0 attention only. lm_path: ARPA file (lm_weight, word_bonus:
        see the module docstring). tokenizer: its units override the saved ones (LM fusion
        and the word bonus need them).
        """
        if beam < 1:
            raise ValueError("beam must be >= 1")
        lam = self.ctc_weight if ctc_weight is None else float(ctc_weight)
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"ctc_weight must be in [0, 1], got {lam}")
        if lam > 0 and self.ctc_head is None:
            raise ValueError(f"ctc_weight {lam} needs a CTC head, but this model was trained with ctc_weight 0")
        units = list(tokenizer.units) if tokenizer is not None else self.units
        fusion = None
        if lm_path is not None or word_bonus != 0.0:
            if units is None:
                raise ValueError("LM fusion / word bonus need the unit strings: pass tokenizer=")
            lm = self._load_lm(lm_path) if lm_path is not None else None
            fusion = WordFusion(lm, units)
        was = self.training
        self.eval()
        try:
            return self._beam(feats, lengths, beam, lam, fusion, lm_weight, word_bonus, nbest or beam,
                              length_penalty, eos_threshold, min_len, max_len_ratio, pre_beam)
        finally:
            self.train(was)

    def _load_lm(self, path) -> "WordLM":
        key = str(Path(path).resolve())
        if key not in self._lm_cache:
            self._lm_cache = {key: WordLM(Path(path))}  # one LM at a time
        return self._lm_cache[key]

    def _beam(self, feats, lengths, K, lam, fusion, lm_weight, word_bonus, nbest, length_penalty, eos_threshold,
              min_len, max_len_ratio, pre_beam) -> list[list[Hypothesis]]:
        enc, enc_lens = self.encode(feats, lengths)
        B, device = enc.shape[0], enc.device
        N, V = B * K, self.cfg.vocab_size
        Cn = min(V - 2, pre_beam or max(K, math.ceil(PRE_BEAM_FACTOR * K)))  # units but blank, <eos>
        C = Cn + 1  # + the <eos> column
        memory = self.speller.memory(enc, enc_lens).repeat(K)
        state = self.speller.initial_state(memory)
        maxlen = self.max_lengths(enc_lens, max_len_ratio, min_len)
        maxlen_rows = maxlen.repeat_interleave(K)
        steps = int(maxlen.max())
        ctc = None
        if lam > 0:
            ctc = CTCPrefixScorer(self.ctc_log_probs(enc).repeat_interleave(K, dim=0), enc_lens.repeat_interleave(K))
            ctc_prev = torch.zeros(N, device=device)
        if fusion is not None:
            fusion.reset(N)
        score = torch.full((B, K), float("-inf"), device=device)
        score[:, 0] = 0.0
        score = score.reshape(N)
        prev = torch.full((N,), SOS, dtype=torch.long, device=device)
        hist = torch.zeros(N, steps + 1, dtype=torch.long, device=device)
        att_hist = torch.zeros(N, steps + 1, device=device)
        lm_sum = torch.zeros(N, device=device)
        words = torch.zeros(N, device=device)
        base = (torch.arange(B, device=device) * K)[:, None]
        finished: list[list[Hypothesis]] = [[] for _ in range(B)]
        done = [False] * B

        for i in range(steps + 1):
            logits, new_state = self.speller.step(prev, state, memory)
            att_logp = F.log_softmax(logits, dim=-1)  # [N, V]
            pick = att_logp.clone()
            pick[:, BLANK] = float("-inf")
            pick[:, EOS] = float("-inf")
            top = pick.topk(Cn, dim=-1).indices  # [N, Cn]
            ids = torch.cat([top, top.new_full((N, 1), EOS)], dim=1)  # [N, C]
            a = att_logp.gather(1, ids)
            step = (1 - lam) * a
            if ctc is not None:
                psi, r_new = ctc.score(top, prev, i)  # [N, Cn]
                psi = torch.cat([psi, ctc.final()[:, None]], dim=1)  # <eos>: the whole sequence
                step = step + lam * (psi - ctc_prev[:, None])
                step = step.masked_fill(psi <= IMPOSSIBLE, float("-inf"))
            if fusion is not None:
                lm_delta, word_inc = fusion.candidates(ids, torch.isfinite(score))
                step = step + lm_weight * lm_delta + word_bonus * word_inc
            forced = i >= maxlen_rows
            best_step = step.max(dim=-1).values
            eos_ok = (i >= min_len) & (step[:, -1] >= best_step - eos_threshold)
            step[:, -1] = torch.where(eos_ok | forced, step[:, -1], torch.full_like(best_step, float("-inf")))
            step[:, :-1] = step[:, :-1].masked_fill(forced[:, None], float("-inf"))

            total = score[:, None] + step  # [N, C]
            vals, flat = total.reshape(B, K * C).topk(K, dim=-1)  # [B, K]
            src = (base + flat // C).reshape(N)  # parent row of each new row
            col = (flat % C).reshape(N)
            vals = vals.reshape(N)
            tok = ids[src, col]
            tok_logp = a[src, col]
            is_eos = tok == EOS
            alive = torch.isfinite(vals)
            hist = hist[src]
            hist[:, i] = tok
            att_hist = att_hist[src]
            att_hist[:, i] = tok_logp
            lm_sum = lm_sum[src]
            words = words[src]
            if fusion is not None:
                lm_sum = lm_sum + lm_delta[src, col]
                words = words + word_inc[src, col]
            ctc_now = psi[src, col] if ctc is not None else None

            ended = (is_eos & alive).nonzero().flatten().tolist()
            if ended:
                h_cpu, a_cpu, v_cpu = hist[ended, : i + 1].cpu(), att_hist[ended, : i + 1].cpu(), vals[ended].cpu()
                l_cpu, w_cpu = lm_sum[ended].cpu(), words[ended].cpu()
                c_cpu = ctc_now[ended].cpu() if ctc is not None else None
                for j, n in enumerate(ended):
                    b = n // K
                    if done[b]:
                        continue
                    logps = a_cpu[j].tolist()
                    total_score = float(v_cpu[j])
                    finished[b].append(Hypothesis(
                        tokens=h_cpu[j, :i].tolist(), score=total_score,
                        normalized=total_score / (i + 1) ** length_penalty, att_score=float(sum(logps)),
                        ctc_score=float(c_cpu[j]) if c_cpu is not None else 0.0, lm_score=float(l_cpu[j]),
                        words=int(w_cpu[j]), token_logps=logps))

            score = vals.masked_fill(is_eos | ~alive, float("-inf"))
            state = new_state.select(src)
            prev = tok.masked_fill(is_eos, SOS)
            if ctc is not None:
                ctc.select(src, col.clamp(max=Cn - 1), r_new)
                ctc_prev = ctc_now.masked_fill(~torch.isfinite(score), 0.0)
            if fusion is not None:
                fusion.select(src.tolist(), tok.tolist())
            live = torch.isfinite(score).reshape(B, K).any(-1).tolist()
            for b in range(B):
                if not done[b] and (len(finished[b]) >= K or not live[b]):
                    done[b] = True
                    score[b * K:(b + 1) * K] = float("-inf")
            if all(done):
                break
        return [sorted(f, key=lambda h: -h.normalized)[:nbest] for f in finished]


def _units_from_train_config(cfg) -> list[str] | None:
    """The units asr/train.py's make_tokenizer builds for `cfg` (None if they cannot be rebuilt)."""
    try:
        if cfg.tokens == "char":
            from asr.data import ShardSet
            from asr.tokenizer import CharTokenizer

            return CharTokenizer(ShardSet.open(cfg.shards).vocab).units
        if cfg.tokens.startswith("unigram:"):
            from asr.subword import MODEL_FILE, UnigramTokenizer

            path = Path(cfg.out) / "unigram" / MODEL_FILE
            return UnigramTokenizer.load(path).units if path.is_file() else None
    except (OSError, ValueError, KeyError):
        return None
    return None


# --------------------------------------------------------------------------------------
# Joint decoding: CTC prefix scores
# --------------------------------------------------------------------------------------
class CTCPrefixScorer:
    """CTC prefix probabilities of N hypotheses, extended one unit at a time.

    log_probs [N, T, V] (natural log), lengths [N]. For the current prefix g of each row
    it holds r_t^n(g), r_t^b(g) (log-probability that frames 1..t emit g, ending in a
    non-blank / a blank) as `r` [T, N, 2]. `score(cands, last, i)` gives, for each
    candidate c, the prefix score log sum_t P(g c first completed at frame t) (Watanabe et
    al. 2017, algorithm 2); `final()` the probability of g as the whole sequence. Frames past
    a row's length emit blank with probability 1, so they change nothing.
    """

    def __init__(self, log_probs: torch.Tensor, lengths: torch.Tensor):
        x = log_probs.float()
        N, T, V = x.shape
        pad = torch.arange(T, device=x.device)[None, :] >= lengths[:, None]  # [N, T]
        x = x.masked_fill(pad[..., None], LOG_ZERO)
        x[..., BLANK] = x[..., BLANK].masked_fill(pad, 0.0)
        self.x = x.transpose(0, 1).contiguous()  # [T, N, V]
        self.T = T
        blank_run = torch.cumsum(self.x[..., BLANK], dim=0)  # the empty prefix: blanks only
        self.r = torch.stack([torch.full_like(blank_run, LOG_ZERO), blank_run], dim=-1)  # [T, N, 2]

    def score(self, cands: torch.Tensor, last: torch.Tensor, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cands [N, C] units, last [N] the prefix's last unit, i its length ->
        prefix scores [N, C], new r [T, N, C, 2]."""
        T, (N, C) = self.T, cands.shape
        xc = self.x.gather(2, cands[None].expand(T, N, C))  # [T, N, C]
        xb = self.x[..., BLANK][..., None]  # [T, N, 1]
        rn_g, rb_g = self.r[..., 0][..., None], self.r[..., 1][..., None]  # [T, N, 1]
        same = (cands == last[:, None])[None]  # a repeat needs a blank in between
        phi = torch.where(same, rb_g, torch.logaddexp(rn_g, rb_g))  # [T, N, C]
        rn = torch.full((T, N, C), LOG_ZERO, device=xc.device)
        rb = torch.full((T, N, C), LOG_ZERO, device=xc.device)
        if i == 0:
            rn[0] = xc[0]
        start = max(1, i)  # g c needs at least i + 1 frames
        for t in range(start, T):
            rn[t] = torch.logaddexp(rn[t - 1], phi[t - 1]) + xc[t]
            rb[t] = torch.logaddexp(rb[t - 1], rn[t - 1]) + xb[t]
        terms = phi[start - 1:T - 1] + xc[start:]
        psi = torch.logsumexp(torch.cat([rn[:1], terms], dim=0), dim=0) if i == 0 else (
            torch.logsumexp(terms, dim=0) if start < T else torch.full((N, C), LOG_ZERO, device=xc.device))
        return psi.clamp(min=LOG_ZERO), torch.stack([rn, rb], dim=-1)

    def final(self) -> torch.Tensor:
        """[N]: log P(the current prefix is the whole sequence)."""
        return torch.logaddexp(self.r[-1, :, 0], self.r[-1, :, 1]).clamp(min=LOG_ZERO)

    def select(self, rows: torch.Tensor, cols: torch.Tensor, r_new: torch.Tensor) -> None:
        self.r = r_new[:, rows, cols]


# --------------------------------------------------------------------------------------
# Shallow fusion with a word n-gram LM
# --------------------------------------------------------------------------------------
class WordLM:
    """An ARPA word n-gram LM through flashlight's KenLM binding (log10 scores)."""

    def __init__(self, path: Path):
        from flashlight.lib.text.decoder.kenlm import KenLM
        from flashlight.lib.text.dictionary import Dictionary

        from asr.lm import UNK, is_arpa, read_arpa_unigrams

        if not path.is_file():
            raise FileNotFoundError(f"language model {path} not found")
        if not is_arpa(path):
            raise ValueError(f"{path} is not an ARPA file: LM fusion in the attention beam search reads ARPA "
                             "files (asr-cli lm build, or lmplz)")
        words = read_arpa_unigrams(path)
        if UNK not in words:
            words.append(UNK)
        self.dictionary = Dictionary(words)
        self.index = {w: i for i, w in enumerate(words)}
        self.unk = self.index[UNK]
        self.kenlm = KenLM(str(path), self.dictionary)

    def start(self):
        return self.kenlm.start(False)  # after <s>

    def score(self, state, word: str):
        """-> (new state, log10 P(word | state))."""
        return self.kenlm.score(state, self.index.get(word, self.unk))

    def finish(self, state) -> float:
        return self.kenlm.finish(state)[1]


class WordFusion:
    """Per-hypothesis LM state and partial word; scores words as they are completed.

    units: the tokenizer's unit strings. A unit starts a word when it is the space (characters)
    or begins with "▁" (SentencePiece); its text (without the "▁") opens the next word.
    """

    def __init__(self, lm: WordLM | None, units: list[str]):
        from asr.subword import UNK_PIECE, WORD_START

        self.lm = lm
        self.boundary = [u == " " or u.startswith(WORD_START) for u in units]
        self.text = ["" if u == " " else u[len(WORD_START):] if u.startswith(WORD_START) else u for u in units]
        for special in (BLANK, EOS, *(i for i, u in enumerate(units) if u == UNK_PIECE)):
            self.boundary[special], self.text[special] = False, ""
        self._boundary_t = torch.tensor(self.boundary)

    def reset(self, n: int) -> None:
        start = self.lm.start() if self.lm is not None else None
        self.states, self.partial = [start] * n, [""] * n
        self._after_word = [None] * n

    def candidates(self, ids: torch.Tensor, rows_alive: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ids [N, C] (last column <eos>) -> LM log10 deltas [N, C], words completed [N, C]."""
        N = ids.shape[0]
        word_lp, eos_lp, has = [0.0] * N, [0.0] * N, [0.0] * N
        for n, alive in enumerate(rows_alive.tolist()):
            self._after_word[n] = self.states[n]
            if not alive:
                continue
            state = self.states[n]
            if self.partial[n]:
                has[n] = 1.0
                if self.lm is not None:
                    state, word_lp[n] = self.lm.score(state, self.partial[n])
                self._after_word[n] = state
            if self.lm is not None:
                eos_lp[n] = word_lp[n] + self.lm.finish(state)
        device = ids.device
        word_lp_t = torch.tensor(word_lp, device=device)[:, None]
        has_t = torch.tensor(has, device=device)[:, None]
        starts = self._boundary_t.to(device)[ids]  # [N, C]
        starts[:, -1] = False
        lm = torch.where(starts, word_lp_t, torch.zeros_like(word_lp_t))
        inc = starts.float() * has_t
        lm[:, -1] = torch.tensor(eos_lp, device=device)
        inc[:, -1] = has_t[:, 0]
        return lm, inc

    def select(self, rows: list[int], tokens: list[int]) -> None:
        states, partial = [], []
        for n, t in zip(rows, tokens):
            if self.boundary[t]:
                states.append(self._after_word[n])
                partial.append(self.text[t])
            else:
                states.append(self.states[n])
                partial.append(self.partial[n] + self.text[t])
        self.states, self.partial = states, partial


# --------------------------------------------------------------------------------------
# Figure: attention over the spectrogram
# --------------------------------------------------------------------------------------
def plot_attention(checkpoint: Path, shards: Path, split: str, out: Path, n: int = 4) -> Path:
    """Greedy alignments of a LAS checkpoint on the first `n` utterances of `split`.

    Per utterance: the log-Mel spectrogram (as the model sees it), then the attention weights
    (one row per emitted unit, <eos> last) on the same time axis, with the hypothesis above.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from asr.checkpoint import load_model
    from asr.data import LoaderConfig, ShardSet, ShardStream
    from asr.tokenizer import CharTokenizer
    from pipeline.audio import FeatureConfig

    model, tokenizer, ckpt = load_model(Path(checkpoint))
    if getattr(model, "kind", None) != "las":
        raise ValueError(f"{checkpoint} holds a {getattr(model, 'kind', '?')} model: --attention needs an "
                         f"attention model (asr-cli train --model las)")
    data = ShardSet.open(shards)
    cmvn = (np.asarray(ckpt["cmvn"]["mean"], np.float32), np.asarray(ckpt["cmvn"]["std"], np.float32))
    lcfg = LoaderConfig(batch_frames=10**9, max_batch=n, bucket_pool=n, workers=0)
    batch = next(iter(ShardStream(data.urls(split), CharTokenizer(data.vocab), cmvn, lcfg, train=False)))
    hyps, alignments = model.greedy_with_attention(batch.feats, batch.feat_lens)
    fps = FeatureConfig.from_dict(ckpt["features"]).frames_per_second()
    step_s = model.time_reduction / fps

    rows = len(batch)
    fig, axes = plt.subplots(2 * rows, 1, figsize=(11, 4.2 * rows), squeeze=False,
                             gridspec_kw={"height_ratios": [1, 1.3] * rows})
    for u in range(rows):
        frames = int(batch.feat_lens[u])
        ax_s, ax_a = axes[2 * u, 0], axes[2 * u + 1, 0]
        ax_s.imshow(batch.feats[u, :frames].T.numpy(), origin="lower", aspect="auto", cmap="magma",
                    extent=(0, frames / fps, 0, batch.feats.shape[2]))
        ax_s.set_ylabel("Mel bin")
        ax_s.set_title(f"ref: {batch.texts[u]}\nhyp: {tokenizer.decode(hyps[u])}", fontsize=8, loc="left")
        att = alignments[u].numpy()
        ax_a.imshow(att, origin="upper", aspect="auto", cmap="viridis", interpolation="nearest",
                    extent=(0, att.shape[1] * step_s, att.shape[0] - 0.5, -0.5))
        labels = [_unit_label(tokenizer, t) for t in hyps[u]] + (["</s>"] if att.shape[0] > len(hyps[u]) else [])
        if len(labels) <= MAX_TICK_LABELS:
            ax_a.set_yticks(range(len(labels)))
            ax_a.set_yticklabels(labels, fontsize=5)
        ax_a.set_ylabel("output unit")
        ax_a.set_xlim(0, frames / fps)
        ax_s.set_xlim(0, frames / fps)
    axes[-1, 0].set_xlabel("time (s)")
    fig.suptitle(f"{Path(checkpoint).name}: attention on {data.root.name} / {split}")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _unit_label(tokenizer, unit_id: int) -> str:
    """A unit as a readable label ("␣" for the space)."""
    u = tokenizer.units[unit_id]
    return "\u2423" if u == " " else u
