"""mlbench infer llama3.1-8b (issue 29): the generation engine, the token-latency SUT under the official LoadGen,
ROUGE as the reference scores it, and the reference's cnn_eval.json loader, on the tiny size (a random 2-layer
Llama on 24 generated rows, built once for the module)."""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path

import numpy as np
import pytest

from mlbench import registry
from mlbench.benchmarks.llama31_8b import cnn_eval
from mlbench.benchmarks.llama31_8b import inference as llm_inference
from mlbench.errors import DataError


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """The tiny size's model directory and cnn_eval.json (built once; runs get them as --model-dir/--data-dir)."""
    root = tmp_path_factory.mktemp("llm")
    old = os.environ.get("MLBENCH_CACHE")
    os.environ["MLBENCH_CACHE"] = str(root / "cache")
    try:
        return llm_inference.tiny_files(registry.get("llama31_8b", "tiny").definition, print)
    finally:
        if old is None:
            os.environ.pop("MLBENCH_CACHE", None)
        else:
            os.environ["MLBENCH_CACHE"] = old


def _run(tiny: Path, out: Path, **kw):
    from mlbench.inference.config import InferConfig
    from mlbench.inference.execute import execute

    cfg = InferConfig(benchmark="llama31_8b", size="tiny", quick=True, duration_s=1.0, threads=1,
                      model_dir=str(tiny / "model"), data_dir=str(tiny), output_dir=str(out), **kw)
    return execute(cfg)


@pytest.fixture(scope="module")
def offline(tiny, tmp_path_factory):
    return _run(tiny, tmp_path_factory.mktemp("runs"), scenario="Offline", mode="submission")


def test_the_mlperf_name_finds_the_benchmark():
    assert registry.canonical("llama3.1-8b") == "llama31_8b"
    assert registry.get("llama3.1-8b", "tiny").definition.name == "llama31_8b"


def test_offline_submission_reports_tokens_memory_and_accuracy_as_the_checker_reads_it(offline):
    r = offline
    assert r["status"] == "success", r.get("error")
    m = r["metrics"]
    assert m["scenario_metric"] == "throughput/tokens_per_s" and m["throughput/tokens_per_s"] > 0
    assert m["throughput/samples_per_s"] > 0
    assert m["memory/weights_bytes"] > 0 and m["memory/kv_cache_peak_bytes"] > 0
    assert r["backend"]["engine"] == "transformers" and r["loadgen"]["settings"]["use_token_latencies"]
    assert not r["valid"] and any("tiny" in x for x in r["validity_reasons"])
    acc = r["accuracy"]
    assert {"rouge1", "rouge2", "rougeL", "rougeLsum", "gen_len"} <= set(acc["scores"]) and acc["checks"]
    run = Path(r["run_dir"]) / "accuracy"
    # the responses are int32 token ids, one entry per sample, as many tokens as the SUT counted
    entries = json.loads((run / "mlperf_log_accuracy.json").read_text())
    assert len({e["qsl_idx"] for e in entries}) == 24
    n_tokens = sum(len(np.frombuffer(bytes.fromhex(e["data"]), np.int32)) for e in entries)
    assert n_tokens == acc["scores"]["generated_tokens"]
    # accuracy.txt: the reference evaluation's printed dict, read with the submission checker's patterns
    text = (run / "accuracy.txt").read_text()
    for key in ("rouge1", "rouge2", "rougeL", "rougeLsum"):
        assert float(re.search(rf"'{key}':\s+'?([\d.]+)'?", text).group(1)) == pytest.approx(acc["scores"][key])
    assert int(re.search(r"'gen_len':\s([\d.]+)", text).group(1)) == acc["scores"]["gen_len"]


def test_interactive_reports_ttft_and_tpot_beside_the_interactive_bounds(tiny, tmp_path):
    r = _run(tiny, tmp_path, scenario="Interactive", target_qps=30.0)
    assert r["status"] == "success", r.get("error")
    m = r["metrics"]
    assert m["bounds/ttft_p99_ms"] == 500 and m["bounds/tpot_p99_ms"] == 30
    for k in ("ttft_p50_ms", "ttft_p90_ms", "ttft_p99_ms", "tpot_p50_ms", "tpot_p99_ms"):
        assert m[f"latency/{k}"] > 0
    assert m["throughput/tokens_per_s"] > 0
    assert r["loadgen"]["settings"]["ttft_latency"] == 500_000_000


class _Collect:
    def __init__(self, n):
        self.first, self.done, self.order, self.n = {}, {}, [], n
        self.event = threading.Event()

    def on_first_token(self, id, ids):
        assert id not in self.first and id not in self.done
        self.first[id] = ids
        self.order.append(("first", id))

    def on_done(self, id, ids):
        assert id in self.first and id not in self.done
        self.done[id] = ids
        self.order.append(("done", id))
        if len(self.done) == self.n:
            self.event.set()

    def on_error(self, id, message):
        raise AssertionError(message)


