"""Llama models from a config: transformers' ``LlamaForCausalLM``, initialised as Megatron initialises GPT models,
saved and read as a Hugging Face model directory (``config.json`` + safetensors) with safe loaders only.

A model is described by a plain dict of ``LlamaConfig`` fields (the benchmark's definition holds it), so that
the 8B reference, the 70B LoRA base and the few-million-parameter mini model are the same code.

Initialisation (Megatron-Core's, which NeMo's Llama 3.1 recipes use): every linear and embedding weight from
N(0, std), the two projections that write into the residual stream (attention output, MLP down) from
N(0, std / sqrt(2 x layers)), norms at 1. ``std`` is the definition's ``init_std`` (0.02 for Llama 3.1).
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mlbench.errors import DataError

#: The projections that add into the residual stream: their init is scaled down by sqrt(2 x layers).
RESIDUAL_OUTPUTS = ("o_proj.weight", "down_proj.weight")
WEIGHTS_INDEX = "model.safetensors.index.json"


def config(spec: dict[str, Any], **overrides: Any):
    """A ``LlamaConfig`` from ``spec`` (config fields), with PyTorch's fused attention and no KV cache."""
    from transformers import LlamaConfig

    fields = {**spec, **overrides}
    cfg = LlamaConfig(**fields, use_cache=False)
    cfg._attn_implementation = "sdpa"
    return cfg


def build(spec: dict[str, Any], *, init_std: float, meta: bool = False, dtype: torch.dtype | None = None
          ) -> nn.Module:
    """A ``LlamaForCausalLM`` of ``spec``; on the ``meta`` device (no memory, for sharding first), else initialised
    with ``init_std`` (see the module docstring)."""
    from transformers import LlamaForCausalLM

    cfg = config(spec)
    if meta:
        with torch.device("meta"):
            model = LlamaForCausalLM(cfg)
    else:
        model = LlamaForCausalLM(cfg)
        init_weights(model, init_std)
    if dtype is not None:
        model = model.to(dtype)
    return model


@torch.no_grad()
def init_weights(model: nn.Module, std: float) -> None:
    """Megatron's initialisation (module docstring), in place; works on sharded (DTensor) parameters too."""
    layers = model.config.num_hidden_layers
    out_std = std / math.sqrt(2.0 * layers)
    for name, p in model.named_parameters():
        if "norm" in name:
            p.fill_(1.0)
        elif name.endswith(RESIDUAL_OUTPUTS):
            nn.init.normal_(p, mean=0.0, std=out_std)
        else:
            nn.init.normal_(p, mean=0.0, std=std)


def materialize(model: nn.Module, device: torch.device, init_std: float | None) -> None:
    """A model built on the meta device (and sharded), given real storage on ``device``: the rotary embedding's
    frequencies computed again, the weights initialised (``init_std``) or left for a loader to fill (None)."""
    model.to_empty(device=device)
    rotary = model.model.rotary_emb
    model.model.rotary_emb = type(rotary)(config=model.config).to(device)
    if init_std is not None:
        import warnings

        with warnings.catch_warnings():  # on a CPU mesh each rank draws its shards from its own generator: fine
            warnings.filterwarnings("ignore", message="DTensor random operators")
            init_weights(model, init_std)


def checkpoint_activations(model: nn.Module) -> None:
    """Recompute each decoder layer's activations in the backward pass (non-reentrant checkpoints), through
    transformers' own switch (``activation_checkpointing_enable`` from 5.x, ``gradient_checkpointing_enable``
    before)."""
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def parameter_count(spec: dict[str, Any]) -> dict[str, int]:
    """Parameters of the model ``spec`` describes, counted from the config (no model is built)."""
    h, v, layers = spec["hidden_size"], spec["vocab_size"], spec["num_hidden_layers"]
    heads = spec["num_attention_heads"]
    kv = spec.get("num_key_value_heads", heads)
    head_dim = spec.get("head_dim") or h // heads
    attn = h * heads * head_dim * 2 + h * kv * head_dim * 2  # q and o; k and v
    mlp = 3 * h * spec["intermediate_size"]
    per_layer = attn + mlp + 2 * h  # two RMSNorms
    embedding = v * h
    head = 0 if spec.get("tie_word_embeddings") else v * h
    return {"total": embedding + layers * per_layer + h + head, "embedding": embedding}


def training_flops_per_token(spec: dict[str, Any], seq_len: int) -> float:
    """Model FLOPs of one trained token (forward + backward, multiply-add = 2), the convention of PaLM's MFU:
    6 x (parameters except the input embedding, whose lookup is no matmul) + 12 x layers x hidden x sequence
    (the attention scores and their weighted sum, forward and backward, without discounting the causal mask)."""
    n = parameter_count(spec)
    dense = n["total"] - n["embedding"]
    heads = spec["num_attention_heads"]
    head_dim = spec.get("head_dim") or spec["hidden_size"] // heads
    attention = 12 * spec["num_hidden_layers"] * heads * head_dim * seq_len
    return float(6 * dense + attention)


# ---------------------------------------------------------------- Hugging Face model directories

_DIR_FIX = ("pass a Hugging Face model directory: config.json and the weights as safetensors (model.safetensors, "
            "or shards listed in model.safetensors.index.json)")


