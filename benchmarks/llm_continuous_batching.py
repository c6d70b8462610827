"""Continuous against static batching in mlbench's ``transformers`` engine, on outputs of mixed lengths: whole
``mlbench infer llama3.1-8b`` runs (token-latency SUT, LoadGen), ``--batching continuous`` and ``--batching static``
alternating pair by pair (which goes first alternates too), medians.

The model is the random mini-sized Llama of ``llm_offline_overhead.py`` (4 layers, hidden 128, vocabulary 4,096)
with its end token's output row scaled by ``--eos-scale`` (2.0: greedy outputs end after 3 to 128 tokens, about
half of them before 45; 1.0: none ends before ``--max-new-tokens``), on generated prompts of 48-80 token ids. Both
modes generate the same tokens (greedy; the script checks the totals agree): what differs is how long a finished
request's slot idles. Offline: LoadGen's tokens/s (wall) and tokens per CPU second of the generating thread (on a
shared machine wall-clock rates swing with the other processes' load; run it with ``OMP_NUM_THREADS=1`` and
``nice``). Server (``--server-qps``, 0 to skip): TTFT and TPOT p50/p90 at a fixed arrival rate, the same for both
modes (default: half the first static Offline run's samples/s).

    python benchmarks/llm_continuous_batching.py [--pairs 3] [--samples 64] [--batch-size 16] [--max-new-tokens 128]
        [--hf-generate-batch]

``--hf-generate-batch`` first times, outside LoadGen on the same prompts: transformers' own continuous batching
(``generate_batch`` on its paged cache, configured for this batch: its default configuration sizes the cache from
the host's free RAM on CPU, which took 52 s for 8 prompts here once and was killed for memory the next time, so it
is not offered), ``model.generate`` in static batches, and mlbench's engine in both modes (why the engine does not
use ``generate_batch``: see ``mlbench/inference/engines/hf.py``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from llm_offline_overhead import SPEC, build, generate_batches

MODES = ("continuous", "static")


def scale_eos(model_dir: Path, scale: float) -> None:
    """Multiply the end token's row of the output layer by ``scale`` (the end token then wins some greedy steps)."""
    from safetensors.torch import load_file, save_file

    f = model_dir / "model.safetensors"
    tensors = load_file(str(f))
    tensors["lm_head.weight"][SPEC["eos_token_id"]] *= scale
    save_file(tensors, str(f), metadata={"format": "pt"})


def run(model_dir: Path, data: Path, out: Path, a: argparse.Namespace, batching: str, scenario: str,
        qps: float | None = None) -> dict:
    from mlbench.inference.config import InferConfig
    from mlbench.inference.execute import execute

    if scenario == "Offline":
        extra = {"duration_s": 1.0, "target_qps": a.samples / 1.1}
    else:
        extra = {"duration_s": a.server_duration_s, "target_qps": qps}
    cfg = InferConfig(benchmark="llama31_8b", size="tiny", scenario=scenario, quick=True, batch_size=a.batch_size,
                      threads=a.threads, model_dir=str(model_dir), data_dir=str(data), batching=batching,
                      max_new_tokens=str(a.max_new_tokens), output_dir=str(out), **extra)
    r = execute(cfg)
    if r["status"] != "success":
        raise SystemExit(f"{batching} {scenario} run failed: {r.get('error')}")
    m = r["metrics"]
    return {"tokens_per_s": m["throughput/tokens_per_s"], "samples_per_s": m["throughput/samples_per_s"],
            "tokens_per_cpu_s": m["sut/generated_tokens"] / m["sut/engine_cpu_s"],
            "tokens": m["sut/generated_tokens"], "samples": m["sut/samples"],
            **{k: m.get(f"latency/{k}") for k in ("ttft_p50_ms", "ttft_p90_ms", "tpot_p50_ms", "tpot_p90_ms")}}


