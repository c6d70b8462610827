"""Two "nodes" started by hand on this machine: `mlbench train --nnodes 2 --node-rank K --rdzv-endpoint`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_two_nodes_by_hand_with_fixed_node_ranks(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MLBENCH_SKIP_CACHE_CLEAR": "1"}
    run_dir = tmp_path / "shared" / "run"

    def node(rank: int) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "mlbench", "train", "resnet50", "--size", "tiny", "--nnodes", "2",
             "--node-rank", str(rank), "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "byhand",
             "--run-dir", str(run_dir), "--seed", "8"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    nodes = [node(1), node(0)]
    try:
        outs = [p.communicate(timeout=150)[0] for p in nodes]
    finally:
        for p in nodes:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in nodes] == [0, 0], outs
    # Node 0 hosts rank 0: it prints the summary, node 1 prints only its start line.
    assert "result: resnet50 tiny: success" in outs[1] and "result:" not in outs[0]
    result = json.loads((run_dir / "result.json").read_text())
    assert result["world_size"] == 2 and result["runs"][0]["metrics"]["dist/params_in_sync"] is True
    assert sorted(p.name for p in run_dir.glob("launch_config.node*.json")) == [
        "launch_config.node0.json", "launch_config.node1.json"]
