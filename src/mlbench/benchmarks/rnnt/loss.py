"""The RNN-T loss (Graves 2012): torchaudio's where it loads, else a vectorised pure-PyTorch implementation.

Inputs are the joint network's logits ``[B, T, U+1, V]`` (the log-softmax is taken here), the targets
``[B, U]`` (int), the valid lengths of both and the blank index. The loss of one sample is
``-log P(y | x)``, the sum over all alignments of the lattice (T frames x U+1 emitted-label counts):

    alpha[0, 0] = 0
    alpha[t, u] = logaddexp(alpha[t-1, u] + blank[t-1, u], alpha[t, u-1] + emit[t, u-1])
    -log P = -(alpha[T-1, U] + blank[T-1, U])

The pure-PyTorch path walks the lattice by anti-diagonals ``n = t + u``: every cell of one diagonal depends
only on the previous one, so each of the ``T + U - 1`` steps is one batched tensor operation over the batch
and all label positions. The lattice is first "skewed" (cell ``(t, u)`` stored at ``(t + u, u)``) with one
gather, and cells outside the lattice hold a large negative finite number rather than ``-inf`` so that
autograd never sees ``-inf - -inf``. Gradients come from autograd.
"""

from __future__ import annotations

import torch

NEG = -1e30  # "log 0" that stays finite through additions (T + U of them stay far from float32's limit)


def _torchaudio_loss():
    try:
        import torchaudio.functional as F  # noqa: N812

        return F.rnnt_loss
    except Exception:  # noqa: BLE001 - absent, or built for another torch (an ABI mismatch raises OSError)
        return None


def implementation() -> str:
    """'torchaudio' or 'pytorch': which one ``rnnt_loss(..., impl='auto')`` uses on this machine."""
    return "torchaudio" if _torchaudio_loss() is not None else "pytorch"


def rnnt_loss(logits: torch.Tensor, targets: torch.Tensor, logit_lengths: torch.Tensor,
              target_lengths: torch.Tensor, blank: int, reduction: str = "mean", impl: str = "auto"
              ) -> torch.Tensor:
    """RNN-T negative log-likelihood per sample, reduced by ``mean`` (over samples), ``sum`` or ``none``."""
    if impl not in ("auto", "torchaudio", "pytorch"):
        raise ValueError(f"impl must be auto, torchaudio or pytorch, not {impl!r}")
    ta = _torchaudio_loss() if impl in ("auto", "torchaudio") else None
    if impl == "torchaudio" and ta is None:
        raise RuntimeError("torchaudio's rnnt_loss is not available here")
    if ta is not None:
        return ta(logits.float(), targets.int(), logit_lengths.int(), target_lengths.int(), blank=blank,
                  reduction=reduction)
    nll = rnnt_nll_pytorch(logits, targets, logit_lengths, target_lengths, blank)
    if reduction == "mean":
        return nll.mean()
    if reduction == "sum":
        return nll.sum()
    return nll


def _logaddexp(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """log(exp(a) + exp(b)) with the difference clamped at 60 (exp(-60) ~ 1e-26 below float32's resolution),
    so that cells holding ``NEG`` never reach exp's slow path for huge arguments, forward or backward."""
    d = (a - b).abs().clamp(max=60.0)
    return torch.maximum(a, b) + torch.log1p(torch.exp(-d))


def rnnt_nll_pytorch(logits: torch.Tensor, targets: torch.Tensor, logit_lengths: torch.Tensor,
                     target_lengths: torch.Tensor, blank: int) -> torch.Tensor:
    """Per-sample ``-log P(y | x)`` ``[B]`` by the anti-diagonal recursion (see the module docstring)."""
    B, T, U1, _ = logits.shape
    U = U1 - 1
    if targets.shape[1] < U:
        raise ValueError(f"targets have {targets.shape[1]} columns, the logits {U} label positions")
    logp = torch.log_softmax(logits.float(), dim=-1)
    lp_blank = logp[..., blank]  # [B, T, U+1]
    if U > 0:
        idx = targets[:, :U].long().clamp(0, logits.shape[-1] - 1)
        lp_emit = torch.gather(logp[:, :, :U, :], 3, idx[:, None, :, None].expand(B, T, U, 1)).squeeze(3)
    else:
        lp_emit = logp.new_zeros(B, T, 0)
    N = T + U  # diagonals n = t + u, 0 .. T + U - 1
    n = torch.arange(N, device=logits.device)[:, None]
    u = torch.arange(U1, device=logits.device)[None, :]
    t = n - u  # [N, U+1]
    inside = (t >= 0) & (t < T)
    tc = t.clamp(0, T - 1)

    def skew(x: torch.Tensor) -> torch.Tensor:  # x[B, T, W] -> s[B, N, W] with s[b, n, u] = x[b, n-u, u]
        W = x.shape[2]
        index = tc[None, :, :W].expand(B, N, W)
        s = torch.gather(x, 1, index)
        return s.masked_fill(~inside[None, :, :W], NEG)

    sb = skew(lp_blank)  # [B, N, U+1]
    se = skew(lp_emit) if U > 0 else lp_emit.new_zeros(B, N, 0)  # [B, N, U]
    neg = logp.new_full((B, 1), NEG)
    diag = torch.cat([logp.new_zeros(B, 1), logp.new_full((B, U), NEG)], 1)  # n = 0: only (0, 0)
    diags = [diag]
    sbs = sb.unbind(1)  # one backward for all steps (indexing per step would allocate [B, N, U+1] each)
    ses = se.unbind(1) if U > 0 else ()
    masks = inside.unbind(0)
    for k in range(1, N):
        # from (t-1, u) by a blank: the previous diagonal's cell u, with blank at (t-1, u) = skew[k-1, u]
        down = diag + sbs[k - 1]
        # from (t, u-1) by emitting label u-1: previous diagonal's cell u-1, emit at (t, u-1) = skew[k-1, u-1]
        right = torch.cat([neg, diag[:, :-1] + ses[k - 1]], 1) if U > 0 else neg.expand(B, 1)
        diag = _logaddexp(down, right)
        diag = torch.where(masks[k], diag, neg)
        diags.append(diag)
    alphas = torch.stack(diags, 1)  # [B, N, U+1]
    tl, ul = logit_lengths.long().to(logits.device), target_lengths.long().to(logits.device)
    last = tl - 1 + ul
    b = torch.arange(B, device=logits.device)
    final = alphas[b, last, ul] + lp_blank[b, tl - 1, ul]
    return -final