def weight_files(model_dir: str | Path) -> list[Path]:
    """The safetensors files of a model directory, each checked against truncation; DataError naming what is
    missing. Pickled weights (``pytorch_model.bin``) are refused: only safetensors never run code on load."""
    d = Path(model_dir)
    if not d.is_dir():
        raise DataError(f"model directory {d} not found", _DIR_FIX)
    if not (d / "config.json").is_file():
        raise DataError(f"model directory {d} has no config.json", _DIR_FIX)
    index = d / WEIGHTS_INDEX
    if index.is_file():
        try:
            names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{index} is not a safetensors index ({exc})", _DIR_FIX) from exc
        files = [d / n for n in names]
    else:
        files = sorted(d.glob("*.safetensors"))
    if not files:
        pickled = sorted(p.name for p in d.glob("*.bin")) + sorted(p.name for p in d.glob("*.pt"))
        what = f" (only {', '.join(pickled[:3])}: pickled weights, which mlbench never loads)" if pickled else ""
        raise DataError(f"model directory {d} holds no weights{what}", _DIR_FIX + "; convert pickled weights with "
                        "transformers' save_pretrained()")
    for f in files:
        check_safetensors(f)
    return files


def check_safetensors(path: Path) -> dict[str, Any]:
    """The header of a safetensors file; DataError when the file is missing, truncated or not safetensors."""
    if not path.is_file():
        raise DataError(f"weights file {path} not found (listed in {WEIGHTS_INDEX})", _DIR_FIX)
    size = path.stat().st_size
    fix = f"copy {path.name} again (compare its size and checksum with the source)"
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise DataError(f"weights file {path} is truncated ({size} bytes)", fix)
        (n,) = struct.unpack("<Q", head)
        if n > size - 8:
            raise DataError(f"weights file {path} is truncated or not safetensors (header of {n} bytes in a file of "
                            f"{size})", fix)
        try:
            header = json.loads(f.read(n))
        except ValueError as exc:
            raise DataError(f"weights file {path} is not safetensors (unreadable header)", fix) from exc
    end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + n + end > size:
        raise DataError(f"weights file {path} is truncated: its tensors need {8 + n + end} bytes, the file holds "
                        f"{size}", fix)
    return header


def tensor_names(model_dir: str | Path) -> set[str]:
    """The tensor names of a model directory's safetensors files (read from their headers only)."""
    names: set[str] = set()
    for f in weight_files(model_dir):
        names |= {k for k in check_safetensors(f) if k != "__metadata__"}
    return names


def read_config(model_dir: str | Path) -> dict[str, Any]:
    """``config.json`` of a model directory as a dict (checked to be a Llama)."""
    path = Path(model_dir) / "config.json"
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path}: {exc}", _DIR_FIX) from exc
    if cfg.get("model_type") != "llama":
        raise DataError(f"{path} describes a '{cfg.get('model_type')}' model, not a Llama", _DIR_FIX)
    return cfg


def load_weights(model: nn.Module, model_dir: str | Path) -> None:
    """Fill ``model`` (not sharded) from the directory's safetensors; every weight must fit (names and shapes)."""
    from safetensors.torch import load_file

    state: dict[str, torch.Tensor] = {}
    for f in weight_files(model_dir):
        state.update(load_file(str(f)))
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("rotary_emb.inv_freq")]
    if missing:
        raise DataError(f"the weights in {model_dir} lack {len(missing)} of the model's tensors (e.g. {missing[0]})",
                        "pass the directory of a Llama with this architecture (see its config.json)")
    for k, v in state.items():
        if k in own and own[k].shape != v.shape:
            raise DataError(f"{model_dir}: {k} has shape {tuple(v.shape)}, the model expects {tuple(own[k].shape)}",
                            "the weights do not match config.json")
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)


def load_weights_sharded(model: nn.Module, model_dir: str | Path) -> None:
    """Fill a sharded model (FSDP2 DTensors) from the directory's safetensors: each rank reads only its own
    slices, through torch.distributed.checkpoint's Hugging Face reader."""
    import torch.distributed.checkpoint as dcp

    weight_files(model_dir)  # missing or truncated files fail here, with a message
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("rotary_emb.inv_freq")}
    try:
        dcp.load(state, storage_reader=dcp.HuggingFaceStorageReader(str(model_dir)))
    except Exception as exc:  # noqa: BLE001 - DCP wraps a reader's failure in a CheckpointException
        raise DataError(f"cannot load the weights of {model_dir} into the model: {str(exc).splitlines()[0][:300]}",
                        "pass the directory of a Llama with this architecture (see its config.json)") from exc


def save_hf_dir(model: nn.Module, dest: str | Path, tokenizer_files: list[Path] | None = None) -> Path:
    """``model`` as a Hugging Face directory (config.json + model.safetensors), plus tokenizer files; written
    beside ``dest`` and renamed when complete."""
    import shutil

    dest = Path(dest)
    tmp = dest.with_name(f".{dest.name}.part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.config.use_cache = True  # for generation, where the directory is served
    from transformers.utils import logging as hf_logging

    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(str(tmp))
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    model.config.use_cache = False
    for f in tokenizer_files or []:
        shutil.copyfile(f, tmp / Path(f).name)
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)
    return dest
