"""Issue 10, points 1-3: untrusted files never run code, downloaded names stay inside the root, and the
generated sbatch script cannot be injected."""

from __future__ import annotations

from pathlib import Path

import pytest
from catalogue import Case, check

from support import FileServer

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


# ---------------------------------------------------------------- point 3: the sbatch script

HOSTILE = ["$(touch pwned)", "`touch pwned`", "x; touch pwned", "a && touch pwned #", "it's \"quoted\"",
           "sp  ace", "$HOME", "back\\slash", "100%j", "--partition=evil"]

_STUB = """#!/bin/bash
# A stand-in for {name}: records its arguments, NUL-separated, one call per file.
n=$(ls "$STUB_LOG" | wc -l)
printf '%s\\0' "$@" > "$STUB_LOG/$n.{name}"
{body}
"""
_STUBS = {
    "srun": "exit 0",
    "scontrol": 'if [ "$2" = hostnames ]; then echo node1; else echo "NodeName=node1 NodeAddr=10.0.0.9 State=IDLE"; fi',
    # "$PYTHON -m mlbench.slurm.multirun finished DIR" says "not finished"; combine succeeds.
    "python": '[ "$3" = finished ] && exit 1; exit 0',
}


def _stand_ins(tmp: Path, python_dir: Path) -> dict[str, str]:
    import os

    (tmp / "bin").mkdir()
    python_dir.mkdir(parents=True)
    for name, body in _STUBS.items():
        path = (python_dir if name == "python" else tmp / "bin") / name
        path.write_text(_STUB.format(name=name, body=body))
        path.chmod(0o755)
    (tmp / "log").mkdir()
    return {"PATH": f"{tmp / 'bin'}:/usr/bin:/bin", "STUB_LOG": str(tmp / "log"), "HOME": str(tmp / "home"),
            "SLURM_JOB_ID": "4242", "SLURM_JOB_NODELIST": "node1", "SLURM_NNODES": "1",
            "LANG": os.environ.get("LANG", "C.UTF-8")}


def _calls(tmp: Path, name: str) -> list[list[str]]:
    files = sorted((tmp / "log").glob(f"*.{name}"), key=lambda p: int(p.name.split(".")[0]))
    return [f.read_bytes().decode().split("\0")[:-1] for f in files]


def sbatch_options(script: str) -> list[str]:
    """The options sbatch reads from the #SBATCH lines: words split at blanks, single or double quotes
    around blanks, a backslash before any character, an unquoted '#' ends the line (as sbatch's opt.c)."""
    args = []
    for line in script.splitlines():
        if not line.startswith("#SBATCH"):
            continue
        rest, i = line[len("#SBATCH"):], 0
        while i < len(rest):
            while i < len(rest) and rest[i].isspace():
                i += 1
            word, quote, started = "", None, False
            while i < len(rest) and (quote or not rest[i].isspace()):
                c = rest[i]
                if c == "\\" and i + 1 < len(rest):
                    word, i, started = word + rest[i + 1], i + 2, True
                    continue
                if quote:
                    if c == quote:
                        quote = None
                    else:
                        word += c
                elif c in "\"'":
                    quote, started = c, True
                elif c == "#":
                    i = len(rest)
                    break
                else:
                    word += c
                started = True
                i += 1
            assert quote is None, f"unmatched quote in {line!r}"
            if started:
                args.append(word)
    return args


