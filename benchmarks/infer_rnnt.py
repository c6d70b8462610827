"""RNN-T inference: ``mlbench infer rnnt`` Offline under LoadGen against the raw model, side by side.

Raw: the very module the PyTorch backend serves (features, frame splicing, encoder, batched greedy decoding) called
in a plain loop on the same samples in the same batches: the previous LoadGen test's query (Offline's one query,
samples repeated as LoadGen repeats them, in the order the SUT batched it) cut in the SUT's batch size and padded
the same way (the batch's longest utterance rounded up to 0.1 s), the padded tensors built before the clock
starts, nothing done with the labels. It runs on a worker thread with the backend's thread count, as the SUT's worker does (each
thread has its own OpenMP pool). Raw and LoadGen runs alternate (raw, test, raw, test, ...) so that both see the
same machine; reported are the per-pair ratios, their median and range, the same per CPU-second of the process
(steadier than wall time on a shared machine; the mlbench side counts all of ``run_test``: LoadGen, its logs and
their parsing), and where the harness spends its time (the share of the test inside the model's forward).

An untimed LoadGen test first gives pair 0 its query. ``--by-length`` measures both sides batching longest
utterances first: the SUT is patched, in this script only, to reorder Offline's one query by the store's
``order()`` (a hook the harness does not have yet), and raw replays that sorted query; padding shrinks.

    python benchmarks/infer_rnnt.py --size mini [--seconds 5] [--repeats 5] [--batch-size 32]
        [--weights FILE] [--data-dir DIR] [--configs pytorch:fp32] [--by-length]
    python benchmarks/infer_rnnt.py --size mini --decoders 5 --threads 1   # greedy decoding: new vs previous

mini/tiny use the model ``mlbench train rnnt --size mini|tiny`` caches (trained first when missing) unless
``--weights`` names one; ``--threads 1`` pins the intra-op threads (default: the harness's choice).
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


def raw_batches(s, indices: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``indices`` cut into batches of the SUT's size, padded as the store pads, before the clock starts."""
    bs = s.batch_size
    s.store.load(sorted(set(indices)))
    out = []
    for a in range(0, len(indices) - bs + 1, bs):
        x = s.store.batch(indices[a:a + bs])
        out.append((torch.from_numpy(x["audio"]), torch.from_numpy(x["audio_len"])))
    return out


def raw_rate(model, batches, seconds: float, threads: int) -> tuple[float, float]:
    """Samples/s of ``model(audio, audio_len)`` over ``batches`` in a loop for ``seconds``, on a fresh thread;
    and samples per CPU-second of the process."""
    box: dict = {}

    def loop() -> None:
        torch.set_num_threads(threads)
        with torch.inference_mode():
            model(*batches[0])
            n, k, t0, c0 = 0, 0, time.perf_counter(), time.process_time()
            while time.perf_counter() - t0 < seconds:
                audio, lens = batches[k % len(batches)]
                model(audio, lens)
                n += len(lens)
                k += 1
            box["rate"] = n / (time.perf_counter() - t0), n / (time.process_time() - c0)

    t = threading.Thread(target=loop)
    t.start()
    t.join()
    return box["rate"]


def record_queries(by_length: bool) -> None:
    """Patch the SUT class (this script only) so that each SUT keeps the sample indices of its last large query
    (Offline's one query) in the order its workers batch them; ``by_length`` also reorders such a query by the
    store's ``order`` first: a preview of a harness hook the SUT does not have yet."""
    from mlbench.inference import sut

    issue = sut.SUT.issue

    def recording_issue(self, ids, indices):
        if not self.inline and len(ids) > self.batch_size:
            order = getattr(self.store, "order", None)
            if by_length and order is not None:
                perm = order(indices)
                ids, indices = [ids[p] for p in perm], [indices[p] for p in perm]
            self.last_query = list(indices)
        issue(self, ids, indices)

    sut.SUT.issue = recording_issue


def side_by_side(cfg: InferConfig, seconds: float, repeats: int, out: Path, by_length: bool = False) -> dict:
    s = runner.open_session(cfg, lambda m: None)
    try:
        model = getattr(s.backend, "model", None) or s.task.model()  # PyTorch's: the module the backend runs
        s.estimate_qps = raw_rate(model, raw_batches(s, list(range(s.store.performance_count))), 1.0,
                                  s.backend.threads)[0]
        runner.run_test(s, runner.plan_for(s, "performance"), out / "warm")  # untimed: its query feeds pair 0
        raws, ours, raw_cpu, our_cpu, busy, valid = [], [], [], [], [], []
        for i in range(repeats):
            batches = raw_batches(s, s.sut.last_query)  # the previous test's query, batched as the SUT did
            wall, cpu = raw_rate(model, batches, seconds, s.backend.threads)
            raws.append(wall)
            raw_cpu.append(cpu)
            s.estimate_qps = wall  # LoadGen plans the Offline sample count from the measured rate
            c0 = time.process_time()
            t = runner.run_test(s, runner.plan_for(s, "performance"), out / f"run{i}")
            our_cpu.append(s.sut.samples / (time.process_time() - c0))  # the whole test: LoadGen, logs, parsing
            ours.append(t["metrics"]["throughput/samples_per_s"])
            busy.append(t["metrics"].get("sut/backend_busy_share"))
            valid.append(t["loadgen_valid"])
            print(f"pair {i}: raw {raws[-1]:8.1f}  mlbench {ours[-1]:8.1f} samples/s  ratio {ours[-1] / raws[-1]:.3f}"
                  f"  | per CPU-second: raw {raw_cpu[-1]:8.1f}  mlbench {our_cpu[-1]:8.1f}  ratio "
                  f"{our_cpu[-1] / raw_cpu[-1]:.3f}  | model busy {busy[-1]:.3f}", flush=True)
        ratios = [o / r for r, o in zip(raws, ours, strict=True)]
        cpu_ratios = [o / r for r, o in zip(raw_cpu, our_cpu, strict=True)]
        return {"raw_samples_per_s": statistics.median(raws), "mlbench_samples_per_s": statistics.median(ours),
                "ratio": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
                "ratio_note": "median of per-pair ratios (raw then LoadGen, side by side)",
                "raw_samples_per_cpu_s": statistics.median(raw_cpu),
                "mlbench_samples_per_cpu_s": statistics.median(our_cpu),
                "cpu_ratio": statistics.median(cpu_ratios), "cpu_ratio_min": min(cpu_ratios),
                "cpu_ratio_max": max(cpu_ratios),
                "cpu_ratio_note": "samples per CPU-second of the process; mlbench's counts the whole test (LoadGen, "
                                  "log writing and parsing), so it is the conservative one on a busy machine",
                "backend_busy_share": statistics.median(b for b in busy if b is not None),
                "pairs": list(zip(raws, ours, strict=True)), "loadgen_valid": valid, "batch": s.batch_size,
                "threads": s.backend.threads, "workers": s.sut.n_workers, "samples": s.store.performance_count,
                "raw_batches": len(batches), "query_samples": len(s.sut.last_query), "by_length": by_length}
    finally:
        s.close()


