"""Issue 33: MLPerf's BERT model files. model.onnx feeds input_mask and segment_ids and names its outputs
output_start_logits/output_end_logits; the int8 file uses transformers' input names and unnamed outputs read in
order: both fed and read as the reference does, through the whole path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from bert_support import write_squad_dir

import official_models as om
from mlbench.benchmarks.bert import inference
from mlbench.benchmarks.bert.definition import REFERENCE, TINY
from mlbench.inference.task import TaskOptions

SMALL = {**TINY.hparams["model"], "vocab_size": 30522, "max_position_embeddings": 512}


def _small_reference(root):
    n_vocab = len((root / "vocab.txt").read_text().splitlines())
    model = {**TINY.hparams["model"], "vocab_size": n_vocab, "max_position_embeddings": 64}
    return REFERENCE.derive(hparams={"model": model, "squad_seq_len": 64, "squad_query_len": 16, "squad_stride": 16})


@pytest.mark.parametrize("names", [(("input_ids", "input_mask", "segment_ids"), ("output_start_logits", "output_end_logits")),
                                   (("input_ids", "attention_mask", "token_type_ids"), ("logits_a", "logits_b"))],
                         ids=["model.onnx", "int8-file-names"])
def test_bert_onnx_interfaces_give_the_pytorch_answers(tmp_path, names):
    import onnxruntime as ort

    root = write_squad_dir(tmp_path / "squad")
    bench = _small_reference(root)
    torch.manual_seed(0)
    net = inference.QAModel(bench.hparams["model"]).eval()
    path = om.bert_onnx(tmp_path / "model.onnx", net, 64, *names)
    task = inference.build_task(bench, TaskOptions(data_dir=str(root), weights=str(path), say=lambda m: None))
    iface = task.interface()
    assert list(iface.feeds.values()) == list(names[0]) and task.onnx_outputs == list(names[1])
    store = task.dataset()
    idx = list(range(store.total_count))
    store.load(idx)
    batch = store.batch(idx)
    assert set(batch) == set(names[0])
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = task.postprocess(sess.run(task.onnx_outputs, batch), idx)
    with torch.no_grad():
        ref = net(*(torch.from_numpy(batch[n]) for n in names[0]))
    want = task.postprocess([t.numpy() for t in ref], idx)
    np.testing.assert_allclose(got, want, atol=1e-4)
    scores = task.accuracy({i: got[i].tobytes() for i in idx}, store)
    assert scores == task.accuracy({i: want[i].tobytes() for i in idx}, store)


def test_bert_model_onnx_through_the_whole_path(tmp_path, capsys):
    """MLPerf's model.onnx interface at the reference's sequence length (384), a small encoder: mlbench infer
    tokenises SQuAD as the reference, feeds input_mask/segment_ids, reads the named logits and scores F1."""
    root = write_squad_dir(tmp_path / "squad")
    torch.manual_seed(0)
    path = om.bert_onnx(tmp_path / "model.onnx", inference.QAModel(SMALL).eval(), 384)
    code, r, out = om.run_infer(["bert", "--size", "reference", "--data-dir", str(root), "--weights", str(path),
                                 "--backend", "onnxruntime", "--mode", "accuracy", "--threads", "1"],
                                tmp_path / "runs", capsys)
    assert r["status"] == "success", out
    assert r["accuracy"]["scores"]["questions"] == 5 and 0 <= r["accuracy"]["value"] <= 100
    assert r["task"]["model_file"]["inputs"] == {"input_ids": "input_ids", "attention_mask": "input_mask",
                                                 "token_type_ids": "segment_ids"}
    # the matrix products of a BERT encoder (projections, feed-forward, attention scores and mix) and the QA
    # head, a multiply-add counted as 2 (the graph computes some shapes at run time: counted from one run)
    s, h, i, layers = 384, SMALL["hidden_size"], SMALL["intermediate_size"], SMALL["num_hidden_layers"]
    expected = layers * (8 * s * h * h + 4 * s * h * i + 4 * s * s * h) + 2 * s * h * 2
    assert r["compute"]["flops_per_sample"] == expected and code == 1  # random weights: below the F1 target
