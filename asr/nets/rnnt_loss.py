"""The transducer's losses: the full RNN-T loss, and pruned RNN-T (Kuang et al. 2022, k2 / icefall).

    lattice_nll(y, blank, starts, t_lens, u_lens)   -log P(targets) of a lattice of log-probs
    simple_loss(am, lm, targets, ...)               the "trivial joiner" loss, logits am[t] + lm[u],
                                                    and the pruning window of each frame
    pruned_ranges(occupation, ...)                  k2's window starts from the simple lattice's
                                                    occupation (monotonic, no symbol skipped)

The lattice: node (t, u) is "u units emitted after frame t's start"; blank[b, t, u] leaves it to
(t + 1, u), y[b, t, u] (log P(y_{u+1})) to (t, u + 1); the path ends with the blank of node
(T - 1, U). A pruned lattice keeps S nodes per frame, u in [starts[t], starts[t] + S): the
joiner runs on B x T' x S cells instead of B x T' x (U + 1), 15x fewer with S = 5 and the demo's
~75 characters an utterance.

The recursion runs frame by frame: within a frame, alpha[t, u] = logaddexp(alpha[t - 1, u] +
blank[t - 1, u], alpha[t, u - 1] + y[t, u - 1]) is a cumulative log-sum-exp, so one frame is a
handful of tensor ops on [B, S] and autograd gives the backward. Impossible arcs (units past
an utterance's U, nodes outside the previous frame's window) are IMPOSSIBLE: finite, so the
cumulative sums never meet inf - inf, and e^IMPOSSIBLE is 0 in float32. tests/test_rnnt.py
checks the loss and its gradient against torchaudio's `rnnt_loss` on full lattices.
"""

from __future__ import annotations

import torch

IMPOSSIBLE = -1e5  # log-prob of an arc that cannot be taken (finite: see the docstring)


def lattice_nll(y: torch.Tensor, blank: torch.Tensor, starts: torch.Tensor | None, t_lens: torch.Tensor,
                u_lens: torch.Tensor) -> torch.Tensor:
    """-log P(targets) [B] of a (pruned) lattice.

    y [B, T, S]: log P(next unit) at node (t, starts[t] + k) (the last column is never used);
    blank [B, T, S]: log P(blank) there; starts [B, T] long: each frame's first node (None:
    all 0, the full lattice, S = U + 1); t_lens, u_lens [B]. The windows must overlap from one
    frame to the next and the last frame's must hold u_lens (`pruned_ranges` makes them so)."""
    b, t_max, s = blank.shape
    y = y.float()
    blank = blank.float()
    rows = torch.arange(b, device=y.device)
    # cumulative unit log-probs within each frame's window: c[t, k] = sum_{j < k} y[t, j]
    c = torch.cat([y.new_zeros(b, t_max, 1), y[:, :, :-1].cumsum(2)], dim=2)  # [B, T, S]
    enter = y.new_full((b, s), IMPOSSIBLE)
    enter[:, 0] = 0.0  # the start: node (0, 0)
    alphas = []
    pad = y.new_full((b, s), IMPOSSIBLE)
    # frames unbound once: indexing [:, t] in the loop would cost a full-size zero tensor per
    # frame in the backward pass (2/3 of a tiny model's step)
    cs, blanks = c.unbind(1), blank.unbind(1)
    if starts is not None:
        shifts = (starts[:, 1:] - starts[:, :-1]).clamp(min=0, max=s)[:, :, None] \
            + torch.arange(s, device=y.device)  # [B, T - 1, S]: the next window's nodes in this one's
    for t in range(t_max):
        alpha = cs[t] + torch.logcumsumexp(enter - cs[t], dim=1)  # [B, S]
        alphas.append(alpha)
        if t + 1 < t_max:
            out = torch.cat([alpha + blanks[t], pad], dim=1)  # [B, 2S]: blank arcs to frame t + 1
            enter = out[:, :s] if starts is None else out.gather(1, shifts[:, t])
    alpha = torch.stack(alphas, dim=1)  # [B, T, S]
    last = t_lens - 1
    k = u_lens - (0 if starts is None else starts[rows, last])
    return -(alpha[rows, last, k] + blank[rows, last, k])


def unit_arcs(logits_y: torch.Tensor, normalizer: torch.Tensor, u_index: torch.Tensor, u_lens: torch.Tensor,
              ) -> torch.Tensor:
    """log P(next unit) = logit of the next target - log-normalizer, IMPOSSIBLE where node
    u_index [B, T, S] has no next unit (u >= U)."""
    arcs = logits_y - normalizer
    return arcs.masked_fill(u_index >= u_lens[:, None, None], IMPOSSIBLE)


