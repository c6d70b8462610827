"""The Llama model from a config, its Hugging Face directory, and the recipe (optimizer, schedule, batch rules)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from mlbench.benchmarks.llama31_8b.definition import LLAMA31_8B, RCP_RECIPES, SIZES
from mlbench.benchmarks.llama31_8b.workload import recipe_for
from mlbench.errors import DataError
from mlbench.llm import llama
from mlbench.llm.recipe import ClippedAdamW, CosineWithWarmup, decay_groups

SMALL = {**SIZES["tiny"].hparams["model"]}


def test_the_reference_config_is_llama_3_1_8b():
    n = llama.parameter_count(LLAMA31_8B)
    assert n["total"] == 8_030_261_248  # Llama 3.1 8B's published parameter count
    meta = llama.build(LLAMA31_8B, init_std=0.02, meta=True)  # no memory: built on the meta device
    assert sum(p.numel() for p in meta.parameters()) == n["total"]
    assert meta.config.rope_parameters["rope_type"] == "llama3" if hasattr(meta.config, "rope_parameters") else True
    # 6N (without the input embedding) + 12 x layers x hidden x sequence, per token at 8,192
    assert llama.training_flops_per_token(LLAMA31_8B, 8192) == pytest.approx(
        6 * (n["total"] - n["embedding"]) + 12 * 32 * 4096 * 8192)


def test_initialisation_scales_the_residual_projections():
    torch.manual_seed(0)
    spec = {**SMALL, "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 8}
    m = llama.build(spec, init_std=0.02)
    layer = m.model.layers[0]
    assert layer.self_attn.q_proj.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert layer.mlp.down_proj.weight.std().item() == pytest.approx(0.02 / math.sqrt(16), rel=0.05)
    assert torch.all(layer.input_layernorm.weight == 1)


def test_a_model_saved_as_a_hugging_face_directory_loads_back_with_transformers(tmp_path):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    m = llama.build(SMALL, init_std=0.02).eval()
    llama.save_hf_dir(m, tmp_path / "hf")
    assert {p.name for p in (tmp_path / "hf").iterdir()} >= {"config.json", "model.safetensors"}
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    ours = llama.build(SMALL, init_std=0.02).eval()
    llama.load_weights(ours, tmp_path / "hf")
    x = torch.randint(0, SMALL["vocab_size"], (2, 12))
    torch.testing.assert_close(again(input_ids=x).logits, m(input_ids=x).logits)
    torch.testing.assert_close(ours(input_ids=x).logits, m(input_ids=x).logits)


def test_a_model_directory_without_safe_weights_is_refused(tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    with pytest.raises(DataError, match="has no config.json"):
        llama.weight_files(d)
    (d / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (d / "pytorch_model.bin").write_bytes(b"\x80\x02")
    with pytest.raises(DataError, match="holds no weights .*pickled weights"):
        llama.weight_files(d)
    torch.manual_seed(0)
    llama.save_hf_dir(llama.build(SMALL, init_std=0.02), d)
    f = d / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(DataError, match="is truncated"):
        llama.weight_files(d)


def test_the_recipe_follows_the_reference_convergence_points():
    assert recipe_for(RCP_RECIPES, 32)[:2] == (8e-4, 4096)
    lr, warm, how = recipe_for(RCP_RECIPES, 48)
    assert lr == pytest.approx(8e-4) and warm == 5120 and "interpolated" in how
    assert recipe_for(RCP_RECIPES, 8)[:2] == (4e-4, 256) and "no RCP" in recipe_for(RCP_RECIPES, 8)[2]


def test_cosine_schedule_warms_up_linearly_then_decays_to_the_end_rate():
    p = torch.nn.Parameter(torch.zeros(2))
    opt = ClippedAdamW([p], lr=1.0, max_grad_norm=1.0)
    s = CosineWithWarmup(opt, base_lr=1.0, warmup_steps=4, total_steps=14, end_lr=0.1)
    assert [round(s.lr_at(i), 4) for i in (0, 3, 4, 9, 14, 100)] == [0.25, 1.0, 1.0, 0.55, 0.1, 0.1]
    assert opt.param_groups[0]["lr"] == 0.25


def test_the_optimizer_clips_the_global_norm_and_skips_decay_on_vectors():
    w = torch.nn.Parameter(torch.ones(2, 2))
    b = torch.nn.Parameter(torch.ones(2))
    groups = decay_groups([("w", w), ("b", b)], 0.1)
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]
    opt = ClippedAdamW(groups, lr=0.1, max_grad_norm=1.0)
    w.grad, b.grad = torch.full((2, 2), 3.0), torch.full((2,), 4.0)
    opt.step()
    assert float(opt.last_grad_norm) == pytest.approx(math.sqrt(4 * 9 + 2 * 16))
    assert float(torch.cat([w.grad.flatten(), b.grad]).norm()) == pytest.approx(1.0, rel=1e-4)
