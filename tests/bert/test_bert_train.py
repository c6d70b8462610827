"""BERT training: model, phase-1 checkpoint conversion, LAMB and its schedule, the workload."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from bert_train_support import SMALL_BENCH, make_dataset

from mlbench.benchmarks.bert.model import build_pretraining_model, load_phase1_checkpoint
from mlbench.benchmarks.bert.workload import WORKLOAD, BertWorkload
from mlbench.errors import DataError
from mlbench.training.batches import DataSpec
from mlbench.training.optimizers import Lamb, ReferenceSchedule, parameter_groups
from mlbench.training.recipe import OptimArgs, StepContext

CTX = StepContext(device=torch.device("cpu"))


@pytest.fixture
def data(tmp_path) -> Path:
    return make_dataset(tmp_path / "bert", files=3, per_file=32, eval_n=24)


def _model(seed: int = 0):
    torch.manual_seed(seed)
    return build_pretraining_model(SMALL_BENCH)


# ---------------------------------------------------------------- model

def test_model_keeps_transformers_names_and_projects_only_masked_positions(data):
    from transformers import BertForPreTraining

    model = _model().eval()
    keys = list(model.state_dict())
    assert all(k.startswith(("bert.", "cls.")) for k in keys)
    assert "bert.encoder.layer.0.attention.self.query.weight" in keys
    w = WORKLOAD(SMALL_BENCH)
    batch = next(iter(w.build_data(DataSpec(batch_size=4, eval_batch_size=4, data_dir=str(data))).train))
    mlm, nsp = model(batch)
    assert mlm.shape == (4, batch["masked_lm_positions"].shape[1], SMALL_BENCH.hparams["model"]["vocab_size"])
    assert nsp.shape == (4, 2)
    full = BertForPreTraining.forward(model, input_ids=batch["input_ids"], token_type_ids=batch["token_type_ids"],
                                      attention_mask=batch["attention_mask"])
    expected = full.prediction_logits.gather(
        1, batch["masked_lm_positions"].unsqueeze(-1).expand(-1, -1, mlm.shape[-1]))
    torch.testing.assert_close(mlm, expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(nsp, full.seq_relationship_logits, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- the phase-1 checkpoint

def _nvidia_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our state dict renamed as the reference's converted checkpoint names it (fast MHA, dense_act, gamma/beta,
    a DDP prefix)."""
    renames = [("intermediate.dense.", "intermediate.dense_act."), ("pooler.dense.", "pooler.dense_act."),
               ("transform.dense.", "transform.dense_act."),
               ("attention.self.query.", "attention.multi_head_attention.q_"),
               ("attention.self.key.", "attention.multi_head_attention.k_"),
               ("attention.self.value.", "attention.multi_head_attention.v_"),
               ("attention.output.dense.", "attention.multi_head_attention.out_proj_"),
               ("attention.output.LayerNorm.", "attention.layer_norm."),
               ("embeddings.LayerNorm.weight", "embeddings.LayerNorm.gamma"),
               ("embeddings.LayerNorm.bias", "embeddings.LayerNorm.beta")]
    out = {}
    for k, v in state.items():
        if k.endswith(("position_ids", "token_type_ids")):
            continue
        for ours, theirs in renames:
            k = k.replace(ours, theirs)
        out["module." + k] = v.clone()
    return out


def test_phase1_checkpoint_in_reference_names_loads(tmp_path):
    source = _model(1)
    names = _nvidia_names(source.state_dict())
    assert any("multi_head_attention.q_weight" in k for k in names) and any("dense_act" in k for k in names)
    path = tmp_path / "model.ckpt-28252.pt"
    torch.save({"model": names}, path)
    target = _model(2)
    load_phase1_checkpoint(target, path)
    for k, v in source.state_dict().items():
        torch.testing.assert_close(target.state_dict()[k], v, msg=k)


def test_phase1_checkpoint_with_padded_vocabulary_loads(tmp_path):
    bench = SMALL_BENCH.derive(hparams={"model": {**SMALL_BENCH.hparams["model"], "vocab_size": 61}})
    torch.manual_seed(0)
    source = build_pretraining_model(bench)
    state = {k: (torch.cat([v, torch.zeros(3, *v.shape[1:])]) if v.shape and v.shape[0] == 61 else v)
             for k, v in source.state_dict().items()}  # 61 -> 64, as the reference pads 30522 -> 30528
    torch.save({"model": state}, tmp_path / "c.pt")
    target = build_pretraining_model(bench)
    load_phase1_checkpoint(target, tmp_path / "c.pt")
    torch.testing.assert_close(target.bert.embeddings.word_embeddings.weight,
                               source.bert.embeddings.word_embeddings.weight)