@pytest.mark.parametrize("batching", ["continuous", "static"])
def test_transformers_engine_reports_each_request_once_and_a_short_one_before_its_batch_ends(tiny, batching):
    from mlbench.inference import generation as g

    rows = cnn_eval.load(tiny / cnn_eval.FILE, vocab_size=320, context_length=128, max_new_tokens=16)
    eng = g.create("transformers", tiny / "model", g.EngineSettings(batch_size=4, threads=1, eos_token_ids=(1,),
                                                                     options={"batching": batching}))
    cb = _Collect(4)
    eng.start(cb)
    try:
        eng.submit([g.GenerationRequest(10 + i, i, rows[i].prompt, n) for i, n in enumerate((2, 9, 9, 9))])
        eng.flush()
        assert cb.event.wait(60)
    finally:
        eng.stop()
    assert len(cb.done[10]) <= 2 and cb.first[10] == cb.done[10][:1]
    assert cb.order.index(("done", 10)) < cb.order.index(("done", 11))  # completed at its own length
    assert all(1 <= len(cb.done[10 + i]) <= 9 for i in range(1, 4))
    info = eng.info()
    assert info["memory"]["kv_cache_peak_bytes"] > 0 and info["batching_mode"] == batching


def test_continuous_batching_gives_single_sequence_greedy_tokens_and_reuses_a_finished_slot(tiny):
    """Mixed prompt and output lengths through 3 slots: every output equals greedy generation of that prompt alone
    (fp32), and a request that waited starts (first token) before the longest of the first three ends."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    from mlbench.inference import generation as g

    rows = cnn_eval.load(tiny / cnn_eval.FILE, vocab_size=320, context_length=128, max_new_tokens=16)
    prompts = [rows[i].prompt[:k] for i, k in enumerate((40, 7, 25, 3, 33, 12, 1, 30, 18, 9))]
    news = (16, 2, 5, 1, 16, 9, 3, 12, 7, 16)
    model = AutoModelForCausalLM.from_pretrained(str(tiny / "model"), use_safetensors=True).eval()
    alone = []
    for p, n in zip(prompts, news, strict=True):
        gen = GenerationConfig(do_sample=False, num_beams=1, eos_token_id=[1], pad_token_id=1, max_new_tokens=n)
        with torch.inference_mode():
            alone.append(model.generate(input_ids=torch.tensor([p]), generation_config=gen)[0, len(p):].tolist())
    eng = g.create("transformers", tiny / "model", g.EngineSettings(batch_size=3, threads=1, eos_token_ids=(1,),
                                                                     options={"batching": "continuous"}))
    cb = _Collect(len(prompts))
    eng.start(cb)
    try:
        eng.submit([g.GenerationRequest(i, i, p, n) for i, (p, n) in enumerate(zip(prompts, news, strict=True))])
        eng.flush()
        assert cb.event.wait(60)
    finally:
        eng.stop()
    assert [cb.done[i] for i in range(len(prompts))] == alone
    assert all(cb.first[i] == alone[i][:1] for i in range(len(prompts)))
    assert cb.order.index(("first", 3)) < cb.order.index(("done", 0))  # slot of request 1 (2 tokens) reused
    assert eng.info()["decode_steps"] < sum(news)  # rows shared decode steps


def test_vllm_engine_refused_with_the_install_when_missing():
    pytest.importorskip("pytest")
    try:
        import vllm  # noqa: F401
        pytest.skip("vLLM is installed here")
    except ImportError:
        pass
    from mlbench.errors import MlbenchError
    from mlbench.inference import generation as g

    with pytest.raises(MlbenchError) as e:
        g.create("vllm", "x", g.EngineSettings())
    assert "pip install vllm" in str(e.value.hint)


def test_vllm_engine_reports_a_request_once_when_its_batch_fails_after_it_completed(monkeypatch):
    """vLLM (faked: not installed here) answers the first request of a batch and fails on the second: the first
    stays done (one report), the second and third fail; none is reported twice (LoadGen would get it twice)."""
    import sys
    import types

    from mlbench.inference import generation as g

    class Out:
        def __init__(self, ids):
            self.outputs = [types.SimpleNamespace(token_ids=ids)] if ids else []  # no output: IndexError

    fake = types.ModuleType("vllm")
    fake.__version__ = "0-fake"
    fake.SamplingParams = lambda **kw: kw
    fake.LLM = lambda **kw: types.SimpleNamespace(generate=lambda prompts, params, use_tqdm: [Out([5, 6]), Out([]),
                                                                                            Out([7])])
    monkeypatch.setitem(sys.modules, "vllm", fake)
    eng = g.create("vllm", "x", g.EngineSettings(batch_size=3))
    reports: list[tuple[str, int]] = []
    finished = threading.Event()

    class Callbacks:
        def on_first_token(self, id, ids):
            pass

        def on_done(self, id, ids):
            reports.append(("done", id))

        def on_error(self, id, message):
            reports.append(("error", id))
            if id == 2:
                finished.set()

    eng.start(Callbacks())
    try:
        eng.submit([g.GenerationRequest(i, i, [0, 5], 4) for i in range(3)])
        eng.flush()
        assert finished.wait(30)
    finally:
        eng.stop()
    assert reports == [("done", 0), ("error", 1), ("error", 2)]


def _rows(n=3, **change):
    rows = [{"input": f"Summarize: a{i}", "tok_input": [0, 5, 6, 7], "output": f"a{i}."} for i in range(n)]
    for k, v in change.items():
        rows[1][k] = v
    return rows


@pytest.mark.parametrize("content, message", [
    ("[", "is not valid JSON"),
    ("[]", "holds no rows"),
    ('{"input": 1}', "holds a JSON object, not a JSON list"),
    (json.dumps([{"input": "x", "tok_input": [1]}]), "row 0 has no 'output'"),
    (json.dumps(_rows(tok_input=[1, 2, 999])), "token id 999 is not a whole number in the model's vocabulary"),
    (json.dumps(_rows(tok_input=[])), "must be a non-empty list"),
    (json.dumps(_rows(tok_input=list(range(120)))), "more than the model's context of 128"),
])
def test_cnn_eval_loader_refuses_bad_files_in_one_line(tmp_path, content, message):
    p = tmp_path / cnn_eval.FILE
    p.write_text(content)
    with pytest.raises(DataError) as e:
        cnn_eval.load(p, vocab_size=320, context_length=128, max_new_tokens=16)
    assert message in e.value.message and str(p) in e.value.message and "\n" not in e.value.message


def test_cnn_eval_loader_reads_the_reference_format(tmp_path):
    p = cnn_eval.write(tmp_path / cnn_eval.FILE, _rows(5))
    rows = cnn_eval.load(cnn_eval.locate(tmp_path), vocab_size=320, context_length=128, max_new_tokens=16,
                         max_rows=4)
    assert len(rows) == 4 and rows[2].prompt == [0, 5, 6, 7] and rows[2].reference == "a2." and p.is_file()


def test_rouge_as_the_reference_scores_it_without_nltk_data():
    from mlbench.llm import rouge

    text = 'Mr. Smith met Dr. J. Brown at 3.5 p.m. on Jan. 5. "Fine," he said! Was it U.S. policy? Yes.'
    assert rouge.sentences(text) == ['Mr. Smith met Dr. J. Brown at 3.5 p.m. on Jan. 5.', '"Fine," he said!',
                                     'Was it U.S. policy?', 'Yes.']
    s = rouge.score(["The cat sat on the mat. It was happy."], ["The cat sat on a mat. The cat was happy."])
    assert s["rouge1"] == pytest.approx(84.2105) and s["rouge2"] == pytest.approx(47.0588)
    assert s["gen_len"] == len("The cat sat on the mat.\nIt was happy.") and s["gen_num"] == 1


@pytest.mark.parametrize("text", ["0", "nan", "1e30", "2.5", "-3", "x"])
def test_max_new_tokens_must_be_a_sane_whole_number(text):
    from mlbench.errors import ConfigError

    with pytest.raises(ConfigError, match="invalid --max-new-tokens"):
        llm_inference.parse_max_new_tokens(text, 128)


def test_package_inference_knows_the_mlperf_name_and_reads_the_rouge_line(offline, tmp_path):
    """The tiny run packaged (open, forced: a --quick run): results/<system>/llama3.1-8b/Offline, its accuracy.txt
    scored again from the log and read back with the round's ROUGE1 pattern."""
    from mlbench.submission import inference as pkg
    from mlbench.submission import rounds

    system = {"status": "available", "system_type": "datacenter", "system_type_detail": "workstation",
              "host_networking": "N/A", "host_network_card_count": "0", "host_processor_frequency": "N/A",
              "host_processor_caches": "N/A", "host_processor_interconnect": "N/A", "host_storage_type": "SSD",
              "host_storage_capacity": "N/A", "host_networking_topology": "N/A",
              "host_memory_configuration": "N/A", "cooling": "air"}
    (tmp_path / "s.json").write_text(json.dumps(system))
    pkg.package([Path(offline["run_dir"])], submitter="ACME", system_name="box", out=tmp_path / "p",
                division="open", system_json=tmp_path / "s.json", force=True, run_checkers=False)
    org = tmp_path / "p" / "open" / "ACME"
    text = (org / "results" / "box" / "llama3.1-8b" / "Offline" / "accuracy" / "accuracy.txt").read_text()
    assert float(re.search(r"'rouge1':\s+'?([\d.]+)'?", text).group(1)) == pytest.approx(
        offline["accuracy"]["scores"]["rouge1"])
    tree = pkg.check_tree(org, "box", rounds.ROUNDS["v6.1"], "open")
    kinds = {t[0] for c in tree for ts in c.tags.values() for t in ts}
    # what a tiny --quick run lacks, and nothing about the round, files or layout
    assert kinds == {"min-duration", "performance-sample-count", "dataset-size", "accuracy"}, tree
