"""Whisper inference: ``mlbench infer whisper`` Offline tokens/s under LoadGen against the same model's plain batched
generate loop, side by side.

Raw: the module the PyTorch backend serves, called without the harness: for each batch of the SUT's size over the
performance samples (padded to the model's window before the clock starts), the log-mel features and transformers'
greedy ``generate`` (encoder once per batch), counting the tokens each row generated (its end token included, as
the harness counts them for LoadGen). It runs on a worker thread with the backend's thread count, as the SUT's
worker does. Raw and LoadGen tests alternate (raw, test, raw, test, ...); reported: the per-pair ratios of tokens/s
(LoadGen's ``result_tokens_per_second`` over the raw loop's), their median and range.

    python benchmarks/whisper_offline_overhead.py [--size tiny] [--clips 64] [--seconds 5] [--repeats 5]
        [--batch-size 16] [--model-dir DIR --data-dir DIR]

Without ``--data-dir`` it generates ``--clips`` tone clips in the reference's layout (a temporary folder); tiny's
model has random weights (it never ends early: every row generates ``max_new_tokens``); LoadGen holds the size's
performance sample count (tiny: 12) and repeats them in its one query.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

import torch

from mlbench.inference import runner
from mlbench.inference.config import InferConfig


def raw_rate(wr, batches: list[torch.Tensor], seconds: float, threads: int) -> float:
    """Generated tokens/s of features + generate over ``batches`` in a loop for ``seconds``, on a fresh thread."""
    box: dict = {}

    def loop() -> None:
        torch.set_num_threads(threads)
        with torch.inference_mode():
            wr.generate(wr.features(batches[0]))
            tokens, k, t0 = 0, 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                out = wr.generate(wr.features(batches[k % len(batches)]))[:, len(wr.prompt):]
                ended = out == wr.end
                first = torch.where(ended.any(1), ended.float().argmax(1) + 1, out.shape[1])
                tokens += int(first.sum())
                k += 1
            box["rate"] = tokens / (time.perf_counter() - t0)

    t = threading.Thread(target=loop)
    t.start()
    t.join()
    return box["rate"]


def side_by_side(cfg: InferConfig, seconds: float, repeats: int, out: Path) -> dict:
    s = runner.open_session(cfg, lambda m: None)
    try:
        wr = s.task.runner()
        n = s.store.performance_count
        s.store.load(list(range(n)))
        bs = s.batch_size
        # full batches of the SUT's size, samples repeated as LoadGen's Offline query repeats them
        batches = [torch.from_numpy(s.store.batch([(a + j) % n for j in range(bs)])["audio"]) for a in range(0, n, bs)]
        raws, ours, valid = [], [], []
        for i in range(repeats):
            raws.append(raw_rate(wr, batches, seconds, s.backend.threads))
            t = runner.run_test(s, runner.plan_for(s, "performance"), out / f"run{i}")
            ours.append(t["metrics"]["throughput/tokens_per_s"])
            s.estimate_qps = t["metrics"]["throughput/samples_per_s"]
            valid.append(t["loadgen_valid"])
            print(f"pair {i}: raw {raws[-1]:9.1f}  mlbench {ours[-1]:9.1f} tokens/s  ratio {ours[-1] / raws[-1]:.3f}",
                  flush=True)
        ratios = [o / r for r, o in zip(raws, ours, strict=True)]
        return {"raw_tokens_per_s": statistics.median(raws), "mlbench_tokens_per_s": statistics.median(ours),
                "ratio": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
                "ratio_note": "median of per-pair ratios (raw then LoadGen, side by side)",
                "pairs": list(zip(raws, ours, strict=True)), "loadgen_valid": valid, "batch": bs,
                "threads": s.backend.threads, "samples": n}
    finally:
        s.close()


def main() -> None:
    from mlbench.benchmarks.whisper import data as wdata

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="tiny")
    p.add_argument("--clips", type=int, default=64)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--model-dir", default=None)
    p.add_argument("--data-dir", default=None)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = a.data_dir
        if data_dir is None:
            data_dir = str(Path(tmp) / "clips")
            wdata.tone_set(data_dir, a.clips, seed=0)
        cfg = InferConfig(benchmark="whisper", size=a.size, scenario="Offline", quick=True, duration_s=a.seconds,
                          batch_size=a.batch_size, threads=a.threads, data_dir=data_dir, model_dir=a.model_dir,
                          output_dir=str(Path(tmp) / "runs"))
        r = side_by_side(cfg, a.seconds, a.repeats, Path(tmp) / "tests")
    print(json.dumps(r, indent=1))


if __name__ == "__main__":
    main()
