"""Hostile environment: an optional package (an extra of pyproject.toml) is not installed. The run says which
package and how to install it, exits non-zero, and records nothing valid, where it printed a traceback before."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from catalogue import Case, check

from mlbench import errors
from support import ROOT


def _blocked(*modules: str):
    """A setup that makes ``import MODULE`` fail in the run, as on a machine without that package."""
    def setup(tmp: Path) -> None:
        for module in modules:
            (tmp / "blocked" / module).mkdir(parents=True)
            (tmp / "blocked" / module / "__init__.py").write_text(
                f"raise ModuleNotFoundError(\"No module named '{module}'\", name={module!r})\n")
    return setup


def _env(tmp_cache: str) -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join(["{tmp}/blocked", os.environ.get("PYTHONPATH", "")]),
            "MLBENCH_CACHE": tmp_cache}


CASES = [
    # the generated data is written with pycocotools' RLE masks: in a fresh cache, generation fails first
    Case("maskrcnn-no-pycocotools", ("train", "maskrcnn", "--size", "tiny", "--output-dir", "{tmp}/runs"), 1,
         "the Python package pycocotools is not installed", _blocked("pycocotools"), _env("{tmp}/cache")),
    Case("bert-no-h5py", ("train", "bert", "--size", "tiny", "--output-dir", "{tmp}/runs"), 1,
         "pip install h5py (or mlbench's 'language' extra", _blocked("h5py"), _env("{tmp}/cache")),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_missing_optional_package(case, tmp_path):
    env = {k: v.replace("{tmp}", str(tmp_path)) for k, v in case.env.items()}
    check(Case(case.id, case.args, case.exit_code, case.error, case.setup, env), tmp_path)


def test_every_optional_package_is_in_its_extra():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for module, (pip, extra) in errors.OPTIONAL_PACKAGES.items():
        names = [req.split(">")[0].split("<")[0].split("=")[0].strip() for req in extras[extra]]
        assert pip in names, f"{module}: {pip} is not in the {extra!r} extra {names}"


def test_a_loader_worker_error_is_explained_too():
    """torch's DataLoader re-raises a worker's error as ModuleNotFoundError(the traceback's text), nameless."""
    worker = ModuleNotFoundError("Caught ModuleNotFoundError in DataLoader worker process 0.\nOriginal Traceback"
                                 " (most recent call last):\n ...\nModuleNotFoundError: No module named "
                                 "'pycocotools.mask'\n")
    assert isinstance(errors.explain(worker), errors.MissingPackage)
    assert "pip install pycocotools" in str(errors.explain(worker))
    other = ModuleNotFoundError("No module named 'nothing_we_know'", name="nothing_we_know")
    assert errors.explain(other) is other  # a bug, not a missing extra: the traceback stays
    plain = ValueError("x")
    assert errors.explain(plain) is plain
