"""Model FLOPs: what a model computes per sample or token, counted once per model, multiply-add = 2 FLOPs.

Two ways, which agree for transformers (a test checks within 5%):
- ``count(fn)``: torch's FLOP counter (``FlopCounterMode``) over one call, e.g. one forward pass at batch 1
  (inference), or one forward+backward on a synthetic batch (training: the counter's exact figure, about 3x the
  forward). It counts matrix multiplies, convolutions and attention, not element-wise work.
- ``transformer_flops_per_token``: the formula of PaLM's appendix B for a dense decoder or encoder,
  6N + 12·L·H·Q·T per token for training (2N + 4·L·H·Q·T forward only), with N the parameters a token is
  multiplied with (``matmul_params``: every linear layer, the output projection included; embedding lookups are
  not multiplies), L layers, H attention (query) heads of Q dimensions and T the sequence length. Attention is
  counted over the whole T x T score matrix, as the counter does, causal or not; grouped-query attention changes
  N, not the attention term.

Model FLOPs are what the model needs, not what the hardware did: activation recomputation and padding are not
added, so MFU is comparable across systems (hardware FLOPs utilisation would count them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

TRAINING_FACTOR = 3  # forward + backward (gradients of activations and of weights): 3x the forward FLOPs


def count(fn: Callable[[], Any]) -> float | None:
    """FLOPs torch's counter sees while ``fn()`` runs (multiply-add = 2), or None when it cannot trace it.
    The counter is given the CPU flash-attention kernels it lacks (``F.scaled_dot_product_attention`` on a CPU,
    causal masks included, ran uncounted), counted as its CUDA attention kernels are."""
    from torch.utils.flop_counter import FlopCounterMode

    try:
        with FlopCounterMode(display=False, custom_mapping=_extra_formulas()) as counter:
            fn()
        return float(counter.get_total_flops())
    except Exception:  # noqa: BLE001 - FLOPs are informative; never fail a run for them
        return None


def _attention_flops(query: Any, key: Any, value: Any) -> int:
    """Forward FLOPs of attention with these shapes [batch, heads, tokens, dim] (query heads may be a multiple
    of the key/value heads): scores Q.K^T and their product with V, over the whole score matrix."""
    b, h, t, d = query
    s, dv = key[-2], value[-1]
    return 2 * b * h * t * s * d + 2 * b * h * t * s * dv


def _sdpa_forward(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return _attention_flops(query, key, value)


def _sdpa_backward(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    return 2 * _attention_flops(query, key, value)  # gradients of Q, K, V and of the scores: two per product


def _extra_formulas() -> dict:
    import torch

    aten = torch.ops.aten
    out = {}
    for name, fn in (("_scaled_dot_product_flash_attention_for_cpu", _sdpa_forward),
                     ("_scaled_dot_product_flash_attention_for_cpu_backward", _sdpa_backward)):
        op = getattr(aten, name, None)
        if op is not None:
            out[op] = fn
    return out


def matmul_params(model: Any) -> int:
    """Parameters a token is multiplied with: the weights of every linear layer (torch ``nn.Linear`` and the
    ``Conv1D`` of GPT-2-style models), the output projection included even when it shares the embedding."""
    import torch

    seen: set[int] = set()
    n = 0
    for m in model.modules():
        w = getattr(m, "weight", None)
        linear = isinstance(m, torch.nn.Linear) or type(m).__name__ == "Conv1D"
        if linear and isinstance(w, torch.Tensor) and id(m) not in seen:
            seen.add(id(m))
            n += w.numel()
    return n


def transformer_flops_per_token(*, params: int, layers: int, heads: int, head_dim: int, seq_len: int,
                                training: bool = True) -> float:
    """Model FLOPs per token of a dense transformer (PaLM, appendix B): ``6·params + 12·layers·heads·head_dim·
    seq_len`` for training, ``2·params + 4·layers·heads·head_dim·seq_len`` for a forward pass.

    ``params``: the parameters a token is multiplied with (``matmul_params(model)``, or from the config: every
    projection of every layer plus the output projection, no embedding lookups); ``heads``: query heads;
    ``seq_len``: the tokens each token attends over (the training sequence length)."""
    for name, v in (("params", params), ("layers", layers), ("heads", heads), ("head_dim", head_dim),
                    ("seq_len", seq_len)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise ValueError(f"{name} must be a non-negative whole number, not {v!r}")
    dense, attention = 2.0 * params, 4.0 * layers * heads * head_dim * seq_len
    return TRAINING_FACTOR * (dense + attention) if training else dense + attention
