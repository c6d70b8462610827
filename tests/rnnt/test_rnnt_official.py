"""Issue 33: MLPerf Inference's RNN-T file (rnnt.pt: a training checkpoint whose 'state_dict' holds a character
RNN-T with one joint layer over concatenated encoder and prediction outputs). A small model in exactly that
layout (names, class count, blank last, featurizer buffers, a pickled argparse.Namespace beside the weights):
mlbench recognises it, and its labels equal the reference's algorithm written out here step by step."""

from __future__ import annotations

import argparse
import math
import shutil

import numpy as np
import pytest
import torch
from rnnt_helpers import tiny_dataset

from mlbench.benchmarks.rnnt import modelfiles
from mlbench.benchmarks.rnnt.features import mel_filterbank
from mlbench.benchmarks.rnnt.text import LABELS, Tokenizer
from mlbench.speech.audio import read_wav

E, P, J, C = 32, 16, 24, 29  # encoder, prediction, joint widths; 28 characters + blank


def _reference_state(seed: int = 0) -> dict:
    torch.manual_seed(seed)
    mods = {"encoder.pre_rnn.lstm": torch.nn.LSTM(240, E, 2), "encoder.post_rnn.lstm": torch.nn.LSTM(2 * E, E, 3),
            "prediction.embed": torch.nn.Embedding(C - 1, P), "prediction.dec_rnn.lstm": torch.nn.LSTM(P, P, 2),
            "joint_net.0": torch.nn.Linear(E + P, J), "joint_net.3": torch.nn.Linear(J, C)}
    state = {f"{m}.{k}": v.detach() * 3 for m, mod in mods.items() for k, v in mod.state_dict().items()}
    state["audio_preprocessor.featurizer.fb"] = torch.zeros(1, 80, 257)
    state["audio_preprocessor.featurizer.window"] = torch.zeros(320)
    return state


def _reference_features(audio: np.ndarray) -> torch.Tensor:
    """The inference reference's FilterbankFeatures on one utterance (batch of 1), as it orders the steps."""
    x = torch.from_numpy(audio)[None]
    seq_len = torch.tensor([len(audio)])
    seq_len = (seq_len + 160 - 1) // 160
    seq_len = (seq_len + 3 - 1) // 3
    x = torch.cat((x[:, 0].unsqueeze(1), x[:, 1:] - 0.97 * x[:, :-1]), dim=1)
    x = torch.stft(x, n_fft=512, hop_length=160, win_length=320, center=True,
                   window=torch.hann_window(320, periodic=False), return_complex=True)
    x = torch.view_as_real(x).pow(2).sum(-1) + 1e-5 ** 2
    x = torch.matmul(torch.from_numpy(mel_filterbank(16000, 512, 80))[None], x)
    x = torch.log(x + 1e-20)
    seq = [x]
    for n in range(1, 3):
        tmp = torch.zeros_like(x)
        tmp[:, :, :-n] = x[:, :, n:]
        seq.append(tmp)
    x = torch.cat(seq, dim=1)[:, :, ::3]
    mean, std = x[0, :, :seq_len[0]].mean(dim=1), x[0, :, :seq_len[0]].std(dim=1) + 1e-5
    x = (x - mean[None, :, None]) / std[None, :, None]
    return x[:, :, :seq_len.max()]


