"""Batched greedy decoding (``RNNT.greedy``) gives each utterance the labels of decoding it alone, and the same
labels as the decoder it replaced (kept below as ``greedy_before``, the straightforward batched loop over the
whole padded batch): ragged lengths, one or two prediction layers, the per-step and per-utterance caps."""

from __future__ import annotations

import pytest
import torch

from mlbench.benchmarks.rnnt.model import RNNT


@torch.no_grad()
def greedy_before(net: RNNT, feats, feat_lens, max_symbols_per_step=30, max_symbols=300):
    """The previous implementation (commit 2591ddb), verbatim in behaviour."""
    def pred_step(label, state, is_start):
        y = net.embed(label.clamp(0, net.num_classes - 2))
        y = torch.where(is_start[:, None, None], torch.zeros_like(y), y)
        g, state = net.dec_rnn(y.transpose(0, 1), state)
        return g.transpose(0, 1), state

    f, f_lens = net.encode(feats, feat_lens)
    B, T, _ = f.shape
    fe = net.joint_enc(f)
    out = torch.full((B, max_symbols), -1, dtype=torch.long)
    count = torch.zeros(B, dtype=torch.long)
    start = torch.ones(B, dtype=torch.bool)
    g, state = pred_step(torch.zeros(B, 1, dtype=torch.long), None, start)
    not_start = torch.zeros_like(start)
    for t in range(T):
        active_t = f_lens > t
        for _ in range(max_symbols_per_step):
            logits = net.joint_net(fe[:, t] + net.joint_pred(g[:, 0]))
            k = logits.argmax(-1)
            emit = active_t & (k != net.blank) & (count < max_symbols)
            if not bool(emit.any()):
                break
            out[emit, count[emit]] = k[emit]
            count += emit.long()
            g_new, state_new = pred_step(k[:, None], state, not_start)
            m = emit[:, None]
            g = torch.where(m[:, :, None], g_new, g)
            state = (torch.where(m[None], state_new[0], state[0]), torch.where(m[None], state_new[1], state[1]))
    return out, count


def alone(net: RNNT, feats, feat_lens, max_symbols_per_step=30, max_symbols=300) -> list[list[int]]:
    """Each utterance decoded by itself, one label at a time (the reference decoder's loop), from the batch's
    encoder output (the encoder sees the padded batch either way)."""
    result = []
    enc, enc_lens = net.encode(feats, feat_lens)
    for b in range(len(feats)):
        f = enc[b:b + 1]
        y = torch.zeros(1, 1, net.pred_n_hid, dtype=f.dtype)
        g, state = net.dec_rnn(y, None)
        labels: list[int] = []
        for t in range(int(enc_lens[b])):
            for _ in range(max_symbols_per_step):
                if len(labels) >= max_symbols:
                    break
                k = int(net.joint(f[:, t:t + 1], g.transpose(0, 1))[0, 0, 0].argmax())
                if k == net.blank:
                    break
                labels.append(k)
                g, state = net.dec_rnn(net.embed(torch.tensor([[k]])), state)
        result.append(labels)
    return result


