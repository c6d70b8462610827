"""LoRA adapters through ``peft`` on a Llama built from a config, with its frozen base weights read from a Hugging
Face directory; works on a model built on the meta device and sharded (FSDP2) before it has storage.

Module names under peft gain a prefix (``base_model.model.``) and the adapted layers an infix (``.base_layer``);
:func:`base_parameters` maps the model's frozen parameters back to the names the safetensors files use.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mlbench.errors import DataError
from mlbench.llm import llama

PEFT_PREFIX = "base_model.model."


def apply(model: nn.Module, *, rank: int, alpha: float, dropout: float, targets: tuple[str, ...]) -> nn.Module:
    """``model`` with LoRA adapters on the ``targets`` linear layers; every other parameter frozen."""
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(targets), bias="none",
                     task_type="CAUSAL_LM")
    return get_peft_model(model, cfg)


def hf_name(fqn: str) -> str:
    return fqn.removeprefix(PEFT_PREFIX).replace(".base_layer.", ".")


def base_parameters(model: nn.Module) -> dict[str, torch.Tensor]:
    """The frozen base weights under their Hugging Face names (the adapters left out)."""
    return {hf_name(n): p for n, p in model.named_parameters() if "lora_" not in n}


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    return model.base_model.model.model.layers


def inner(model: nn.Module) -> nn.Module:
    """The LlamaForCausalLM inside the peft wrapper."""
    return model.base_model.model


@torch.no_grad()
def init_adapters(model: nn.Module) -> None:
    """peft's initialisation of every adapter (A: Kaiming-uniform, B: zeros, so training starts from the base)."""
    from peft.tuners.lora import LoraLayer

    for m in model.modules():
        if isinstance(m, LoraLayer):
            for name in m.lora_A:
                m.reset_lora_parameters(name, True)


def load_base(model: nn.Module, model_dir: str | Path, *, sharded: bool) -> None:
    """The base weights of ``model_dir`` into ``model`` (the adapters untouched); sharded: each rank reads its
    slices through torch.distributed.checkpoint's Hugging Face reader."""
    files = llama.weight_files(model_dir)
    params = base_parameters(model)
    if sharded:
        import torch.distributed.checkpoint as dcp

        try:
            dcp.load(params, storage_reader=dcp.HuggingFaceStorageReader(str(model_dir)))
        except Exception as exc:  # noqa: BLE001 - DCP wraps a reader's failure in a CheckpointException
            raise DataError(f"cannot load the weights of {model_dir}: {str(exc).splitlines()[0][:300]}",
                            "pass the directory of a Llama with this architecture (see its config.json)") from exc
        return
    from safetensors import safe_open

    seen = set()
    for f in files:
        with safe_open(str(f), framework="pt") as sf:
            for key in sf.keys():
                if key not in params:
                    continue
                t = sf.get_tensor(key)
                if tuple(t.shape) != tuple(params[key].shape):
                    raise DataError(f"{model_dir}: {key} has shape {tuple(t.shape)}, the model expects "
                                    f"{tuple(params[key].shape)}", "the weights do not match config.json")
                params[key].copy_(t)
                seen.add(key)
    missing = sorted(set(params) - seen)
    if missing:
        raise DataError(f"the weights in {model_dir} lack {len(missing)} of the model's tensors (e.g. {missing[0]})",
                        "pass the directory of a Llama with this architecture (see its config.json)")
