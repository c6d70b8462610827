"""LLM Offline overhead: tokens/s of ``mlbench infer llama3.1-8b`` (transformers engine, token-latency SUT, LoadGen)
against the same model's plain batched ``generate`` loop at the same batch size, side by side.

The model is a random mini-sized Llama (4 layers, hidden 128, vocabulary 4,096; built from a config, saved as a
Hugging Face directory) on generated prompts of 48-80 token ids written as a cnn_eval.json. Both sides run greedy,
KV cache, left-padded batches, ``--max-new-tokens`` tokens (the random model's EOS is unlikely; both count what
was generated up to it). The plain loop is what a user would write: ``model.generate`` batch after batch over the
same number of samples (timed on its second pass: CPU kernels are slow on a shape's first call, and the harness warms up on its first batch too), tokens over wall time. The harness side is a whole ``mlbench infer`` Offline run in this
process, its figure LoadGen's ``result_tokens_per_second``. They alternate pair by pair (which goes first alternates too); the report gives each
pair's ratio and the median ratio (target >= 0.95). On a shared machine wall-clock rates swing with the other
processes' load, so each side also reports tokens per CPU second of the thread that generates (``--threads 1``:
all of the model's work; mlbench's figure includes the SUT's callbacks into LoadGen, which run on that thread).

    python benchmarks/llm_offline_overhead.py [--pairs 3] [--samples 64] [--batch-size 16] [--max-new-tokens 32]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

SPEC = {"vocab_size": 4096, "hidden_size": 128, "intermediate_size": 352, "num_hidden_layers": 4,
        "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 256, "rope_theta": 10_000.0,
        "rms_norm_eps": 1e-5, "tie_word_embeddings": False, "bos_token_id": 0, "eos_token_id": 1}


def build(root: Path, samples: int) -> tuple[Path, list[list[int]]]:
    import random

    import torch

    from mlbench.benchmarks.llama31_8b import cnn_eval
    from mlbench.llm import llama

    torch.manual_seed(0)
    model_dir = root / "model"
    llama.save_hf_dir(llama.build(SPEC, init_std=0.02), model_dir)
    (model_dir / "tokenizer.json").write_text("{}")  # present for the directory check; never decoded here
    rng = random.Random(0)
    prompts = [[0] + [rng.randrange(2, SPEC["vocab_size"]) for _ in range(rng.randint(47, 79))]
               for _ in range(samples)]
    cnn_eval.write(root / cnn_eval.FILE, [{"input": "x", "tok_input": p, "output": "y"} for p in prompts])
    return model_dir, prompts


def plain(model_dir: Path, prompts: list[list[int]], bs: int, new: int, threads: int) -> float:
    """Tokens/s of a plain loop of model.generate over the prompts, batch after batch."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    torch.set_num_threads(threads)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), use_safetensors=True).eval()
    # the engine's settings exactly: greedy, KV cache on (GenerationConfig's own default leaves it to the model's
    # config and measured 2x slower here), the same end and padding tokens
    gen = GenerationConfig(do_sample=False, num_beams=1, eos_token_id=[1], pad_token_id=1, use_cache=True,
                           bos_token_id=0, max_new_tokens=new)

    def run() -> int:
        return sum(map(len, generate_batches(model, prompts, bs, gen, eos=1)))

    run()  # untimed warm-up over the same batches (CPU kernels are slow on the first call of a shape), as the
    # harness warms up on its first batch
    t0, c0 = time.perf_counter(), time.thread_time()
    tokens = run()
    return tokens / (time.perf_counter() - t0), tokens / (time.thread_time() - c0)


def generate_batches(model, prompts: list[list[int]], bs: int, gen, eos: int) -> list[list[int]]:
    """``model.generate`` over ``prompts`` in left-padded batches of ``bs`` (padded with ``eos``), each output cut
    after its first ``eos``."""
    import torch

    from mlbench.inference.engines.hf import left_padded

    outs = []
    for i in range(0, len(prompts), bs):
        ids, mask = left_padded(prompts[i:i + bs], eos)
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=mask, generation_config=gen)
        for row in out[:, ids.shape[1]:].tolist():
            outs.append(row[:next((k + 1 for k, t in enumerate(row) if t == eos), len(row))])
    return outs


def harness(model_dir: Path, data: Path, samples: int, bs: int, new: int, threads: int, out: Path) -> float:
    from mlbench.inference.config import InferConfig
    from mlbench.inference.execute import execute

    cfg = InferConfig(benchmark="llama31_8b", size="tiny", scenario="Offline", quick=True, duration_s=1.0,
                      target_qps=samples / 1.1, batch_size=bs, threads=threads, model_dir=str(model_dir),
                      data_dir=str(data), max_new_tokens=str(new), output_dir=str(out))
    r = execute(cfg)
    m = r["metrics"]
    return float(m["throughput/tokens_per_s"]), m["sut/generated_tokens"] / m["sut/engine_cpu_s"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model_dir, prompts = build(root, a.samples)
        pairs = []
        for i in range(a.pairs):  # the order alternates, so that a drift of the machine's load favours neither
            if i % 2:
                h, hc = harness(model_dir, root, a.samples, a.batch_size, a.max_new_tokens, a.threads, root / "runs")
                p, pc = plain(model_dir, prompts, a.batch_size, a.max_new_tokens, a.threads)
            else:
                p, pc = plain(model_dir, prompts, a.batch_size, a.max_new_tokens, a.threads)
                h, hc = harness(model_dir, root, a.samples, a.batch_size, a.max_new_tokens, a.threads, root / "runs")
            pairs.append({"plain_tokens_per_s": p, "mlbench_tokens_per_s": h, "ratio": h / p,
                          "plain_tokens_per_cpu_s": pc, "mlbench_tokens_per_cpu_s": hc, "cpu_ratio": hc / pc})
            print(f"pair {i + 1}: plain {p:.1f} tokens/s, mlbench {h:.1f} tokens/s, ratio {h / p:.3f}; per CPU "
                  f"second of the generating thread: plain {pc:.1f}, mlbench {hc:.1f}, ratio {hc / pc:.3f}", flush=True)
    report = {"pairs": pairs, "median_ratio": statistics.median(x["ratio"] for x in pairs),
              "median_cpu_ratio": statistics.median(x["cpu_ratio"] for x in pairs),
              "median_plain_tokens_per_s": statistics.median(x["plain_tokens_per_s"] for x in pairs),
              "median_mlbench_tokens_per_s": statistics.median(x["mlbench_tokens_per_s"] for x in pairs),
              "samples": a.samples, "batch_size": a.batch_size, "max_new_tokens": a.max_new_tokens,
              "threads": a.threads, "model": SPEC}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