@pytest.mark.parametrize("runs, requeue", [(1, False), (2, True)], ids=["one-run", "run-by-run"])
def test_sbatch_script_carries_hostile_values_intact(tmp_path, runs, requeue):
    """Run the generated script with bash and stand-in srun/scontrol/python: no injected command runs, every
    value arrives as it was given, and sbatch reads the #SBATCH lines as written."""
    import subprocess

    from mlbench.config import TrainConfig
    from mlbench.slurm import jobs
    from mlbench.slurm.script import SlurmConfig

    hostile = " ".join(HOSTILE)
    run_dir = tmp_path / "runs" / f"run {hostile}"
    python = tmp_path / f"env {hostile}" / "bin" / "python"
    env = _stand_ins(tmp_path, python.parent)
    train = TrainConfig(benchmark="resnet50", size="tiny", output_dir=str(tmp_path / "runs"), run_dir=str(run_dir),
                        runs=runs, seed=5)
    slurm = SlurmConfig(nodes=1, requeue=requeue, python=str(python))
    command = f"mlbench slurm submit resnet50 --run-dir {run_dir}"
    run_dir_out, text = jobs.prepare(train, slurm, command)
    assert run_dir_out == run_dir
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.run(["bash", str(run_dir / "job.sbatch")], cwd=work, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not [p for p in tmp_path.rglob("pwned")], "an injected command ran"
    assert not (tmp_path / "home").exists()

    (srun,) = _calls(tmp_path, "srun")
    assert srun[srun.index("--kill-on-bad-exit=1") + 1] == str(python)
    assert srun[srun.index("--config") + 1] == str(run_dir / "submit_config.json")
    assert srun[srun.index("--rdzv-endpoint") + 1] == "10.0.0.9:" + str(29500 + 4242 % 1000)
    if requeue:
        assert srun[srun.index("--run-dir") + 1] == str(run_dir / "run_1")
        finished = [c for c in _calls(tmp_path, "python") if c[2] == "finished"]
        assert finished[0] == ["-m", "mlbench.slurm.multirun", "finished", str(run_dir / "run_1")]

    options = sbatch_options(text)
    assert f"--output={run_dir}/slurm-%j.out".replace("100%j", "100%%j") in options
    assert "--partition=evil" not in options and len([o for o in options if o.startswith("--output")]) == 1


@pytest.mark.parametrize("field", ["run_dir", "python", "command", "partition", "account", "size"])
@pytest.mark.parametrize("bad", ["x\ntouch pwned", "x\rtouch pwned", "x\x1b[2J", "x\ttab"],
                         ids=["newline", "carriage-return", "escape", "tab"])
def test_sbatch_script_refuses_control_characters(tmp_path, field, bad):
    import subprocess

    from mlbench.config import TrainConfig
    from mlbench.errors import ConfigError
    from mlbench.slurm import jobs
    from mlbench.slurm.script import SlurmConfig, render

    train = TrainConfig(benchmark="resnet50", size="tiny", output_dir=str(tmp_path / "runs"), seed=5)
    slurm = SlurmConfig(nodes=1)
    command = "mlbench slurm submit resnet50"
    run_dir = tmp_path / "runs" / "job"
    if field == "run_dir":
        run_dir = tmp_path / "runs" / bad
    elif field == "python":
        slurm = SlurmConfig(nodes=1, python=bad)
    elif field == "command":
        command += f" --submission-org {bad}"
    elif field == "size":
        train = TrainConfig(benchmark="resnet50", size=bad, output_dir=str(tmp_path / "runs"), seed=5)
    else:
        slurm = SlurmConfig(nodes=1, **{field: bad})
    with pytest.raises(ConfigError, match="control character") as err:
        text = render(slurm, train, run_dir, run_dir / "submit_config.json", command)
        # Reached only when not refused: show what the line would have done.
        (tmp_path / "job.sbatch").write_text(text)
        subprocess.run(["bash", "-n", str(tmp_path / "job.sbatch")], cwd=tmp_path, capture_output=True)
    assert "\n" not in err.value.message and err.value.hint
    if field == "run_dir":  # through jobs.prepare: nothing written
        with pytest.raises(ConfigError):
            jobs.prepare(train.__class__(benchmark="resnet50", size="tiny", run_dir=str(run_dir), seed=5), slurm,
                         command)
        assert not run_dir.exists()


def _slurm_stub_path(tmp: Path) -> None:
    (tmp / "bin").mkdir(exist_ok=True)
    for name in ("sbatch", "squeue", "scontrol"):
        (tmp / "bin" / name).write_text("#!/bin/sh\necho 1234\n")
        (tmp / "bin" / name).chmod(0o755)


SUBMIT = ("slurm", "submit", "resnet50", "--size", "tiny", "--dry-run")
SLURM_CASES = [
    Case("slurm-output-dir-newline", (*SUBMIT, "--output-dir", "{tmp}/runs\ntouch pwned"), 2,
         "holds the control character '\\n'"),
    Case("slurm-run-dir-newline", (*SUBMIT, "--run-dir", "{tmp}/job\ntouch pwned #"), 2,
         "invalid value for 'run_dir'"),
    Case("slurm-python-newline", (*SUBMIT, "--output-dir", "{tmp}/runs", "--python", "python\ntouch pwned"), 2,
         "holds the control character"),
    Case("slurm-org-newline", (*SUBMIT, "--output-dir", "{tmp}/runs", "--submission-org", "acme\ntouch pwned"), 2,
         "invalid value for the command line"),
    Case("slurm-run-dir-escape", (*SUBMIT, "--run-dir", "{tmp}/job\x1b]0;title\x07"), 2,
         "holds the control character '\\x1b'"),
    Case("scale-output-dir-newline", ("scale", "resnet50", "--size", "tiny", "--nproc", "1", "--slurm",
                                      "--output-dir", "{tmp}/runs\ntouch pwned"), 2, "holds the control character",
         env={"PATH": "{tmp}/bin:/usr/bin:/bin"}),
]


@pytest.mark.parametrize("case", SLURM_CASES, ids=lambda c: c.id)
def test_sbatch_values_with_control_characters_are_refused(case, tmp_path):
    _slurm_stub_path(tmp_path)
    env = {k: v.replace("{tmp}", str(tmp_path)) for k, v in case.env.items()}
    check(Case(case.id, case.args, case.exit_code, case.error, case.setup, env), tmp_path)
    assert not list(tmp_path.rglob("job.sbatch")) and not list(tmp_path.rglob("pwned"))


# ---------------------------------------------------------------- point 2: names from downloaded data

OI_CLASSES = "/m/014j1m,Apple\n/m/01yrx,Cat\n"
OI_HEADER = ("ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated,IsGroupOf,"
             "IsDepiction,IsInside\n")


def _jpeg(path: Path, size=(48, 32)) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.effect_noise(size, 40).convert("RGB").save(path, format="JPEG", quality=90)


def _openimages(www: Path, ids: list[str]) -> None:
    """The class file, a box file naming ``ids`` (quoted as CSV needs) and an image for each plain one."""
    import csv
    import io

    (www / "v5").mkdir(parents=True, exist_ok=True)
    (www / "v5" / "class-descriptions-boxable.csv").write_text(OI_CLASSES)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for n, i in enumerate(ids):
        writer.writerow([i, "xclick", "/m/014j1m" if n % 2 == 0 else "/m/01yrx", 1, 0.1, 0.5, 0.2, 0.6, 0, 0, 0, 0, 0])
    (www / "v5" / "validation-annotations-bbox.csv").write_text(OI_HEADER + out.getvalue())
    for i in ids:
        # What a server that normalises paths (as http.server does) would answer for the ID.
        served = [w for w in f"img/validation/{i}.jpg".split("/") if w not in ("", ".", "..")]
        if all(c.isalnum() or c in "._-/" for c in i):
            _jpeg(www.joinpath(*served))


@pytest.fixture
def oi_server(tmp_path):
    (tmp_path / "www").mkdir()
    server = FileServer(tmp_path / "www")
    yield server
    server.close()


def _prepare_args(server: FileServer, root: str) -> tuple[str, ...]:
    return ("data", "prepare", "retinanet", "--root", root, "--split", "validation", "--annotations-url",
            server.base, "--images-url", server.base + "img/", "--classes", "Apple,Cat", "--workers", "2",
            "--retries", "1")


BAD_IDS = [  # id, what the error says, a path (relative to tmp) that must not appear
    ("prepare-id-dotdot", "../../../escaped", "line 3: image id '../../../escaped' is not a plain file name ('..')",
     "escaped.jpg"),
    ("prepare-id-absolute", "{tmp}/outside/abs", "is not a plain file name (an absolute path)", "outside/abs.jpg"),
    ("prepare-id-separator", "sub/dir", "is not a plain file name (a path separator)", "oi/validation/data/sub"),
    ("prepare-id-space", "a b", "is not a plain file name (a space)", "oi/validation/data/a b.jpg"),
    ("prepare-id-control", "a\x1bb", "is not a plain file name (a control character)", "oi/validation/data"),
    ("prepare-id-newline", "a\nb", "is not a plain file name (a control character)", "oi/validation/data"),
    ("prepare-id-empty", "", "is not a plain file name (empty)", "oi/validation/data/.jpg"),
]


@pytest.mark.parametrize("case_id, image_id, error, outside", BAD_IDS, ids=[b[0] for b in BAD_IDS])
def test_prepare_refuses_image_ids_that_are_not_plain_names(oi_server, tmp_path, case_id, image_id, error, outside):
    image_id = image_id.replace("{tmp}", str(tmp_path))
    _openimages(tmp_path / "www", ["000a1b2c3d4e5f6a", image_id])
    check(Case(case_id, _prepare_args(oi_server, "{tmp}/oi"), 1, error), tmp_path)
    assert not (tmp_path / outside.replace("{tmp}", "")).exists(), f"{case_id}: written outside the data folder"
    assert not any("escaped" in r or "abs.jpg" in r for r in oi_server.requests)  # nothing fetched for it
    assert not (tmp_path / "oi" / "validation" / "labels").exists()


def test_files_already_under_their_final_name_are_verified(oi_server, tmp_path, capsys):
    from mlbench.cli import main

    ids = ["000a", "000b", "000c"]
    _openimages(tmp_path / "www", ids)
    root = tmp_path / "oi"
    args = list(_prepare_args(oi_server, str(root)))
    assert main(args) == 0
    data = root / "validation" / "data"
    csv_file = root / "annotations" / "validation-annotations-bbox.csv"
    # Left behind by a copy that was cut short, a disk that filled up, or a hand that put a file there:
    jpeg = (data / "000a.jpg").read_bytes()
    (data / "000a.jpg").write_bytes(jpeg[: len(jpeg) // 2])  # a truncated image
    (data / "000b.jpg").write_text("<html>Access denied</html>")  # an error page under an image's name
    full_csv = csv_file.read_text()
    csv_file.write_text(full_csv[: full_csv.rindex("\n", 0, len(full_csv) - 1) + 5])  # the last row cut short
    oi_server.requests.clear()
    assert main(args) == 0, capsys.readouterr().err
    fetched = {r.rsplit("/", 1)[-1] for r in oi_server.requests}
    assert {"000a.jpg", "000b.jpg", "validation-annotations-bbox.csv"} <= fetched
    assert "000c.jpg" not in fetched  # a complete file counts as done
    from PIL import Image

    for i in ids:
        with Image.open(data / f"{i}.jpg") as im:
            im.load()
    assert csv_file.read_text() == full_csv
    import json

    coco = json.loads((root / "validation" / "labels" / "openimages-mlperf.json").read_text())
    assert [im["file_name"] for im in coco["images"]] == [f"{i}.jpg" for i in ids]


def test_a_planted_link_is_never_written_through(oi_server, tmp_path):
    from mlbench.cli import main

    _openimages(tmp_path / "www", ["000a"])
    root = tmp_path / "oi"
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    from mlbench.data import folders

    folders.claim(root, "OpenImages-MLPerf")  # the link is planted in a folder of an earlier, interrupted prepare
    (root / "validation" / "data").mkdir(parents=True)
    (root / "validation" / "data" / "000a.jpg.part").symlink_to(victim)
    assert main(list(_prepare_args(oi_server, str(root)))) == 0
    assert victim.read_text() == "keep me"
