"""BERT for pre-training (masked LM + next sentence) on transformers' classes, built from a config, never downloaded.

The state dict keeps transformers' names (``bert.*``, ``cls.*``) so that a question-answering model loads the
encoder (``bert.*``) from a mini checkpoint. ``forward`` takes a batch dict and computes the masked-LM logits
only at ``masked_lm_positions`` (hidden states gathered before the transform and vocabulary projection, as
the MLPerf reference's ``dense_seq_output`` does): ``[B, max_predictions, vocab]`` plus NSP logits ``[B, 2]``.

``load_phase1_checkpoint`` reads the MLPerf phase-1 checkpoint: the reference converts Google's TF checkpoint
``model.ckpt-28252`` with ``convert_tf_checkpoint.py`` into ``torch.save({'model': state_dict})`` of NVIDIA's
``BertForPretraining``, whose names differ from transformers' in a few places (``dense_act`` for the fused
linear+GELU layers, ``multi_head_attention.q_weight`` ... with the fast attention, ``gamma``/``beta`` in older
LayerNorms, ``module.`` from DDP) and whose vocabulary is padded to a multiple of 8 (30522 -> 30528).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from mlbench.definition import Benchmark
from mlbench.errors import DataError


def bert_config(bench: Benchmark):
    """transformers.BertConfig from ``bench.hparams['model']`` (the reference's bert_config.json fields)."""
    from transformers import BertConfig

    m = dict(bench.hparams["model"])
    return BertConfig(
        vocab_size=m["vocab_size"], hidden_size=m["hidden_size"], num_hidden_layers=m["num_hidden_layers"],
        num_attention_heads=m["num_attention_heads"], intermediate_size=m["intermediate_size"],
        max_position_embeddings=m["max_position_embeddings"], type_vocab_size=m.get("type_vocab_size", 2),
        hidden_dropout_prob=m.get("hidden_dropout_prob", 0.1),
        attention_probs_dropout_prob=m.get("attention_probs_dropout_prob", 0.1),
        hidden_act=m.get("hidden_act", "gelu"), initializer_range=m.get("initializer_range", 0.02),
        layer_norm_eps=m.get("layer_norm_eps", 1e-12), pad_token_id=0,
    )


def _pretraining_class():
    from transformers import BertForPreTraining

    class BertPretrainingModel(BertForPreTraining):
        """BertForPreTraining whose forward takes the batch dict and projects only the masked positions."""

        def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
            out = self.bert(input_ids=batch["input_ids"], token_type_ids=batch["token_type_ids"],
                            attention_mask=batch["attention_mask"], return_dict=False)
            sequence, pooled = out[0], out[1]
            pos = batch["masked_lm_positions"]
            picked = sequence.gather(1, pos.unsqueeze(-1).expand(-1, -1, sequence.size(-1)))
            return self.cls.predictions(picked), self.cls.seq_relationship(pooled)

    return BertPretrainingModel


def build_pretraining_model(bench: Benchmark) -> torch.nn.Module:
    config = bert_config(bench)
    config._attn_implementation = "sdpa"
    return _pretraining_class()(config)


# ---------------------------------------------------------------- the MLPerf phase-1 checkpoint

_RENAMES = [  # (pattern, replacement) from NVIDIA/Google names to transformers'
    (r"^module\.", ""),
    (r"\.dense_act\.", ".dense."),
    (r"\.attention\.multi_head_attention\.q_(weight|bias)$", r".attention.self.query.\1"),
    (r"\.attention\.multi_head_attention\.k_(weight|bias)$", r".attention.self.key.\1"),
    (r"\.attention\.multi_head_attention\.v_(weight|bias)$", r".attention.self.value.\1"),
    (r"\.attention\.multi_head_attention\.out_proj_(weight|bias)$", r".attention.output.dense.\1"),
    (r"\.attention\.layer_norm\.", ".attention.output.LayerNorm."),
    (r"\.LayerNorm\.gamma$", ".LayerNorm.weight"),
    (r"\.LayerNorm\.beta$", ".LayerNorm.bias"),
]
_VOCAB_KEYS = ("bert.embeddings.word_embeddings.weight", "cls.predictions.decoder.weight",
               "cls.predictions.bias", "cls.predictions.decoder.bias")
_CKPT_HINT = ("give the phase-1 checkpoint converted as the MLPerf reference does: `python convert_tf_checkpoint.py "
              "--tf_checkpoint model.ckpt-28252 --bert_config_path bert_config.json --output_checkpoint "
              "model.ckpt-28252.pt`")


def reference_name(name: str) -> str:
    """A checkpoint parameter name as transformers' BertForPreTraining calls it."""
    for pattern, repl in _RENAMES:
        name = re.sub(pattern, repl, name)
    return name


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The checkpoint's state dict (unwrapped from ``model``/``state_dict``), safely loaded."""
    from mlbench.training import checkpoint

    obj = checkpoint.read(path, what="BERT phase-1 checkpoint", hint=_CKPT_HINT)
    for key in ("model", "state_dict", "model_state_dict"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not any(isinstance(v, torch.Tensor) for v in obj.values()):
        raise DataError(f"{path}: holds no state dict of tensors", _CKPT_HINT)
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def convert_state_dict(state: dict[str, torch.Tensor], model: torch.nn.Module, path: str | Path
                       ) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors under our names and shapes; a DataError for what cannot be matched."""
    ours = model.state_dict()
    vocab = ours["bert.embeddings.word_embeddings.weight"].shape[0]
    converted: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        new = reference_name(name)
        if new in ours:
            converted[new] = tensor
    if "bert.embeddings.word_embeddings.weight" not in converted:
        raise DataError(f"{path}: no BERT embedding table (bert.embeddings.word_embeddings.weight) among its "
                        f"{len(state)} tensors: not a BERT pre-training checkpoint", _CKPT_HINT)
    got_vocab = converted["bert.embeddings.word_embeddings.weight"].shape[0]
    padded = vocab + (-vocab) % 8
    if got_vocab != vocab and got_vocab != padded:
        raise DataError(
            f"{path}: the checkpoint's vocabulary has {got_vocab} entries but the model's has {vocab}",
            f"use the vocab.txt and bert_config.json that belong to the checkpoint (vocab_size {got_vocab}), "
            f"or a checkpoint trained with a {vocab}-entry vocabulary")
    for key in _VOCAB_KEYS:  # the reference pads the vocabulary to a multiple of 8: drop the padding rows
        if key in converted and converted[key].shape[0] == padded != vocab:
            converted[key] = converted[key][:vocab]
    if "cls.predictions.decoder.weight" not in converted:  # tied to the word embeddings
        converted["cls.predictions.decoder.weight"] = converted["bert.embeddings.word_embeddings.weight"]
    if "cls.predictions.decoder.bias" not in converted and "cls.predictions.bias" in converted:
        converted["cls.predictions.decoder.bias"] = converted["cls.predictions.bias"]
    buffers = {n for n, _ in model.named_buffers()}
    missing = [k for k in ours if k not in converted and k not in buffers]
    if missing:
        shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
        raise DataError(f"{path}: the checkpoint lacks {len(missing)} of the model's tensors: {shown}",
                        "check that bert_config.json (layers, hidden size) matches the checkpoint; " + _CKPT_HINT)
    for key, tensor in converted.items():
        if tuple(tensor.shape) != tuple(ours[key].shape):
            raise DataError(f"{path}: {key} has shape {tuple(tensor.shape)} in the checkpoint but "
                            f"{tuple(ours[key].shape)} in the model",
                            "use the bert_config.json that belongs to the checkpoint")
    return converted


def load_phase1_checkpoint(model: torch.nn.Module, path: str | Path) -> dict[str, Any]:
    """Load the MLPerf phase-1 checkpoint into ``model`` (names converted); returns what was loaded."""
    converted = convert_state_dict(read_checkpoint(path), model, path)
    with torch.no_grad():
        result = model.load_state_dict(converted, strict=False)
    return {"loaded": len(converted), "missing": list(result.missing_keys)}