def decoders(cfg: InferConfig, rounds: int) -> dict:
    """The greedy decoder against the one it replaced (``greedy_before`` in tests/rnnt/test_rnnt_infer_greedy.py):
    CPU time of decoding every performance batch (encoder included, features computed beforehand), the two
    taking turns for ``rounds`` rounds; the labels must be equal."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "rnnt"))
    from test_rnnt_infer_greedy import greedy_before

    from mlbench.benchmarks.rnnt.features import stack_subsample

    s = runner.open_session(cfg, lambda m: None)
    try:
        m = getattr(s.backend, "model", None) or s.task.model()
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        feats = []
        with torch.inference_mode():
            for audio, lens in raw_batches(s, list(range(s.store.performance_count))):
                mel, flen = m.features(audio, lens)
                x, xl = stack_subsample(mel, flen, m.stacking, m.subsampling)
                feats.append((x.transpose(1, 2), xl))
            times: dict[str, list[float]] = {"new": [], "before": []}
            outs: dict[str, list] = {}
            for _ in range(rounds):
                for name, fn in (("new", m.rnnt.greedy), ("before", lambda x, xl: greedy_before(m.rnnt, x, xl))):
                    c0 = time.process_time()
                    outs[name] = [fn(x, xl) for x, xl in feats]
                    times[name].append(time.process_time() - c0)
                c0 = time.process_time()
                for x, xl in feats:
                    m.rnnt.encode(x, xl)
                times.setdefault("encoder_only", []).append(time.process_time() - c0)
        equal = all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(outs["new"], outs["before"]))
        labels = float(torch.cat([c for _, c in outs["new"]]).float().mean())
        med = {k: statistics.median(v) for k, v in times.items()}
        loop_new, loop_before = med["new"] - med["encoder_only"], med["before"] - med["encoder_only"]
        return {"cpu_s_new": med["new"], "cpu_s_before": med["before"], "cpu_s_encoder_only": med["encoder_only"],
                "speedup_with_encoder": med["before"] / med["new"],
                "speedup_decoding_loop": loop_before / loop_new if loop_new > 0 else None,
                "ranges": {k: [min(v), max(v)] for k, v in times.items()}, "labels_equal": equal,
                "labels_per_utterance": labels, "batches": len(feats), "batch": s.batch_size, "rounds": rounds}
    finally:
        s.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="mini", choices=("mini", "tiny", "reference"))
    ap.add_argument("--seconds", type=float, default=5.0, help="raw loop and LoadGen minimum duration per pair")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--weights", default=None, help="a state dict of the model (default: the cached trained one)")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--configs", default="pytorch:fp32", help="backend:precision list (the raw side is PyTorch's)")
    ap.add_argument("--by-length", action="store_true",
                    help="both sides batch longest utterances first: raw sorts its samples, and the SUT reorders "
                         "the Offline query by the store's order() (a preview: the harness does not do it yet)")
    ap.add_argument("--decoders", type=int, default=0, metavar="ROUNDS",
                    help="only time the greedy decoder against the previous one (CPU time, ROUNDS interleaved)")
    a = ap.parse_args()
    if a.decoders:
        cfg = InferConfig(benchmark="rnnt", size=a.size, scenario="Offline", batch_size=a.batch_size,
                          threads=a.threads, weights=a.weights, data_dir=a.data_dir, quick=True)
        print(json.dumps(decoders(cfg, a.decoders), indent=1))
        return
    record_queries(a.by_length)
    out = Path(tempfile.mkdtemp(prefix=f"infer-rnnt-{a.size}-"))
    report = {}
    for item in a.configs.split(","):
        backend, precision = item.split(":")
        cfg = InferConfig(benchmark="rnnt", size=a.size, backend=backend, precision=precision, scenario="Offline",
                          batch_size=a.batch_size, threads=a.threads, weights=a.weights, data_dir=a.data_dir,
                          quick=True, duration_s=a.seconds, output_dir=str(out))
        report[item] = side_by_side(cfg, a.seconds, a.repeats, out / item.replace(":", "-"), a.by_length)
        print(item, json.dumps(report[item]), flush=True)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