def test_phase1_checkpoint_errors_name_the_file_and_fix(tmp_path):
    good = tmp_path / "good.pt"
    torch.save({"model": _model().state_dict()}, good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DataError, match="truncated.pt") as err:
        load_phase1_checkpoint(_model(), truncated)
    assert "fix:" in str(err.value)

    other = SMALL_BENCH.derive(hparams={"model": {**SMALL_BENCH.hparams["model"], "vocab_size": 100}})
    torch.save({"model": build_pretraining_model(other).state_dict()}, tmp_path / "vocab.pt")
    with pytest.raises(DataError) as err:
        load_phase1_checkpoint(_model(), tmp_path / "vocab.pt")
    assert "100" in str(err.value) and "64" in str(err.value) and "vocab" in str(err.value)

    state = _model().state_dict()
    del state["bert.encoder.layer.1.output.dense.weight"]
    torch.save(state, tmp_path / "missing.pt")
    with pytest.raises(DataError, match="bert.encoder.layer.1.output.dense.weight"):
        load_phase1_checkpoint(_model(), tmp_path / "missing.pt")

    with pytest.raises(DataError, match="not found"):
        load_phase1_checkpoint(_model(), tmp_path / "absent.pt")


# ---------------------------------------------------------------- LAMB

def _direct_lamb(params, grads, states, lr, b1, b2, eps, wd, adapt, max_norm, step):
    """LAMB written out per tensor, straight from the definition."""
    total = math.sqrt(sum(float((g.double() ** 2).sum()) for g in grads))
    scale = max_norm / max(total, max_norm)
    out = []
    for p, g, st, w_decay, a in zip(params, grads, states, wd, adapt):
        g = g.double() * scale
        st["m"] = b1 * st["m"] + (1 - b1) * g
        st["v"] = b2 * st["v"] + (1 - b2) * g * g
        m_hat, v_hat = st["m"] / (1 - b1 ** step), st["v"] / (1 - b2 ** step)
        u = m_hat / (v_hat.sqrt() + eps) + w_decay * p.double()
        ratio = 1.0
        if a and w_decay:
            wn, un = float(p.double().norm()), float(u.norm())
            ratio = wn / un if wn > 0 and un > 0 else 1.0
        out.append(p.double() - lr * ratio * u)
    return out


@pytest.mark.parametrize("max_norm", [1.0, 1e3])  # clipping active / inactive
def test_lamb_matches_the_direct_per_tensor_computation(max_norm):
    torch.manual_seed(0)
    decay = [torch.randn(5, 4), torch.randn(3, 3)]
    no_decay = [torch.randn(4), torch.zeros(3)]
    params = [p.clone().requires_grad_() for p in decay + no_decay]
    opt = Lamb([{"params": params[:2], "weight_decay": 0.01, "adapt": True},
                {"params": params[2:], "weight_decay": 0.0, "adapt": False}],
               lr=0.05, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01, max_grad_norm=max_norm)
    ref = [p.detach().clone() for p in params]
    states = [{"m": torch.zeros_like(p, dtype=torch.float64), "v": torch.zeros_like(p, dtype=torch.float64)}
              for p in params]
    for step in (1, 2, 3):
        grads = [torch.randn_like(p) * 3 for p in params]
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt.step()
        ref = _direct_lamb(ref, grads, states, 0.05, 0.9, 0.999, 1e-6, [0.01, 0.01, 0, 0], [1, 1, 0, 0],
                           max_norm, step)
        for p, r in zip(params, ref):
            torch.testing.assert_close(p.detach().double(), r, rtol=1e-5, atol=1e-6)


def test_lamb_groups_exclude_bias_and_layernorm():
    model = _model()
    groups = parameter_groups(model, 0.01)
    decay = {id(p) for p in groups[0]["params"]}
    names = {n: id(p) for n, p in model.named_parameters()}
    assert names["bert.encoder.layer.0.attention.self.query.weight"] in decay
    assert names["bert.encoder.layer.0.attention.self.query.bias"] not in decay
    assert names["bert.embeddings.LayerNorm.weight"] not in decay
    assert groups[1]["weight_decay"] == 0.0
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_reference_schedule():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    s = ReferenceSchedule(opt, base_lr=1.0, warmup_steps=4, training_steps=10)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(12):
        s.step()
        lrs.append(opt.param_groups[0]["lr"])
    # update k (1-based) uses k/4 during warm-up, then 1 - k/10, floored at 0
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 0.6])
    assert lrs[8] == pytest.approx(0.1) and lrs[9] == 0.0 and lrs[12] == 0.0
    s2 = ReferenceSchedule(opt, base_lr=2.0, warmup_steps=0, training_steps=100, start_warmup_step=0)
    assert s2.lr_at(0) == pytest.approx(2.0 * 0.99)
    state = s.state_dict()
    s3 = ReferenceSchedule(opt, 1.0, 4, 10)
    s3.load_state_dict(state)
    assert s3.lr_at(s3.step_num) == s.lr_at(s.step_num)


