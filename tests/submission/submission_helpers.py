"""Helpers for the packaging tests: a user's system fields, copies of run directories to alter."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

TRAINING_USER_FIELDS = {
    "status": "Research, Development, or Internal (RDI)", "host_processor_frequency": "2.0 GHz",
    "host_processor_caches": "L2 1 MiB", "host_processor_interconnect": "N/A", "host_storage_type": "SSD",
    "host_storage_capacity": "100 GB", "host_networking_topology": "N/A", "host_memory_configuration": "N/A",
    "cooling": "air",
}


def user_json(path: Path, **extra) -> Path:
    path.write_text(json.dumps({**TRAINING_USER_FIELDS, **extra}))
    return path


def copy_run_dir(src: Path, dest: Path, keep: list[int] | None = None) -> Path:
    """A copy of a training run directory without checkpoints; ``keep``: only these runs (renumbered 1..)."""
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("checkpoint.pt"))
    if keep is not None:
        result = json.loads((dest / "result.json").read_text())
        runs = [r for r in result["runs"] if r["run"] in keep]
        for old in sorted(dest.glob("run_*")):
            old.rename(dest / f"old_{old.name}")
        for new, r in enumerate(runs, 1):
            (dest / f"old_run_{r['run']}").rename(dest / f"run_{new}")
            rec = json.loads((dest / f"run_{new}" / "result.json").read_text())
            rec["run"] = r["run"] = new
            (dest / f"run_{new}" / "result.json").write_text(json.dumps(rec))
        for old in dest.glob("old_run_*"):
            shutil.rmtree(old)
        result["runs"] = runs
        (dest / "result.json").write_text(json.dumps(result))
    return dest


def edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))
