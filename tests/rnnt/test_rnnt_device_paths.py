"""What RNN-T does differently on a GPU, checked on the CPU: the features stay fp32 under fp16 autocast (silent
frames gave NaN), the LSTMs leave autocast where it would pick the wrong precision (CUDA's autocast runs cuDNN
LSTMs in fp16 whatever its dtype; a CPU has no fp16 LSTM), and the EMA weights evaluate through a compiled model
and resume beside the weights they average (the "meta" device stands in for a GPU)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from mlbench import registry
from mlbench.benchmarks.rnnt import model as rnnt_model
from mlbench.benchmarks.rnnt.features import FilterbankFeatures
from mlbench.benchmarks.rnnt.workload import EmaLamb
from mlbench.training.recipe import OptimArgs, StepContext


def test_features_stay_fp32_under_fp16_autocast():
    feats = FilterbankFeatures(dither=0.0).eval()
    audio = torch.randn(2, 16000) * 0.3
    audio[1, 8000:] = 0  # the padding of a shorter utterance: silent frames
    lengths = torch.tensor([16000, 8000])
    ref, ref_len = feats(audio, lengths)
    with torch.autocast("cpu", dtype=torch.float16):
        out, out_len = feats(audio, lengths)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert torch.equal(out, ref) and torch.equal(out_len, ref_len)


def test_lstm_runs_in_fp32_where_autocast_would_pick_another_precision(monkeypatch):
    """On a CPU, bf16 autocast keeps its bf16 LSTM where oneDNN has one (AVX-512; mini's measured targets) and
    fp16 runs it in fp32 (oneDNN has no fp16 LSTM); on CUDA under bf16 (simulated: the test has no GPU) it runs
    in fp32 too, exactly the fp32 result."""
    m = rnnt_model.lstm(8, 16, 2, 0.0, 1.0, 0.5).eval()
    x = torch.randn(5, 3, 8)
    bf16 = rnnt_model.cpu_has_bf16_lstm()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert rnnt_model.lstm_leaves_autocast(x) is not bf16
        assert m(x)[0].dtype == (torch.bfloat16 if bf16 else torch.float32)
    with torch.autocast("cpu", dtype=torch.float16):
        assert rnnt_model.lstm_leaves_autocast(x)
        out, _ = m(x)
    assert out.dtype == torch.float32 and torch.equal(out, m(x)[0])
    monkeypatch.setattr(rnnt_model, "lstm_leaves_autocast", lambda t: True)  # what CUDA under bf16 answers
    state = (torch.zeros(2, 3, 16, dtype=torch.bfloat16),) * 2
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, (h, c) = m(x.bfloat16(), state)
    assert out.dtype == h.dtype == torch.float32
    assert torch.equal(out, m(x.bfloat16().float())[0])


def _ema_workload():
    handle = registry.get("rnnt", "tiny")
    bench = dataclasses.replace(handle.definition, hparams={**handle.definition.hparams, "ema": 0.5})
    return handle.module("workload").WORKLOAD(bench)


def test_ema_weights_evaluate_through_a_compiled_model():
    """--compile wraps the model (its state_dict keys gain a prefix); the evaluation loads the EMA weights
    into the model itself, and puts the trained weights back afterwards."""
    wl = _ema_workload()
    model = wl.build_model()
    opt, _ = wl.build_optimizer(model, OptimArgs(global_batch_size=4, steps_per_epoch=1, epochs=1))
    ctx = StepContext(device=torch.device("cpu"))
    batch = wl.synthetic_batch(4, ctx)
    wl.loss(model, batch, ctx)[0].backward()
    opt.step()
    trained = {k: v.clone() for k, v in model.state_dict().items()}
    assert any(not torch.equal(opt.shadow[k], v) for k, v in trained.items())
    seen = {}
    greedy = model.greedy

    def spy(*args, **kw):
        seen["weight"] = model.joint_enc.weight.detach().clone()
        return greedy(*args, **kw)

    model.greedy = spy
    metrics, count = wl.evaluate(torch.compile(model), [batch], ctx)  # lazy: nothing is compiled
    assert count == 4 and "wer" in metrics
    assert torch.equal(seen["weight"], opt.shadow["joint_enc.weight"])  # evaluated the EMA weights
    assert all(torch.equal(v, trained[k]) for k, v in model.state_dict().items())  # then restored


def test_ema_shadow_resumes_beside_the_weights():
    """A checkpoint is read onto the CPU; the shadow goes back to the weights' device (meta stands in for a
    GPU: a CPU shadow there would fail the first step with a device mismatch)."""
    model = torch.nn.Linear(3, 2)
    opt = EmaLamb(model.parameters(), model, 0.9, lr=0.1)
    state = opt.state_dict()
    model.to("meta")
    opt.load_state_dict(state)
    assert {v.device.type for v in opt.shadow.values()} == {"meta"}


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_rnnt_model_runs_under_cpu_autocast(precision):
    """The tiny model's loss and backward under bf16 autocast, and its greedy decoding under bf16 and fp16 (fp16
    inference failed on a CPU before: oneDNN has no fp16 LSTM): finite, the loss in fp32."""
    wl = _ema_workload()
    model = wl.build_model()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    ctx = StepContext(device=torch.device("cpu"), autocast=lambda: torch.autocast("cpu", dtype=dtype))
    batch = wl.synthetic_batch(2, ctx)
    if precision == "bf16":  # fp16 training is refused on a CPU (no gradient scaling there)
        loss, _ = wl.loss(model, batch, ctx)
        loss.backward()
        assert loss.dtype == torch.float32 and torch.isfinite(loss)
    with torch.no_grad(), ctx.amp():
        labels, counts = model.eval().greedy(batch["feats"], batch["feat_lens"], max_symbols=8)
    assert labels.shape == (2, 8) and (counts <= 8).all()