def _reference_decode(state: dict, audio: np.ndarray) -> list[int]:
    """model_separable_rnnt + ScriptGreedyDecoder on one utterance, with nn modules as the reference builds them."""
    def lstm(prefix, i, h, n):
        m = torch.nn.LSTM(i, h, n)
        m.load_state_dict({k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(prefix + ".")})
        return m.eval()
    pre, post = lstm("encoder.pre_rnn.lstm", 240, E, 2), lstm("encoder.post_rnn.lstm", 2 * E, E, 3)
    dec = lstm("prediction.dec_rnn.lstm", P, P, 2)
    with torch.no_grad():
        x = _reference_features(audio).permute(2, 0, 1)  # T, B, F
        x, _ = pre(x)
        t = x.shape[0]
        x = torch.cat([x, x.new_zeros((-t) % 2, 1, E)], 0).transpose(0, 1).reshape(1, -1, 2 * E).transpose(0, 1)
        f, _ = post(x)
        frames = math.ceil(math.ceil(len(audio) / 160) / 3)  # hop 160 samples, then splicing by 3
        out_len = math.ceil(frames / 2)  # after the encoder's time stacking by 2
        label, hidden = [], None
        for ti in range(out_len):
            for _ in range(30):
                y = torch.zeros(1, 1, P) if not label else torch.nn.functional.embedding(
                    torch.tensor([[label[-1]]]), state["prediction.embed.weight"])
                g, hidden_prime = dec(y.transpose(0, 1), hidden)
                inp = torch.cat([f[ti, 0], g[0, 0]])
                logits = torch.nn.functional.linear(torch.relu(torch.nn.functional.linear(
                    inp, state["joint_net.0.weight"], state["joint_net.0.bias"])),
                    state["joint_net.3.weight"], state["joint_net.3.bias"])
                k = int(logits.argmax())
                if k == C - 1:
                    break
                label.append(k)
                hidden = hidden_prime
    return label


def _data(tmp_path):
    root = tiny_dataset(tmp_path / "librispeech", train=1, dev=4)
    shutil.copy(root / "librispeech-dev-wav.json", root / "librispeech-dev-clean-wav.json")
    return root


def test_rnnt_mlperf_checkpoint_decodes_as_the_reference(tmp_path):
    from mlbench import registry
    from mlbench.inference.task import TaskOptions, build

    root = _data(tmp_path)
    state = _reference_state()
    path = tmp_path / "rnnt.pt"
    torch.save({"state_dict": state, "epoch": 100, "args": argparse.Namespace(lr=0.001)}, path)
    task = build(registry.get("rnnt", "reference"), TaskOptions(data_dir=str(root), weights=str(path),
                                                                say=lambda m: None))
    iface = task.interface()
    assert (iface.num_classes, iface.pred_n_hid, iface.joint_n_hid, iface.enc_post_rnn_layers) == (C, P, J, 3)
    assert task.tokenizer.labels == LABELS
    store = task.dataset()
    idx = list(range(store.total_count))
    store.load(idx)
    model = task.model()
    batch = store.batch(idx)
    with torch.no_grad():
        labels, counts = model(torch.from_numpy(batch["audio"]), torch.from_numpy(batch["audio_len"]))
    responses = task.postprocess([labels.numpy(), counts.numpy()], idx)
    for i in idx:
        audio = read_wav(store.utts[i].path)
        np.testing.assert_allclose(modelfiles.ReferenceFeatures()(torch.from_numpy(audio)).numpy(),
                                   _reference_features(audio)[0].numpy(), atol=1e-4)
        assert responses[i].tolist() == _reference_decode(state, audio), i
    assert sum(len(r) for r in responses) > 0  # the weights emit characters: the comparison is not vacuous
    scores = task.accuracy({i: responses[i].tobytes() for i in idx}, store)
    assert scores["samples"] == len(idx) and scores["words"] > 0


@pytest.mark.slow
def test_rnnt_mlperf_checkpoint_through_the_whole_path(tmp_path, capsys):
    import official_models as om

    root = _data(tmp_path)
    path = tmp_path / "rnnt.pt"
    torch.save({"state_dict": _reference_state(), "epoch": 100}, path)
    code, r, out = om.run_infer(["rnnt", "--size", "reference", "--data-dir", str(root), "--weights", str(path),
                                 "--mode", "accuracy", "--threads", "1"], tmp_path / "runs", capsys)
    assert r["status"] == "success", out
    assert r["task"]["model_file"]["classes"] == C and code == 1  # random weights: above the WER bound
    assert r["accuracy"]["scores"]["samples"] == 4 and 0 <= r["accuracy"]["value"]
    assert Tokenizer().num_classes == C
