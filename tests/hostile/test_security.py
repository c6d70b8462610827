"""Issue 10, points 1-3: untrusted files never run code, downloaded names stay inside the root, and the
generated sbatch script cannot be injected."""

from __future__ import annotations

from pathlib import Path

import pytest
from catalogue import Case, check

MARKER = "PWNED"  # what a malicious pickle would create in the test's folder


class _Evil:
    """Unpickling this runs code: it creates ``path``."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return exec, (f"open({self.path!r}, 'w').close()",)


def _plant_evil(path: Path, marker: Path, torch_format: bool = True) -> None:
    """A checkpoint-shaped file whose loading with weights_only=False would create ``marker``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if torch_format:
        import torch

        torch.save({"model": _Evil(marker), "optimizer": {}, "epoch": 1}, path)
    else:
        import pickle

        path.write_bytes(pickle.dumps({"model": _Evil(marker)}, protocol=2))


def _evil(name: str, torch_format: bool = True):
    def setup(tmp: Path) -> None:
        _plant_evil(tmp / name, tmp / MARKER, torch_format)
    return setup


def _text(name: str):
    def setup(tmp: Path) -> None:
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / name).write_text("this is not a checkpoint\n")
    return setup


def _truncated(name: str):
    def setup(tmp: Path) -> None:
        import torch

        full = tmp / "full.pt"
        torch.save({"model": {"w": torch.zeros(4096)}, "epoch": 1}, full)
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / name).write_bytes(full.read_bytes()[:3000])
        full.unlink()
    return setup


TRAIN = ("train", "resnet50", "--size", "tiny", "--output-dir", "{tmp}/runs")
INFER = ("infer", "resnet50", "--size", "tiny", "--quick", "--duration-s", "1", "--threads", "1",
         "--output-dir", "{tmp}/runs")
CACHE = {"MLBENCH_CACHE": "{tmp}/cache"}

FILE_CASES = [
    Case("resume-malicious-pickle", (*TRAIN, "--resume", "{tmp}/evil.pt"), 1, "is not a plain weights file",
         setup=_evil("evil.pt")),
    Case("resume-raw-pickle", (*TRAIN, "--resume", "{tmp}/evil.pkl"), 1, "is not a plain weights file",
         setup=_evil("evil.pkl", torch_format=False)),
    Case("resume-text-file", (*TRAIN, "--resume", "{tmp}/notes.pth"), 1, "is not a PyTorch weights file",
         setup=_text("notes.pth")),
    Case("resume-truncated", (*TRAIN, "--resume", "{tmp}/checkpoint.pt"), 1, "is truncated or corrupt",
         setup=_truncated("checkpoint.pt")),
    Case("resume-empty", (*TRAIN, "--resume", "{tmp}/checkpoint.pt"), 1, "is empty",
         setup=lambda tmp: (tmp / "checkpoint.pt").write_bytes(b"")),
    Case("weights-malicious-pickle", (*INFER, "--weights", "{tmp}/evil.pth"), 1, "is not a plain weights file",
         setup=_evil("evil.pth")),
    Case("weights-text-file", (*INFER, "--weights", "{tmp}/model.pth"), 1, "is not a PyTorch weights file",
         setup=_text("model.pth")),
    Case("weights-truncated", (*INFER, "--weights", "{tmp}/model.pth"), 1, "is truncated or corrupt",
         setup=_truncated("model.pth")),
    Case("retinanet-weights-malicious-pickle",
         ("infer", "retinanet", "--size", "tiny", "--quick", "--duration-s", "1", "--threads", "1",
          "--output-dir", "{tmp}/runs", "--weights", "{tmp}/evil.pth"), 1, "is not a plain weights file",
         setup=_evil("evil.pth")),
    Case("cached-model-malicious-pickle", INFER, 1, "is not a plain weights file",
         setup=_evil("cache/models/resnet50-tiny.pt"), env=CACHE),
]


@pytest.mark.parametrize("case", FILE_CASES, ids=lambda c: c.id)
def test_untrusted_files_never_run_code(case, tmp_path):
    env = {k: v.replace("{tmp}", str(tmp_path)) for k, v in case.env.items()}
    check(Case(case.id, case.args, case.exit_code, case.error, case.setup, env), tmp_path)
    assert not (tmp_path / MARKER).exists(), f"{case.id}: the pickle ran code"


def test_backbone_file_from_the_environment_never_runs_code(tmp_path, monkeypatch):
    from mlbench.benchmarks.retinanet import model
    from mlbench.errors import DataError

    _plant_evil(tmp_path / "backbone.pth", tmp_path / MARKER)
    monkeypatch.setenv(model.BACKBONE_ENV, str(tmp_path / "backbone.pth"))
    with pytest.raises(DataError, match="is not a plain weights file"):
        model.backbone_state()
    assert not (tmp_path / MARKER).exists()


def test_checkpoint_holds_only_what_weights_only_reads(tmp_path):
    """What resume needs beyond tensors (epoch, seed, numpy RNG state, scheduler step) is stored in plain
    form, so the file loads with weights_only=True and resumes exactly."""
    import numpy as np
    import torch

    from mlbench.training import checkpoint

    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    rng = np.random.RandomState(7).get_state()
    path = tmp_path / "checkpoint.pt"
    checkpoint.save(path, model=model, optimizer=opt, scheduler=None, epoch=np.int64(3),
                    extra={"seed": np.int64(11), "numpy_rng": rng, "lr": np.float32(0.5)})
    raw = torch.load(path, map_location="cpu", weights_only=True)  # no Python object but plain ones
    assert raw["epoch"] == 3 and raw["extra"]["seed"] == 11
    again = np.random.RandomState()
    again.set_state(tuple(x.numpy() if isinstance(x, torch.Tensor) else x for x in raw["extra"]["numpy_rng"]))
    assert again.randint(0, 2**31) == np.random.RandomState(7).randint(0, 2**31)

    model2 = torch.nn.Linear(3, 2)
    opt2 = torch.optim.SGD(model2.parameters(), lr=0.1, momentum=0.9)
    state = checkpoint.load(path, model=model2, optimizer=opt2, scheduler=None)
    assert state["epoch"] == 3 and state["extra"]["seed"] == 11
    assert torch.equal(model2.weight, model.weight)
    assert torch.equal(opt2.state_dict()["state"][0]["momentum_buffer"], opt.state_dict()["state"][0]["momentum_buffer"])


def test_checkpoint_refuses_to_save_objects_it_could_not_read_back(tmp_path):
    import torch

    from mlbench.training import checkpoint

    model = torch.nn.Linear(2, 2)
    with pytest.raises(TypeError, match="tensors and plain values only"):
        checkpoint.save(tmp_path / "c.pt", model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                        scheduler=None, epoch=1, extra={"callback": object()})
    assert not (tmp_path / "c.pt").exists()
