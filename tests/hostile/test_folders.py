"""Issue 32: mlbench never deletes, overwrites or writes into a folder it did not make. A prepare or a generation
aimed at a folder holding the user's files (or at a file) is refused before anything is written, and every
file of the user's is left exactly as it was (``Case.keep``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from catalogue import Case, check

from mlbench.data import folders
from mlbench.errors import DataError


def _user_folder(name: str = "mine", files: dict[str, str] | None = None):
    def setup(tmp: Path) -> None:
        d = tmp / name
        d.mkdir()
        for rel, text in (files or {"thesis.txt": "years of work\n"}).items():
            (d / rel).parent.mkdir(parents=True, exist_ok=True)
            (d / rel).write_text(text)
    return setup


def _a_file(tmp: Path) -> None:
    (tmp / "mine").write_text("not a folder\n")


NOWHERE = "http://127.0.0.1:9/"  # nothing listens: a prepare that got as far as downloading would fail there
OWN_MANIFESTS = {"librispeech-dev-wav.json": json.dumps([{"transcript": "mine", "files": []}]),
                 "librispeech-dev-clean-wav.json": "[]\n"}

CASES = [
    Case("bert-prepare-into-user-folder", ("data", "prepare", "bert", "--size", "tiny", "--root", "{tmp}/mine"), 1,
         "already holds files mlbench did not make (thesis.txt)", setup=_user_folder(), keep=("mine",)),
    Case("bert-prepare-root-is-a-file", ("data", "prepare", "bert", "--size", "tiny", "--root", "{tmp}/mine"), 1,
         "is a file, not a folder", setup=_a_file, keep=("mine",)),
    Case("bert-prepare-into-user-folder-with-a-manifest",
         ("data", "prepare", "bert", "--size", "tiny", "--root", "{tmp}/mine"), 1,
         "is not the manifest of bert data mlbench generated",
         setup=_user_folder(files={"manifest.json": '{"mine": true}'}), keep=("mine",)),
    Case("rnnt-prepare-into-user-folder", ("data", "prepare", "rnnt", "--root", "{tmp}/mine", "--splits", "dev-clean",
                                           "--base-url", NOWHERE), 1,
         "already holds files mlbench did not make", setup=_user_folder(), keep=("mine",)),
    Case("retinanet-prepare-into-user-folder", ("data", "prepare", "retinanet", "--root", "{tmp}/mine",
                                                "--annotations-url", NOWHERE, "--retries", "1"), 1,
         "already holds files mlbench did not make", setup=_user_folder(), keep=("mine",)),
    Case("retinanet-prepare-root-is-a-file", ("data", "prepare", "retinanet", "--root", "{tmp}/mine",
                                              "--annotations-url", NOWHERE, "--retries", "1"), 1,
         "is a file, not a folder", setup=_a_file, keep=("mine",)),
    # the user's own manifests (LibriSpeech names, a dev manifest without its train one) are not tiny data:
    # mlbench used to generate its tones into the folder, overwrite the dev manifest and train on them
    Case("rnnt-train-generates-into-user-manifests",
         ("train", "rnnt", "--size", "tiny", "--data-dir", "{tmp}/mine", "--device", "cpu", "--output-dir",
          "{tmp}/runs"), 1, "already holds files mlbench did not make", setup=_user_folder(files=OWN_MANIFESTS),
         keep=("mine",)),
    Case("train-data-dir-is-a-file", ("train", "dlrm", "--size", "tiny", "--data-dir", "{tmp}/mine",
                                      "--output-dir", "{tmp}/runs"), 2, "it is a file, not a folder",
         setup=_a_file, keep=("mine",)),
    Case("infer-data-dir-is-a-file", ("infer", "maskrcnn", "--size", "tiny", "--data-dir", "{tmp}/mine",
                                      "--output-dir", "{tmp}/runs"), 2, "it is a file, not a folder",
         setup=_a_file, keep=("mine",)),
    # a failed prepare into an empty folder leaves it empty (the marker it wrote is taken back)
    Case("rnnt-prepare-fails-in-an-empty-folder", ("data", "prepare", "rnnt", "--root", "{tmp}/mine", "--splits",
                                                   "dev-clean", "--base-url", NOWHERE, "--retries", "1"), 1,
         "cannot download", setup=lambda tmp: (tmp / "mine").mkdir()),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_user_folders_are_left_alone(case: Case, tmp_path: Path) -> None:
    check(case, tmp_path)
    if case.id == "rnnt-prepare-fails-in-an-empty-folder":
        assert list((tmp_path / "mine").iterdir()) == []


def test_claim_marks_what_it_makes_and_refuses_what_it_did_not(tmp_path):
    new = tmp_path / "new" / "data"
    assert folders.claim(new, "the data") is True and (new / folders.MARKER).is_file()
    assert folders.claim(new, "the data") is False  # made by mlbench: written into again
    (new / "part.bin").write_text("mlbench's own")
    folders.claim(new, "the data")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert folders.claim(empty, "the data") is False and folders.is_ours(empty)
    user = tmp_path / "user"
    user.mkdir()
    (user / "a.txt").write_text("x")
    with pytest.raises(DataError, match=r"already holds files mlbench did not make \(a.txt\)"):
        folders.claim(user, "the data")
    assert sorted(p.name for p in user.iterdir()) == ["a.txt"]


def test_replace_dir_never_deletes_a_folder_mlbench_did_not_make(tmp_path):
    tmp, dest = tmp_path / "tmp", tmp_path / "dest"
    tmp.mkdir()
    dest.mkdir()
    (dest / "mine.txt").write_text("x")
    with pytest.raises(DataError, match="was not made by mlbench"):
        folders.replace_dir(tmp, dest)
    assert (dest / "mine.txt").is_file() and tmp.is_dir()
    folders.claim(tmp_path / "ours", "x")
    (tmp_path / "ours" / "old").write_text("old")
    folders.replace_dir(tmp, tmp_path / "ours")
    assert not tmp.exists() and not (tmp_path / "ours" / "old").exists()


def test_a_failed_write_takes_back_its_claim(tmp_path):
    for name, make in (("fresh", False), ("empty", True)):
        root = tmp_path / name
        if make:
            root.mkdir()
        with pytest.raises(DataError, match="boom"), folders.writing(root, "x"):
            raise DataError("boom")
        assert (root.exists() and not list(root.iterdir())) if make else not root.exists()


def test_bert_prepare_rebuilds_only_its_own_folder(tmp_path):
    from mlbench import registry
    from mlbench.benchmarks.bert import pretrain_data

    bench = registry.get("bert", "tiny").definition
    root = pretrain_data.ensure_data(bench, tmp_path / "bert")
    assert folders.is_ours(root) and pretrain_data.is_complete(root)
    (root / "manifest.json").unlink()  # incomplete: built again, in place
    assert pretrain_data.ensure_data(bench, root) == root and pretrain_data.is_complete(root)
    assert not list(root.glob(".building-*"))
