"""The CLI as a user meets it: help, listing, system description, and bad input."""

import json

from support import make_imagenet_tree, mlbench


def test_help_on_every_command():
    from mlbench.cli import COMMANDS

    assert mlbench("--help").returncode == 0
    for name in COMMANDS:
        p = mlbench(name, "--help")
        assert p.returncode == 0 and "usage: mlbench" in p.stdout, name


def test_list_json():
    p = mlbench("list", "--json")
    rows = json.loads(p.stdout)
    ref = [r for r in rows if r["benchmark"] == "resnet50" and r["size"] == "reference"][0]
    assert ref["target"] == 0.759 and ref["eval_every_epochs"] == 4 and ref["runs_required"] == 5
    assert "resnet50" in mlbench("list").stdout


def test_sysinfo_fields(tmp_path):
    p = mlbench("sysinfo", "-o", str(tmp_path / "s.json"))
    info = json.loads(p.stdout)
    for key in ("host_processor_model_name", "host_processor_core_count", "host_memory_capacity",
                "accelerators_per_node", "framework", "operating_system", "other_software_stack",
                "mlbench_version", "system_fingerprint"):
        assert key in info, key
    import socket

    assert socket.gethostname() not in p.stdout
    assert json.loads((tmp_path / "s.json").read_text())["system_fingerprint"] == info["system_fingerprint"]


def test_unknown_benchmark_exit_2():
    p = mlbench("train", "resnet5")
    assert p.returncode == 2 and "did you mean 'resnet50'" in p.stderr and "Traceback" not in p.stderr


def test_invalid_option_exit_2(tmp_path):
    p = mlbench("train", "resnet50", "--set", "batch_size=-3", "--output-dir", str(tmp_path))
    assert p.returncode == 2 and "'batch_size'" in p.stderr and "must be >= 1" in p.stderr
    assert not any(tmp_path.iterdir())  # nothing ran, nothing recorded


def test_missing_dataset(tmp_path):
    p = mlbench("train", "resnet50", "--size", "reference", "--output-dir", str(tmp_path / "r"))
    assert p.returncode == 1 and "needs ImageNet" in p.stderr and "--data-dir" in p.stderr
    p = mlbench("train", "resnet50", "--size", "mini", "--data-dir", str(tmp_path), "--output-dir",
                str(tmp_path / "r"))
    assert p.returncode == 1 and "Fashion-MNIST files missing" in p.stderr


def test_corrupt_image_fails_the_run(tmp_path):
    tree = make_imagenet_tree(tmp_path / "im", per_class_train=2, per_class_val=1)
    for f in (tree / "train").rglob("*.JPEG"):
        f.write_bytes(b"not a jpeg")
    out = tmp_path / "runs"
    p = mlbench("train", "resnet50", "--size", "reference", "--data-dir", str(tree), "--batch-size", "2",
                "--workers", "0", "--output-dir", str(out))
    assert p.returncode == 1 and "corrupt or unreadable image" in p.stderr and "Traceback" not in p.stderr
    run = next(p for p in out.iterdir() if p.is_dir())  # results.db lies beside the run
    result = json.loads((run / "result.json").read_text())
    assert result["status"] == "failed" and result["valid"] is False
    log = (run / "run_1" / "mlperf_log.txt").read_text()
    assert '"status": "aborted"' in log
