"""Where a size's day files are, and the training/evaluation streams over them.

``--data-dir DIR`` names a folder of day files (any size); without it, mini and tiny generate their planted
click log into ``cache_dir('datasets', 'dlrm-<size>')`` (once; rank 0 writes, the others wait), and the
reference size refuses to start.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mlbench.benchmarks.dlrm import days, synthetic
from mlbench.data import download
from mlbench.definition import Benchmark
from mlbench.errors import DataError
from mlbench.training import distributed
from mlbench.training.batches import DataBundle, DataSpec
from mlbench.untrusted import load_json


def data_root(bench: Benchmark, data_dir: str | None, say: Callable[[str], None] = print,
              rank: int = 0) -> Path:
    if data_dir:
        root = Path(data_dir)
        if not root.is_dir():
            raise DataError(f"DLRM data folder not found: {root}",
                            "pass --data-dir DIR holding day_{d}_dense.npy, day_{d}_sparse_multi_hot.npz and "
                            "day_{d}_labels.npy")
        return root
    if bench.is_reference:
        raise DataError("DLRM-DCNv2 reference needs the MLPerf multi-hot Criteo 1TB day files",
                        "pass --data-dir DIR holding day_0..23_{dense.npy,sparse_multi_hot.npz,labels.npy}, made "
                        "by the MLCommons reference's materialize_synthetic_multihot_dataset.py from Criteo 1TB")
    root = download.cache_dir("datasets", f"dlrm-{bench.size}")
    if rank == 0:
        synthetic.ensure(root, bench.hparams, say)
    distributed.barrier()
    return root


def planted_info(root: Path) -> dict | None:
    """planted.json of a generated click log (Bayes-optimal AUC ...), None for other data."""
    p = root / "planted.json"
    return load_json(p, "planted.json", expect=dict, hint="it describes a generated click log: delete it (the day "
                     "files are read without it), or regenerate the data") if p.is_file() else None


def build(bench: Benchmark, spec: DataSpec, say: Callable[[str], None] = print) -> DataBundle:
    hp = bench.hparams
    rows = hp["table_rows"]
    root = data_root(bench, spec.data_dir, say, spec.rank)
    train_days = [days.open_day(root, d, rows, hp["multi_hot"]) for d in hp["train_days"]]
    eval_day = days.open_day(root, hp["eval_day"], rows, hp["multi_hot"])
    train_rows = days.Rows(train_days, rows)
    val_rows = days.eval_rows(eval_day, rows, "val")
    train = days.TrainStream(train_rows, spec.batch_size, spec.rank, spec.world_size)
    ev = days.EvalStream(val_rows, spec.eval_batch_size, spec.rank, spec.world_size)
    return DataBundle(train=train, eval=ev, train_samples=len(train_rows), eval_samples=len(val_rows))