# ---------------------------------------------------------------- the workload

def _required_hparam_keys() -> set[str]:
    import importlib.resources

    import yaml

    text = (importlib.resources.files("mlperf_logging") / "compliance_checker" / "training_5.0.0" /
            "closed_bert.yaml").read_text()
    keys = {item["KEY"]["NAME"] for item in yaml.safe_load(text)}
    return keys - {"global_batch_size", "eval_accuracy"}


def test_workload_loss_evaluate_and_hparams(data):
    w = BertWorkload(SMALL_BENCH)
    torch.manual_seed(0)
    model = w.build_model()
    bundle = w.build_data(DataSpec(batch_size=8, eval_batch_size=5, data_dir=str(data)))
    assert bundle.train_samples == 96 and bundle.eval_samples == 24 and len(bundle.train) == 12
    batch = w.to_device(next(iter(bundle.train)), CTX)
    assert w.count_samples(batch) == 8
    loss, parts = w.loss(model, batch, CTX)
    assert set(parts) == {"mlm", "nsp"} and torch.isfinite(loss)
    torch.testing.assert_close(loss, parts["mlm"] + parts["nsp"])
    metrics, count = w.evaluate(model, bundle.eval, CTX)
    assert count == 24 and set(metrics) == {"mlm_accuracy", "mlm_loss"}
    # the same numbers computed directly over the whole set
    correct = total = 0
    model.eval()
    with torch.no_grad():
        for b in bundle.eval:
            logits, _ = model(b)
            valid = b["masked_lm_ids"] != 0
            correct += int(((logits.argmax(-1) == b["masked_lm_ids"]) & valid).sum())
            total += int(valid.sum())
    assert metrics["mlm_accuracy"] == pytest.approx(correct / total)
    assert w.quality(metrics) == metrics["mlm_accuracy"]

    opt, sched = w.build_optimizer(model, args := OptimArgs(global_batch_size=8, steps_per_epoch=12, epochs=1))
    hp = w.mllog_hparams(args, opt)
    assert set(hp) == _required_hparam_keys()
    assert hp["opt_learning_rate_training_steps"] == math.ceil(SMALL_BENCH.max_samples / 8)
    synth = w.synthetic_batch(4, CTX)
    assert torch.isfinite(w.loss(model, synth, CTX)[0])


def test_a_few_steps_reduce_the_loss(tmp_path):
    from mlbench.benchmarks.bert import pretrain_data
    from mlbench.benchmarks.bert.definition import TINY

    root = pretrain_data.ensure_data(TINY, tmp_path / "tiny")  # generated sentences: something to learn
    w = BertWorkload(TINY)
    torch.manual_seed(0)
    model = w.build_model()
    bundle = w.build_data(DataSpec(batch_size=16, eval_batch_size=64, data_dir=str(root), workers=0))
    opt, sched = w.build_optimizer(model, OptimArgs(global_batch_size=16, steps_per_epoch=40, epochs=1))
    before, _ = w.evaluate(model, bundle.eval, CTX)
    model.train()
    for _, batch in zip(range(40), bundle.train):
        loss, _ = w.loss(model, w.to_device(batch, CTX), CTX)
        loss.backward()
        opt.step()
        opt.zero_grad()
        sched.step()
    after, _ = w.evaluate(model, bundle.eval, CTX)
    assert after["mlm_loss"] < before["mlm_loss"] - 0.5
    assert after["mlm_accuracy"] > before["mlm_accuracy"] + 0.05


def test_reference_needs_data_dir_and_checkpoint(tmp_path, data, monkeypatch):
    from mlbench.benchmarks.bert.definition import REFERENCE

    ref = REFERENCE.derive(hparams={k: SMALL_BENCH.hparams[k] for k in ("model", "seq_len", "max_predictions")})
    w = BertWorkload(ref)
    w.build_model()
    with pytest.raises(DataError, match="--data-dir"):
        w.build_data(DataSpec(batch_size=4, eval_batch_size=4))
    with pytest.raises(DataError, match="phase1/model.ckpt-28252.pt"):
        w.build_data(DataSpec(batch_size=4, eval_batch_size=4, data_dir=str(data)))
    source = _model(3)
    (data / "phase1").mkdir()
    torch.save({"model": source.state_dict()}, data / "phase1" / "model.ckpt-28252.pt")
    w = BertWorkload(ref)
    model = w.build_model()
    w.build_data(DataSpec(batch_size=4, eval_batch_size=4, data_dir=str(data)))
    torch.testing.assert_close(model.cls.seq_relationship.weight, source.cls.seq_relationship.weight)
    monkeypatch.setenv("MLBENCH_BERT_INIT_CHECKPOINT", str(tmp_path / "nowhere.pt"))
    with pytest.raises(DataError, match="nowhere.pt"):
        BertWorkload(ref).build_model()
