"""Data-parallel helpers: torchrun's environment, sharding, metric reduction, and launching torchrun.

A process started by torchrun (WORLD_SIZE > 1) joins the process group (NCCL on CUDA, gloo on CPU) with a
bounded collective timeout, so a dead or hung rank fails the job instead of hanging it.
"""

from __future__ import annotations

import datetime
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def env_info() -> DistInfo:
    """Rank and world size as torchrun (or srun via torchrun) sets them."""
    return DistInfo(
        rank=int(os.environ.get("RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
    )


def init(device: torch.device, timeout_s: int = 600) -> DistInfo:
    """Join the process group when started under torchrun; a no-op for one process."""
    info = env_info()
    if info.enabled and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
    return info


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum a few scalars across ranks (one collective)."""
    if not dist.is_initialized():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def broadcast_int(value: int, device: torch.device) -> int:
    """Rank 0's ``value`` on every rank."""
    if not dist.is_initialized():
        return value
    t = torch.tensor([value], dtype=torch.int64, device=device)
    dist.broadcast(t, src=0)
    return int(t.item())


def params_in_sync(model: torch.nn.Module) -> bool:
    """True when every rank holds the same parameters: a per-tensor (sum, abs-sum) digest, compared exactly."""
    if not dist.is_initialized():
        return True
    digest = torch.stack([torch.stack([p.detach().double().sum(), p.detach().double().abs().sum()])
                          for p in model.parameters()]).reshape(-1)
    gathered = [torch.empty_like(digest) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, digest)
    return all(torch.equal(g, gathered[0]) for g in gathered[1:])


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def torchrun_command(nproc: int, args: list[str], nnodes: int = 1, rdzv_endpoint: str | None = None,
                     rdzv_id: str = "mlbench", node_rank: int | None = None) -> list[str]:
    """The torchrun command line that runs ``mlbench <args>`` in ``nproc`` processes per node."""
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}"]
    if nnodes == 1 and not rdzv_endpoint:
        cmd.append("--standalone")
    else:
        cmd += [f"--nnodes={nnodes}", "--rdzv-backend=c10d", f"--rdzv-endpoint={rdzv_endpoint}",
                f"--rdzv-id={rdzv_id}"]
        if node_rank is not None:
            cmd.append(f"--node-rank={node_rank}")
    return cmd + ["-m", "mlbench", *args]


def launch(nproc: int, args: list[str], **kwargs) -> int:
    """Run ``mlbench <args>`` under torchrun and return its exit code."""
    cmd = torchrun_command(nproc, args, **kwargs)
    env = dict(os.environ)
    # One process per core on CPU: keep each rank's intra-op threads from oversubscribing the machine.
    if "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc))
    if shutil.which(sys.executable) is None:  # pragma: no cover - defensive
        raise RuntimeError("python interpreter not found")
    return subprocess.call(cmd, env=env)