def hf_generate_batch(model_dir: Path, prompts: list[list[int]], a: argparse.Namespace) -> dict:
    """transformers' own continuous batching (``model.generate_batch``, paged cache) against ``model.generate`` in
    static batches of ``--batch-size`` over the same prompts: wall and CPU seconds (process, its manager runs in
    a thread), second pass of each timed, and whether its greedy tokens equal ``generate``'s."""
    import time

    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig
    from transformers.generation.configuration_utils import ContinuousBatchingConfig

    torch.set_num_threads(a.threads)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), use_safetensors=True).eval()
    eos = SPEC["eos_token_id"]
    gen = GenerationConfig(do_sample=False, num_beams=1, eos_token_id=[eos], pad_token_id=eos, use_cache=True,
                           max_new_tokens=a.max_new_tokens)

    def static() -> list[list[int]]:
        return generate_batches(model, prompts, a.batch_size, gen, eos)

    def paged(config: ContinuousBatchingConfig | None) -> list[list[int]]:
        res = model.generate_batch(prompts, generation_config=gen, continuous_batching_config=config,
                                   progress_bar=False)
        return [list(res[f"req_{i}"].generated_tokens) for i in range(len(prompts))]

    small = ContinuousBatchingConfig(page_size=16, num_blocks=4 * a.batch_size * (a.max_new_tokens + 80) // 16,
                                     max_batch_tokens=2048, max_requests_per_batch=a.batch_size)
    def engine(batching: str) -> list[list[int]]:
        import threading

        from mlbench.inference import generation as g

        done: dict[int, list[int]] = {}
        finished = threading.Event()

        class Callbacks:
            def on_first_token(self, id: int, token_ids: list[int]) -> None:
                pass

            def on_done(self, id: int, token_ids: list[int], token_count: int | None = None) -> None:
                done[id] = token_ids
                if len(done) == len(prompts):
                    finished.set()

            def on_error(self, id: int, message: str) -> None:
                raise SystemExit(message)

        eng = engines[batching]
        if eng.callbacks is None:
            eng.start(Callbacks())
        eng.callbacks = Callbacks()
        eng.submit([g.GenerationRequest(i, i, p, a.max_new_tokens) for i, p in enumerate(prompts)])
        eng.flush()
        finished.wait(3600)
        return [done[i] for i in range(len(prompts))]

    from mlbench.inference import generation as g

    engines = {b: g.create("transformers", model_dir, g.EngineSettings(
        batch_size=a.batch_size, threads=a.threads, eos_token_ids=(eos,), options={"batching": b})) for b in MODES}
    sides = {"generate_static": static, "generate_batch_small_cache": lambda: paged(small),
             "mlbench_engine_static": lambda: engine("static"),
             "mlbench_engine_continuous": lambda: engine("continuous")}
    out: dict = {}
    ref = None
    for name, fn in sides.items():
        tokens = fn()  # first pass: warm-up (and the manager's own), untimed
        t0, c0 = time.perf_counter(), time.process_time()
        tokens = fn()
        out[name] = {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
                     "tokens": sum(map(len, tokens))}
        ref = ref or tokens
        out[name]["same_tokens_as_generate"] = tokens == ref
        print(f"{name}: {out[name]}", flush=True)
    for eng in engines.values():
        eng.stop()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--eos-scale", type=float, default=2.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--server-qps", type=float, default=None, help="0: no Server runs")
    ap.add_argument("--server-duration-s", type=float, default=10.0)
    ap.add_argument("--hf-generate-batch", action="store_true",
                    help="also time transformers' own generate_batch (paged cache, sized for this batch) against "
                         "model.generate in static batches, outside LoadGen")
    a = ap.parse_args()
    report: dict = {"args": vars(a), "model": SPEC, "offline": {m: [] for m in MODES}, "server": {m: [] for m in MODES}}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model_dir, prompts = build(root, a.samples)
        scale_eos(model_dir, a.eos_scale)
        if a.hf_generate_batch:
            report["hf_generate_batch"] = hf_generate_batch(model_dir, prompts, a)
        for i in range(a.pairs):
            for mode in (MODES if i % 2 == 0 else MODES[::-1]):
                r = run(model_dir, root, root / "runs", a, mode, "Offline")
                report["offline"][mode].append(r)
                print(f"pair {i + 1} Offline {mode}: {r['tokens_per_s']:.1f} tokens/s, {r['tokens_per_cpu_s']:.1f} "
                      f"tokens per CPU s ({r['tokens']} tokens, {r['samples']} samples)", flush=True)
        qps = a.server_qps if a.server_qps is not None else report["offline"]["static"][0]["samples_per_s"] / 2
        report["server_qps"] = qps
        for i in range(a.pairs if qps else 0):
            for mode in (MODES if i % 2 == 0 else MODES[::-1]):
                r = run(model_dir, root, root / "runs", a, mode, "Server", qps)
                report["server"][mode].append(r)
                print(f"pair {i + 1} Server {qps:.3g}/s {mode}: TTFT p50 {r['ttft_p50_ms']:.1f} ms p90 "
                      f"{r['ttft_p90_ms']:.1f} ms, TPOT p50 {r['tpot_p50_ms']:.2f} ms p90 {r['tpot_p90_ms']:.2f} ms",
                      flush=True)
    med = {}
    for scen in ("offline", "server"):
        for mode in MODES:
            runs = report[scen][mode]
            if runs:
                med[f"{scen}_{mode}"] = {k: statistics.median(r[k] for r in runs) for k in runs[0]
                                         if runs[0][k] is not None}
    report["medians"] = med
    if med.get("offline_static"):
        report["offline_continuous_over_static"] = {
            k: med["offline_continuous"][k] / med["offline_static"][k] for k in ("tokens_per_s", "tokens_per_cpu_s")}
    print(json.dumps(report["medians"], indent=1))
    print(json.dumps({k: report[k] for k in ("server_qps", "offline_continuous_over_static") if k in report}))


if __name__ == "__main__":
    main()
