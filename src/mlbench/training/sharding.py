"""Fully sharded data parallelism with PyTorch's FSDP2 (``fully_shard``), for models too large to replicate.

A workload shards its model in ``Workload.place_model``: each transformer block first (its parameters are
gathered just before the block runs and freed after), then the root (embeddings, final norm, output layer).
Under ``bf16`` the blocks compute with bf16 copies of the fp32 parameters and the gradients are reduced in fp32
(``MixedPrecisionPolicy``); under ``fp32`` nothing is cast. Works on CUDA (NCCL) and on CPUs (gloo).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from mlbench.errors import ConfigError

PARAM_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}


def _fsdp():
    try:
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
    except ImportError:
        try:  # torch 2.4-2.5 kept FSDP2 under _composable
            from torch.distributed._composable.fsdp import MixedPrecisionPolicy, fully_shard
        except ImportError as exc:
            raise ConfigError(f"this PyTorch ({torch.__version__}) has no FSDP2 (fully_shard)",
                              "sharded training needs torch >= 2.4; install a newer torch") from exc
    return fully_shard, MixedPrecisionPolicy


def mixed_precision(precision: str):
    """The FSDP2 mixed-precision policy of a run's ``--precision``: compute in its dtype, reduce in fp32."""
    if precision == "fp16":
        raise ConfigError("sharded training runs in fp32 or bf16, not fp16 (no loss scaling across shards)",
                          "use --precision bf16")
    _, policy = _fsdp()
    return policy(param_dtype=PARAM_DTYPES[precision], reduce_dtype=torch.float32)


def communication_precision(precision: str) -> str:
    """The lowest precision a sharded model's collectives carry: parameters are gathered in the compute dtype."""
    return {"bf16": "bfloat16", "fp16": "fp16"}.get(precision, "fp32")


def fully_shard_blocks(model: nn.Module, blocks: Iterable[nn.Module], precision: str) -> nn.Module:
    """``model`` sharded in place: every module of ``blocks``, then the root."""
    fully_shard, _ = _fsdp()
    mp = mixed_precision(precision)
    for block in blocks:
        fully_shard(block, mp_policy=mp)
    fully_shard(model, mp_policy=mp)
    return model


def is_sharded(model: nn.Module) -> bool:
    """True when some parameter of ``model`` is a DTensor (sharded by FSDP2)."""
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:
        return False
    return any(isinstance(p, DTensor) for p in model.parameters())


def local_bytes(model: nn.Module) -> int:
    """Bytes of parameters this rank holds (its shards when sharded)."""
    total = 0
    for p in model.parameters():
        t = p.to_local() if hasattr(p, "to_local") else p
        total += t.numel() * t.element_size()
    return total
