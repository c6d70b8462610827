"""The BERT inference task end to end without LoadGen: store.batch (named int64 inputs) -> model forward ->
postprocess ([L, 2] float32 logits per sample) -> accuracy (decoded answers, F1 and EM in percent)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from bert_support import write_squad_dir

from mlbench.benchmarks.bert import inference, qa_data
from mlbench.benchmarks.bert.definition import REFERENCE, TINY
from mlbench.errors import ConfigError, DataError, MlbenchError
from mlbench.inference.task import InferenceTask, SampleStore, TaskOptions


def _quiet(**kw) -> TaskOptions:
    return TaskOptions(say=lambda _msg: None, **kw)


def _responses(task, store, model, indices) -> dict[int, bytes]:
    store.load(indices)
    out = {}
    with torch.no_grad():
        for i in range(0, len(indices), 16):
            idx = indices[i:i + 16]
            batch = store.batch(idx)
            logits = model(**{k: torch.from_numpy(v) for k, v in batch.items()})
            rows = task.postprocess([t.numpy() for t in logits], idx)
            assert rows.dtype == np.float32 and rows.shape == (len(idx), task.seq_len, 2)
            out.update({k: rows[j].tobytes() for j, k in enumerate(idx)})
    return out


def _small_reference(vocab_size: int):
    model = {**TINY.hparams["model"], "vocab_size": vocab_size, "max_position_embeddings": 64}
    return REFERENCE.derive(hparams={"model": model, "squad_seq_len": 64, "squad_query_len": 16,
                                     "squad_stride": 16})


def test_tiny_task_end_to_end():
    task = inference.build_task(TINY, _quiet())
    assert isinstance(task, InferenceTask) and task.metric == "f1" and task.response_dtype == "float32"
    store = task.dataset()
    assert isinstance(store, SampleStore)
    assert store.total_count > qa_data.TINY_DEV_QUESTIONS  # some questions need two windows
    with pytest.raises(KeyError):
        store.batch([0])
    model = task.model()  # fine-tuned now (seconds), then cached
    assert not model.training
    indices = list(range(store.total_count))
    responses = _responses(task, store, model, indices)
    batch = store.batch([0, 2])
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids"}
    assert all(a.dtype == np.int64 and a.shape == (2, task.seq_len) for a in batch.values())
    m = task.accuracy(responses, store)
    assert m["samples"] == store.total_count and m["questions"] == qa_data.TINY_DEV_QUESTIONS
    assert 0 <= m["exact_match"] <= m["f1"] <= 100

    with torch.random.fork_rng():  # the same network untrained: what fine-tuning has to beat
        torch.manual_seed(1)
        untrained = inference.QAModel(TINY.hparams["model"]).eval()
    chance = task.accuracy(_responses(task, store, untrained, indices), store)["f1"]
    baseline = qa_data.baseline("tiny")["f1"]
    print(f"tiny F1 {m['f1']:.1f} (untrained {chance:.1f}, lexical baseline {baseline:.1f})")
    assert m["f1"] > max(30.0, chance + 10)

    # cached: a second task finds the model without training; a partial run scores only what it has
    again = inference.build_task(TINY, _quiet(train_if_missing=False))
    assert again.model_id() == task.model_id()
    part = again.accuracy({i: responses[i] for i in indices[:10]}, store)
    assert part["samples"] == 10 and 0 < part["questions"] <= 10
    meta = json.loads(inference.qa_checkpoint(TINY, _quiet()).with_suffix(".result.json").read_text())
    assert meta["start_from"] == "random initialisation" and meta["seconds"] > 0


def test_no_model_and_no_training(tmp_path):
    task = inference.build_task(TINY, _quiet(train_if_missing=False))
    with pytest.raises(MlbenchError, match="no fine-tuned BERT tiny QA model"):
        task.model()


def test_cached_qa_model_reused_only_for_its_recipe():
    dest = inference.download.cache_dir("models", "bert-tiny-qa.pt")
    vocab = qa_data.dataset_dir("tiny") / "vocab.txt"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(b"weights")
    meta = {"vocab_sha256": inference.download.sha256_file(vocab), "start_from": "random initialisation",
            "settings": inference.finetune_settings(TINY)}
    dest.with_suffix(".result.json").write_text(json.dumps(meta))
    assert inference.qa_checkpoint(TINY, _quiet(train_if_missing=False)) == dest
    dest.with_suffix(".result.json").write_text(json.dumps({**meta, "settings": {**meta["settings"], "steps": 1}}))
    with pytest.raises(MlbenchError, match="no fine-tuned BERT tiny QA model"):  # another recipe: not reused
        inference.qa_checkpoint(TINY, _quiet(train_if_missing=False))


def test_cached_qa_model_not_reused_after_its_encoder_changed(monkeypatch):
    dest = inference.download.cache_dir("models", "bert-tiny-qa.pt")
    encoder = inference.download.cache_dir("models", "bert-tiny.pt")
    vocab = qa_data.dataset_dir("tiny") / "vocab.txt"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(b"weights")
    encoder.write_bytes(b"encoder one")
    monkeypatch.setattr(inference, "pretrained_vocab", lambda bench: vocab)
    meta = {"vocab_sha256": inference.download.sha256_file(vocab), "settings": inference.finetune_settings(TINY),
            "encoder_sha256": inference.download.sha256_file(encoder)}
    dest.with_suffix(".result.json").write_text(json.dumps(meta))
    try:
        assert inference.qa_checkpoint(TINY, _quiet(train_if_missing=False)) == dest
        encoder.write_bytes(b"encoder two")  # `mlbench train bert --size tiny` made another one
        with pytest.raises(MlbenchError, match="no fine-tuned BERT tiny QA model"):
            inference.qa_checkpoint(TINY, _quiet(train_if_missing=False))
    finally:
        encoder.unlink()


def test_reference_mode_with_user_weights(tmp_path):
    root = write_squad_dir(tmp_path / "squad")
    n_vocab = len((root / "vocab.txt").read_text().splitlines())
    bench = _small_reference(n_vocab)
    net = inference.QAModel(bench.hparams["model"])
    state = {f"module.{k}": v for k, v in net.qa.state_dict().items()}
    state["bert.pooler.dense.weight"] = torch.zeros(2, 2)  # a pooler (as converted checkpoints carry) is dropped
    torch.save({"model": state}, tmp_path / "bert.pt")
    task = inference.build_task(bench, _quiet(data_dir=str(root), weights=str(tmp_path / "bert.pt")))
    store = task.dataset()
    assert store.total_count > 5  # the long paragraph has several windows
    model = task.model()
    responses = _responses(task, store, model, list(range(store.total_count)))
    m = task.accuracy(responses, store)
    assert m["questions"] == 5 and m["samples"] == store.total_count and 0 <= m["f1"] <= 100
    for p, q in zip(model.qa.parameters(), net.qa.parameters(), strict=True):
        assert torch.equal(p, q)


def test_reference_errors(tmp_path):
    root = write_squad_dir(tmp_path / "squad")
    n_vocab = len((root / "vocab.txt").read_text().splitlines())
    bench = _small_reference(n_vocab)
    with pytest.raises(DataError, match="dev-v1.1.json"):
        inference.build_task(bench, _quiet()).dataset()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="dev-v1.1.json not found"):
        inference.build_task(bench, _quiet(data_dir=str(empty))).dataset()
    with pytest.raises(DataError, match="but the reference model embeds 16 tokens"):
        inference.build_task(_small_reference(16), _quiet(data_dir=str(root))).dataset()
    with pytest.raises(MlbenchError, match="needs fine-tuned SQuAD weights"):
        inference.build_task(bench, _quiet(data_dir=str(root))).model()

    other = inference.QAModel({**bench.hparams["model"], "vocab_size": n_vocab + 7})
    torch.save(other.qa.state_dict(), tmp_path / "other.bin")
    with pytest.raises(DataError, match=f"embed a vocabulary of {n_vocab + 7} tokens"):
        inference.build_task(bench, _quiet(data_dir=str(root), weights=str(tmp_path / "other.bin"))).model()
    good = inference.QAModel(bench.hparams["model"])
    torch.save(good.qa.state_dict(), tmp_path / "good.pth")
    data = (tmp_path / "good.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="truncated or corrupt"):
        inference.build_task(bench, _quiet(data_dir=str(root), weights=str(tmp_path / "cut.pth"))).model()
    (tmp_path / "bert.onnx").write_bytes(b"onnx")
    with pytest.raises(ConfigError, match="ONNX model"):
        inference.build_task(bench, _quiet(data_dir=str(root), weights=str(tmp_path / "bert.onnx"))).model()
    random = inference.build_task(bench, _quiet(data_dir=str(root), weights="random"))
    assert random.model_id() == "random0" and not random.model().training