def simple_loss(am: torch.Tensor, lm: torch.Tensor, targets: torch.Tensor, t_lens: torch.Tensor,
                u_lens: torch.Tensor, blank_id: int, lm_only_scale: float = 0.25
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """The trivial joiner's loss (logits am[t] + lm[u]: no joint tensor of V) and its lattice's
    arc occupation, for the pruning windows.

    am [B, T, V] (the encoder frames' simple projection), lm [B, U + 1, V] (the predictions'),
    targets [B, U]. Returns (-log P [B], occupation [B, T, U + 1]: the expected passes of the
    best paths through each node's arcs). As icefall's `rnnt_loss_smoothed`, the arcs mix in
    `lm_only_scale` of the prediction side's own distribution (it steadies the windows)."""
    am, lm = am.float(), lm.float()
    b, t_max, _ = am.shape
    u1 = lm.shape[1]
    am_max, lm_max = am.max(-1, keepdim=True).values, lm.max(-1, keepdim=True).values
    # log sum_v exp(am[t, v] + lm[u, v]) as one matrix product: [B, T, U + 1]
    norm = torch.log(torch.bmm((am - am_max).exp(), (lm - lm_max).exp().transpose(1, 2)).clamp(min=1e-30)) \
        + am_max + lm_max.transpose(1, 2)
    tgt = torch.cat([targets, targets.new_zeros(b, 1)], dim=1)  # [B, U + 1]: a unit after the last node (unused)
    am_y = am.gather(2, tgt[:, None, :].expand(b, t_max, u1))  # [B, T, U + 1]
    lm_y = lm.gather(2, tgt[:, :, None]).squeeze(2)[:, None, :]  # [B, 1, U + 1]
    lm_norm = torch.logsumexp(lm, dim=-1)[:, None, :]  # [B, 1, U + 1]
    u_index = torch.arange(u1, device=am.device)[None, None, :].expand(b, t_max, u1)
    y = (1 - lm_only_scale) * (am_y + lm_y - norm) + lm_only_scale * (lm_y - lm_norm)
    y = y.masked_fill(u_index >= u_lens[:, None, None], IMPOSSIBLE)
    blank = (1 - lm_only_scale) * (am[:, :, blank_id:blank_id + 1] + lm[:, None, :, blank_id] - norm) \
        + lm_only_scale * (lm[:, None, :, blank_id] - lm_norm)
    y_leaf, blank_leaf = y.detach().requires_grad_(), blank.detach().requires_grad_()
    with torch.enable_grad():
        nll = lattice_nll(y_leaf, blank_leaf, None, t_lens, u_lens)
        occ_y, occ_blank = torch.autograd.grad(-nll.sum(), [y_leaf, blank_leaf])
    return lattice_nll(y, blank, None, t_lens, u_lens), (occ_y + occ_blank).detach()


def monotonic_lower_bound(x: torch.Tensor) -> torch.Tensor:
    """x [B, T] -> x[:, i] = min(x[:, i:]) (non-decreasing)."""
    return x.flip(1).cummin(1).values.flip(1)


def pruned_ranges(occupation: torch.Tensor, t_lens: torch.Tensor, u_lens: torch.Tensor, s: int) -> torch.Tensor:
    """Each frame's window start [B, T] (k2's get_rnnt_prune_ranges): the S nodes of the most
    occupation, then made non-decreasing, starting at 0, never more than S - 1 apart (so no
    unit is skipped), and from the last frame on ending at U."""
    b, t_max, u1 = occupation.shape
    padded = torch.cat([occupation.new_zeros(b, t_max, 1), occupation, occupation.new_zeros(b, t_max, s)], dim=2)
    sums = padded.cumsum(2)
    window = sums[:, :, s:s + u1] - sums[:, :, :u1]  # [B, T, U + 1]: occupation of nodes [u, u + S)
    valid = torch.arange(u1, device=occupation.device)[None, None, :] <= (u_lens[:, None, None] - s + 1).clamp(min=0)
    starts = window.masked_fill(~valid, -1.0).argmax(2)  # [B, T]
    frame = torch.arange(t_max, device=occupation.device)[None, :]
    last = (u_lens - s + 1).clamp(min=0)[:, None].expand(b, t_max)
    starts = torch.where(frame < t_lens[:, None] - 1, starts, last)
    starts = monotonic_lower_bound(starts)
    starts = -(starts - (s - 1) * frame)  # k2's transformation: non-decreasing here = steps below S
    starts = monotonic_lower_bound(starts).clamp(min=0)
    return -(starts - (s - 1) * frame)
