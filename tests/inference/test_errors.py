"""Bad input: a clear error naming the problem and the fix, a non-zero exit, nothing recorded as valid."""

from __future__ import annotations

import json

import pytest
import torch
from infer_support import QUICK


def test_unknown_names_exit_2(infer, capsys):
    code, _, out = infer(*QUICK, "--set", "scenario=Ofline")
    assert code == 2 and "invalid value for 'scenario'" in out and "Offline" in out
    code, _, out = infer(*QUICK, "--set", "backend=tensorrt")
    assert code == 2 and "backend" in out
    from mlbench.cli import main

    assert main(["infer", "resnet5", "--size", "tiny"]) == 2
    assert "did you mean 'resnet50'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["infer", "resnet50", "--scenario", "Foo"])
    assert exc.value.code == 2


def test_missing_dataset(infer):
    code, r, out = infer("--size", "reference", "--backend", "null", "--quick")
    assert code == 1
    assert "needs the ImageNet validation set" in out and "--data-dir" in out
    assert r["status"] == "failed" and r["valid"] is False


def make_val(root, n=6, corrupt=None):
    from PIL import Image

    val = root / "val"
    val.mkdir(parents=True)
    lines = []
    for i in range(n):
        Image.new("RGB", (80, 60), (i * 40 % 255, 90, 200)).save(val / f"img{i}.JPEG", format="JPEG")
        lines.append(f"img{i}.JPEG {i % 3}")
    if corrupt is not None:
        (val / f"img{corrupt}.JPEG").write_bytes(b"\xff\xd8 not a jpeg")
    (val / "val_map.txt").write_text("\n".join(lines) + "\n")
    return root


def test_corrupt_image(infer, tmp_path):
    data = make_val(tmp_path / "imagenet", corrupt=2)
    code, r, out = infer("--size", "reference", "--backend", "null", "--quick", "--duration-s", "0.5",
                         "--data-dir", str(data), "--batch-size", "8")
    assert code == 1
    assert "corrupt or unreadable image" in out and "img2.JPEG" in out
    assert r["status"] == "failed"


def test_weights_that_do_not_fit(infer, tmp_path):
    bad = tmp_path / "bad.pt"
    torch.save({"model": {"fc.weight": torch.zeros(3, 3)}}, bad)
    code, r, out = infer(*QUICK, "--weights", str(bad))
    assert code == 2 and "do not fit ResNet-50 tiny" in out and "\n" not in out.split("do not fit")[1].split("fix:")[0].strip()
    code, r, out = infer(*QUICK, "--weights", str(tmp_path / "missing.pt"))
    assert code == 1 and "weights file not found" in out


def test_missing_user_conf(infer, tmp_path):
    code, r, out = infer(*QUICK, "--backend", "null", "--user-conf", str(tmp_path / "nope.conf"))
    assert code == 2 and "user.conf not found" in out


def test_reference_offline_without_weights(infer, tmp_path):
    data = make_val(tmp_path / "imagenet")
    code, r, out = infer("--size", "reference", "--quick", "--offline", "--data-dir", str(data))
    assert code == 1 and "--offline forbids the download" in out and "--weights" in out
    result = json.loads((tmp_path / "runs").glob("*/result.json").__next__().read_text())
    assert result["valid"] is False
