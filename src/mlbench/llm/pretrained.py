"""A benchmark's trained language model as a Hugging Face model directory (config.json, model.safetensors and
the tokenizer files), so that transformers' ``AutoModelForCausalLM``/``AutoTokenizer`` (and any server that
reads such a folder) load it: the starting point of fine-tuning and of LLM inference at the small sizes.

The directory is cached at ``~/.cache/mlbench/models/<benchmark>-<size>-hf/`` (``$MLBENCH_CACHE``). When it is
missing it is made from a run of ``mlbench train <benchmark> --size <size> --seed 0`` (kept under
``models/training-runs/``), whose workload writes the directory from its checkpoint (``export_hf``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from mlbench.data import download
from mlbench.errors import MlbenchError


def hf_dir_path(name: str, size: str) -> Path:
    return download.cache_dir("models", f"{name}-{size}-hf")


def is_complete(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (folder / "model.safetensors").is_file() and \
        (folder / "tokenizer.json").is_file()


def trained_hf_dir(name: str, size: str, *, say: Callable[[str], None] = print, train_if_missing: bool = True,
                   data_dir: str | None = None) -> Path:
    """The cached model directory of benchmark ``name`` at ``size``; trained and exported first when missing."""
    from mlbench import registry

    dest = hf_dir_path(name, size)
    if is_complete(dest):
        return dest
    if not train_if_missing:
        raise MlbenchError(f"no trained {name} {size} model in {dest}",
                           f"run `mlbench data prepare {name} --size {size} --model` (it trains one, a few minutes)")
    from mlbench.config import TrainConfig
    from mlbench.training import runner

    say(f"no cached {name} {size} model: training one first (mlbench train {name} --size {size} --seed 0)")
    cfg = TrainConfig(benchmark=name, size=size, device="cpu", seed=0, data_dir=data_dir,
                      output_dir=str(download.cache_dir("models", "training-runs")))
    result = runner.execute(cfg, say_prefix="  [train] ")
    run_dir = Path(result["config"].get("run_dir") or Path(cfg.output_dir) / result["run_id"])
    ckpt = run_dir / "run_1" / "checkpoint.pt"
    if not ckpt.is_file():
        raise MlbenchError(f"training did not write a checkpoint ({ckpt})", f"see {run_dir}/console.log")
    if result["status"] != "success":
        say(f"warning: the trained model did not reach its training target ({result['quality']})")
    workload = registry.get(name, size).workload()
    workload.export_hf(ckpt, dest, data_dir=data_dir)
    (dest / "mlbench.json").write_text(json.dumps({"trained_by": result["run_id"], "quality": result["quality"],
                                                   "run_dir": str(run_dir)}, indent=1) + "\n")
    say(f"model directory cached at {dest}")
    return dest