def batch(seed: int, lens: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lens_t = torch.tensor(lens)
    x = 3 * torch.randn(len(lens), max(lens), 12, generator=g, dtype=torch.float64)
    x = x * (torch.arange(max(lens))[None, :, None] < lens_t[:, None, None])  # zero padding, as the features
    return x, lens_t


def model(seed: int, pred_layers: int, x: torch.Tensor, lens: torch.Tensor, blank_shift: float = 0.0) -> RNNT:
    """A random RNN-T whose greedy output mixes blanks and runs of labels on ``x``: the encoder and prediction
    projections scaled up, the blank's bias set so that about half of the frames start with a blank
    (``blank_shift`` moves it: negative, more labels). float64, so that batched and one-by-one arithmetic never
    flip a near tie between two labels."""
    torch.manual_seed(seed)
    net = RNNT(12, in_feats=12, enc_n_hid=16, enc_pre_rnn_layers=1, enc_post_rnn_layers=1,
               pred_n_hid=8, pred_rnn_layers=pred_layers, joint_n_hid=16, weights_init_scale=1.0).double().eval()
    with torch.no_grad():
        net.joint_enc.weight.mul_(16.0)
        net.joint_pred.weight.mul_(4.0)
        f, f_lens = net.encode(x, lens)
        g, _ = net.predict(torch.zeros(len(lens), 0, dtype=torch.long))
        logits = net.joint(f, g)[:, :, 0]  # [B, T, V] before any label
        valid = torch.arange(f.shape[1])[None] < f_lens[:, None]
        margin = (logits[..., :-1].max(-1).values - logits[..., -1])[valid].sort().values
        mid = len(margin) // 2  # halfway between two margins: no frame starts on a near tie
        net.joint_net[-1].bias[net.blank] += (margin[mid - 1] + margin[mid]) / 2 + blank_shift
    return net


def as_lists(out: torch.Tensor, count: torch.Tensor) -> list[list[int]]:
    return [out[b, : int(count[b])].tolist() for b in range(len(count))]


@pytest.mark.parametrize("seed,pred_layers", [(0, 1), (1, 2), (2, 1), (2, 2)])
def test_labels_match_the_previous_decoder_and_decoding_alone(seed, pred_layers):
    x, lens = batch(seed, [9, 17, 3, 17, 1, 12, 6])  # unsorted, ties, a one-frame utterance
    net = model(seed, pred_layers, x, lens)
    out, count = net.greedy(x, lens, max_symbols_per_step=6)
    before = greedy_before(net, x, lens, max_symbols_per_step=6)
    assert out.shape == (7, 300) and out.dtype == torch.long and count.dtype == torch.long
    assert torch.equal(out, before[0]) and torch.equal(count, before[1])
    assert as_lists(out, count) == alone(net, x, lens, max_symbols_per_step=6)
    assert (out[torch.arange(300)[None, :] >= count[:, None]] == -1).all()
    labels = out[out >= 0]
    assert len(labels) > 20 and len(labels.unique()) >= 2  # a real mix, not a degenerate case


@pytest.mark.parametrize("per_step,total", [(1, 300), (2, 5), (30, 3), (30, 1)])
def test_caps_per_step_and_per_utterance_match(per_step, total):
    x, lens = batch(3, [14, 5, 20, 8])
    net = model(3, 1, x, lens, blank_shift=-2.0)  # mostly labels: the caps bind
    out, count = net.greedy(x, lens, max_symbols_per_step=per_step, max_symbols=total)
    before = greedy_before(net, x, lens, max_symbols_per_step=per_step, max_symbols=total)
    assert out.shape == (4, total)
    assert torch.equal(out, before[0]) and torch.equal(count, before[1])
    assert as_lists(out, count) == alone(net, x, lens, per_step, total)
    assert int(count.max()) <= total


def test_all_blank_and_single_utterance_batches():
    x, lens = batch(4, [6, 2, 9])
    net = model(4, 1, x, lens, blank_shift=1000.0)  # the blank always wins: nothing emitted
    out, count = net.greedy(x, lens)
    assert count.tolist() == [0, 0, 0] and (out == -1).all()
    x, lens = batch(5, [11])
    net = model(5, 2, x, lens)
    out, count = net.greedy(x, lens)
    assert as_lists(out, count) == alone(net, x, lens)


def test_onnx_export_is_refused_with_a_clear_error():
    """A trace would freeze one batch's step and label counts into the graph: the export stops with an error
    that names the fix (the onnxruntime backend turns it into a failed run, exit 1)."""
    from mlbench.benchmarks.rnnt.model import RNNTInference
    from mlbench.errors import MlbenchError

    torch.manual_seed(0)
    net = RNNTInference(RNNT(6, in_feats=240, enc_n_hid=8, enc_pre_rnn_layers=1, enc_post_rnn_layers=1,
                             pred_n_hid=4, pred_rnn_layers=1, joint_n_hid=8)).eval()
    audio, lens = torch.zeros(2, 3200), torch.tensor([3200, 1600])
    assert net(audio, lens)[0].shape == (2, 300)  # eager: fine
    with pytest.raises(MlbenchError, match="no ONNX export") as err:
        torch.jit.trace(net, (audio, lens))
    assert "--backend pytorch" in err.value.hint
