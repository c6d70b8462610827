"""The pure-PyTorch RNN-T loss against a direct (cell by cell) recursion and a brute-force sum over every
alignment: values and gradients; against torchaudio's values and gradients frozen in a fixture (always), and
against torchaudio live where it loads."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch

from mlbench.benchmarks.rnnt.loss import implementation, rnnt_loss, rnnt_nll_pytorch


def direct(logits: torch.Tensor, y: list[int], T: int, U: int, blank: int) -> torch.Tensor:
    """alpha over the (T, U+1) lattice, one cell at a time."""
    lp = torch.log_softmax(logits.double(), -1)
    a = {}
    for t in range(T):
        for u in range(U + 1):
            if t == u == 0:
                a[t, u] = lp.new_zeros(())
                continue
            c = []
            if t > 0:
                c.append(a[t - 1, u] + lp[t - 1, u, blank])
            if u > 0:
                c.append(a[t, u - 1] + lp[t, u - 1, y[u - 1]])
            a[t, u] = torch.logsumexp(torch.stack(c), 0)
    return -(a[T - 1, U] + lp[T - 1, U, blank])


def brute_force(logits: torch.Tensor, y: list[int], T: int, U: int, blank: int) -> torch.Tensor:
    """-log of the sum over all alignments: T blanks and U labels in any order, the last step a blank."""
    lp = torch.log_softmax(logits.double(), -1)
    terms = []
    for label_slots in itertools.combinations(range(T - 1 + U), U):  # positions of labels among the first T-1+U
        t = u = 0
        s = lp.new_zeros(())
        for k in range(T - 1 + U):
            if k in label_slots:
                s = s + lp[t, u, y[u]]
                u += 1
            else:
                s = s + lp[t, u, blank]
                t += 1
        terms.append(s + lp[T - 1, U, blank])
    return -torch.logsumexp(torch.stack(terms), 0)


def case(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    B, T, U, V = 3, 5, 3, 6
    x = torch.randn(B, T, U + 1, V, generator=g, dtype=torch.float64).requires_grad_()
    y = torch.randint(0, V - 1, (B, U), generator=g)
    return x, y, torch.tensor([5, 3, 4]), torch.tensor([3, 1, 0]), V - 1


def test_values_and_gradients_match_the_direct_recursion_and_brute_force():
    x, y, tl, ul, blank = case()
    ours = rnnt_nll_pytorch(x, y, tl, ul, blank)
    ref = torch.stack([direct(x[b], y[b].tolist(), int(tl[b]), int(ul[b]), blank) for b in range(3)])
    brute = torch.stack([brute_force(x[b], y[b].tolist(), int(tl[b]), int(ul[b]), blank) for b in range(3)])
    torch.testing.assert_close(ref, brute)
    torch.testing.assert_close(ours.double(), ref, atol=1e-5, rtol=1e-5)
    g_ours, = torch.autograd.grad(ours.sum(), x)
    g_ref, = torch.autograd.grad(brute.sum(), x)
    torch.testing.assert_close(g_ours.double(), g_ref, atol=1e-5, rtol=1e-4)
    # cells outside a sample's lattice (padding) get no gradient
    assert g_ours[1, 3:].abs().max() == 0 and g_ours[2, :, 1:].abs().max() == 0


def test_uniform_logits_give_the_count_of_alignments():
    T, U, V = 4, 2, 5  # every path has probability V^-(T+U): -log P = (T+U) log V - log C(T-1+U, U)
    x = torch.zeros(1, T, U + 1, V)
    nll = rnnt_nll_pytorch(x, torch.tensor([[1, 2]]), torch.tensor([T]), torch.tensor([U]), V - 1)
    assert math.isclose(float(nll), (T + U) * math.log(V) - math.log(math.comb(T - 1 + U, U)), rel_tol=1e-5)


def test_reductions_and_long_lattices_stay_finite():
    g = torch.Generator().manual_seed(1)
    x = (10 * torch.randn(2, 120, 41, 29, generator=g)).requires_grad_()
    y = torch.randint(0, 28, (2, 40), generator=g)
    loss = rnnt_loss(x, y, torch.tensor([120, 90]), torch.tensor([40, 25]), blank=28, impl="pytorch")
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()
    per = rnnt_loss(x, y, torch.tensor([120, 90]), torch.tensor([40, 25]), blank=28, reduction="none",
                    impl="pytorch")
    assert per.shape == (2,) and math.isclose(float(per.mean()), float(loss), rel_tol=1e-6)


TORCHAUDIO_REFERENCE = Path(__file__).with_name("torchaudio_rnnt_reference.pt")  # make_torchaudio_reference.py


def torchaudio_cases() -> list[dict]:
    ref = torch.load(TORCHAUDIO_REFERENCE, weights_only=True)
    assert ref["torchaudio"].startswith("2.") and len(ref["cases"]) >= 5
    return ref["cases"]


@pytest.mark.parametrize("case_no", range(6))
def test_matches_torchaudio_frozen_values_and_gradients(case_no):
    """torchaudio.functional.rnnt_loss (reduction none) and the gradient of the summed loss w.r.t. the logits,
    written by tests/rnnt/make_torchaudio_reference.py where torchaudio loads: blank first, last and in the
    middle, padded lengths, no labels, one frame, peaky logits."""
    c = torchaudio_cases()[case_no]
    x = c["logits"].clone().requires_grad_()
    ours = rnnt_loss(x, c["targets"], c["logit_lengths"], c["target_lengths"], int(c["blank"]), reduction="none",
                     impl="pytorch")
    torch.testing.assert_close(ours, c["loss"], atol=1e-5, rtol=1e-5)
    grad, = torch.autograd.grad(ours.sum(), x)
    torch.testing.assert_close(grad, c["grad"], atol=2e-5, rtol=1e-4)  # measured max difference 9e-6
    mean = rnnt_loss(c["logits"], c["targets"], c["logit_lengths"], c["target_lengths"], int(c["blank"]),
                     impl="pytorch")
    torch.testing.assert_close(mean, c["loss"].mean(), atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(implementation() != "torchaudio", reason="torchaudio's rnnt_loss does not load beside this torch")
def test_matches_torchaudio():
    x, y, tl, ul, blank = case(2)
    x = x.float().detach().requires_grad_()
    ta = rnnt_loss(x, y, tl, ul, blank, reduction="none", impl="torchaudio")
    ours = rnnt_loss(x, y, tl, ul, blank, reduction="none", impl="pytorch")
    torch.testing.assert_close(ours, ta, atol=1e-4, rtol=1e-4)
    g1, = torch.autograd.grad(ta.sum(), x)
    g2, = torch.autograd.grad(ours.sum(), x)
    torch.testing.assert_close(g2, g1, atol=1e-4, rtol=1e-4)


def test_auxiliary_ctc_loss_trains_the_encoder_and_leaves_decoding_alone():
    """mini's auxiliary CTC head: the loss is RNN-T + weight x CTC (both reported as parts), the CTC head's
    gradient reaches the encoder, and greedy decoding does not use it."""
    from contextlib import nullcontext

    from mlbench.benchmarks.rnnt import definition
    from mlbench.benchmarks.rnnt.workload import RNNTWorkload

    bench = definition.SIZES["tiny"].derive(hparams={"ctc_weight": 0.5})
    wl = RNNTWorkload(bench)
    torch.manual_seed(0)
    model = wl.build_model()
    ctx = type("Ctx", (), {"device": torch.device("cpu"), "amp": staticmethod(nullcontext)})()
    batch = wl.synthetic_batch(3, ctx)
    loss, parts = wl.loss(model, batch, ctx)
    assert set(parts) == {"rnnt", "ctc"}
    assert torch.allclose(loss, parts["rnnt"] + 0.5 * parts["ctc"])
    loss.backward()
    assert model.ctc_head.weight.grad.abs().sum() > 0 and model.pre_rnn.weight_ih_l0.grad.abs().sum() > 0
    plain = RNNTWorkload(definition.SIZES["tiny"].derive(hparams={"ctc_weight": 0.0})).build_model()
    assert plain.ctc_head is None
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("ctc_head.")})
    model.eval()
    plain.eval()
    feats, lens = batch["feats"], batch["feat_lens"]
    short = dict(max_symbols_per_step=3, max_symbols=20)  # an untrained model emits up to the caps: keep them small
    assert all(torch.equal(a, b) for a, b in zip(model.greedy(feats, lens, **short), plain.greedy(feats, lens, **short)))
