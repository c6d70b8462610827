"""Issue 32: data values are validated where they are read, with the file, the row and the fix in one line.

Well-formed files with values out of range (ids beyond the vocabulary or a table, positions beyond the sequence,
labels beyond their classes, NaN features, a truncated archive member, absurd durations, run-length masks
larger than their image, ``iscrowd: "0"``, file names leaving the data folder, empty shards, an unreadable
SentencePiece model) used to train on garbage, score garbage or end in a traceback. The command-line cases
check the whole path (exit code, one message, nothing valid recorded); the in-process ones cover the variants.
"""

from __future__ import annotations

import json
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from catalogue import Case, check

from mlbench.errors import DataError

TINY_DAY_ROWS = 512  # two training days of two 256-row batches, an evaluation day of 512


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> dict[str, Path]:
    """Tiny, valid data sets of the four benchmarks, made once; each case copies the one it spoils."""
    from mlbench import registry
    from mlbench.benchmarks.bert import pretrain_data
    from mlbench.benchmarks.dlrm import synthetic
    from mlbench.benchmarks.rnnt import synthetic as synth
    from mlbench.detection import synthetic as generate

    base = tmp_path_factory.mktemp("sets")
    pretrain_data.build(registry.get("bert", "tiny").definition, _mkdir(base / "bert"))
    hp = registry.get("dlrm", "tiny").definition.hparams
    truth = synthetic._truth(tuple(hp["table_rows"]), 5)
    for d in (0, 1, 2):
        dense, sparse, labels, _ = synthetic.generate_day(TINY_DAY_ROWS, tuple(hp["table_rows"]),
                                                          tuple(hp["multi_hot"]), truth, 5 + d)
        synthetic.write_day(_mkdir(base / "dlrm"), d, dense, sparse, labels)
    synth.generate(base / "rnnt", "tones", 16, 4, seed=0, say=lambda m: None)
    for split, n, seed in (("train", 8, 1), ("validation", 4, 2)):
        generate.write_split(base / "maskrcnn", split, n, 96, seed=seed, labels_file="shapes.json", masks=True)
    return {"bert": base / "bert", "dlrm": base / "dlrm", "rnnt": base / "rnnt", "maskrcnn": base / "maskrcnn"}


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def _copy(sets: dict[str, Path], name: str, tmp: Path) -> Path:
    return Path(shutil.copytree(sets[name], tmp / name))


# ---------------------------------------------------------------- edits of a copied set

def _shard(key: str, change, which: str = "training/part-00000-of-00004.hdf5"):
    def edit(root: Path) -> None:
        import h5py

        with h5py.File(root / "hdf5" / which, "r+") as f:
            value = change(f[key][...].astype(np.int64))
            del f[key]
            f.create_dataset(key, data=value)
    return edit


def _at(row: int, value: int, col: int = 1):
    def change(a: np.ndarray) -> np.ndarray:
        if a.ndim == 1:
            a[row] = value
        else:
            a[row, col] = value
        return a
    return change


def _empty_shards(root: Path) -> None:
    import h5py

    for path in (root / "hdf5" / "training").iterdir():
        with h5py.File(path, "r+") as f:
            for key in list(f.keys()):
                value = f[key][...][:0]
                del f[key]
                f.create_dataset(key, data=value)


def _nan_in_clicked_rows(root: Path, day: int = 2) -> None:
    labels = np.load(root / f"day_{day}_labels.npy").reshape(-1)
    dense = np.load(root / f"day_{day}_dense.npy")
    dense[labels > 0.5, 0] = np.nan  # what made the AUC 1.0000: every clicked row scored NaN, ranked first
    np.save(root / f"day_{day}_dense.npy", dense)


def _truncate_member(root: Path, day: int = 0, member: str = "25.npy") -> None:
    """Cut the archive inside the last member's rows, keeping a valid zip directory (a copy cut short in transit,
    then re-zipped by a tool that trusted the sizes)."""
    path = root / f"day_{day}_sparse_multi_hot.npz"
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    members[member] = members[member][: len(members[member]) // 2]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for n, data in members.items():
            zf.writestr(n, data)


def _manifest(change, split: str = "train"):
    def edit(root: Path) -> None:
        path = root / f"librispeech-{split}-wav.json"
        out = change(json.loads(path.read_text()))
        path.write_text(out if isinstance(out, str) else json.dumps(out))
    return edit


def _coco(change, split: str = "train"):
    def edit(root: Path) -> None:
        path = root / split / "labels" / "shapes.json"
        data = json.loads(path.read_text())
        change(data)
        path.write_text(json.dumps(data))
    return edit


def _first_annotation(**fields):
    return lambda data: data["annotations"][0].update(fields)


def _sentencepiece_garbage(root: Path) -> None:
    (root / "sentencepieces").mkdir()
    (root / "sentencepieces" / "librispeech1023.model").write_bytes(bytes(range(256)) * 2)
    for split in ("train-clean-100", "train-clean-360", "train-other-500", "dev-clean"):
        shutil.copy(root / "librispeech-dev-wav.json", root / f"librispeech-{split}-wav.json")


def _set(name: str, *edits):
    def setup(tmp: Path) -> None:
        root = _copy(_SETS, name, tmp)
        for edit in edits:
            edit(root)
    return setup


_SETS: dict[str, Path] = {}


@pytest.fixture(autouse=True)
def _sets_for_cases(sets):
    _SETS.update(sets)


def _train(bench: str, size: str = "tiny", *extra: str) -> tuple[str, ...]:
    return ("train", bench, "--size", size, "--data-dir", f"{{tmp}}/{bench}", "--device", "cpu",
            "--output-dir", "{tmp}/runs", *extra)


CASES = [
    Case("bert-token-id-beyond-the-vocabulary", _train("bert"), 1,
         "row 3: input_ids holds the token id 1000000, outside 0..",
         setup=_set("bert", *(_shard("input_ids", _at(3, 10**6), f"training/part-0000{k}-of-00004.hdf5")
                              for k in range(4)))),
    Case("bert-shards-with-zero-rows", _train("bert"), 1, "hold no samples", setup=_set("bert", _empty_shards)),
    Case("dlrm-nan-dense-feature-in-clicked-rows", _train("dlrm"), 1, "holds nan in dense feature 0",
         setup=_set("dlrm", _nan_in_clicked_rows)),
    Case("dlrm-truncated-npz-member", _train("dlrm"), 1, "member 25.npy is truncated",
         setup=_set("dlrm", _truncate_member)),
    Case("rnnt-manifest-duration-1e999", _train("rnnt"), 1, "are not finite numbers",
         setup=_set("rnnt", _manifest(lambda m: json.dumps(m).replace('"duration": ', '"duration": 1e999, "x": ', 1)))),
    Case("rnnt-unreadable-sentencepiece-model", _train("rnnt", "reference"), 1, "cannot load the sentencepiece model",
         setup=_set("rnnt", _sentencepiece_garbage)),
    Case("maskrcnn-rle-counts-overflow-the-image", _train("maskrcnn", "tiny", "--epochs", "1"), 1,
         "rle counts cover 90000 pixels, but the image has 9216",  # a 300x300 mask: pycocotools wrote past 96x96
         setup=_set("maskrcnn", _coco(_first_annotation(segmentation={"size": [96, 96], "counts": "0`lg2"})))),
    Case("coco-iscrowd-as-text", _train("maskrcnn", "tiny", "--epochs", "1"), 1, "has iscrowd '0'",
         setup=_set("maskrcnn", _coco(_first_annotation(iscrowd="0"), "validation"))),
    Case("coco-file-name-absolute", _train("maskrcnn", "tiny", "--epochs", "1"), 1,
         "file_name '/etc/hostname' is an absolute path",
         setup=_set("maskrcnn", _coco(lambda d: d["images"][0].update(file_name="/etc/hostname")))),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_values_are_one_line_errors(case: Case, tmp_path: Path) -> None:
    check(case, tmp_path)


# ---------------------------------------------------------------- the variants, in process

@pytest.mark.parametrize("key,row,value,message", [
    ("input_ids", 5, -1, "row 5: input_ids holds the token id -1, outside 0..73"),
    ("input_ids", 2, 74, "row 2: input_ids holds the token id 74, outside 0..73"),
    ("segment_ids", 1, 7, "row 1: segment_ids holds the segment id 7, outside 0..1"),
    ("input_mask", 4, 3, "row 4: input_mask holds the mask value 3, outside 0..1"),
    ("masked_lm_positions", 6, 32, "row 6: masked_lm_positions holds the masked position 32, outside 0..31"),
    ("masked_lm_ids", 7, 99999, "row 7: masked_lm_ids holds the masked token id 99999, outside 0..73"),
    ("next_sentence_labels", 3, 5, "row 3: next_sentence_labels holds the next-sentence label 5, outside 0..1"),
])
def test_bert_shard_ids_are_checked_against_their_ranges(sets, tmp_path, key, row, value, message):
    from mlbench.benchmarks.bert import shards

    root = _copy(sets, "bert", tmp_path)
    _shard(key, _at(row, value, col=1 if key != "masked_lm_positions" else 0), which="eval/part_eval.hdf5")(root)
    info = shards.open_shard(root / "hdf5" / "eval" / "part_eval.hdf5", 32, 5, vocab_size=74)
    with pytest.raises(DataError) as err:
        shards.read_shard(info, 32, 5)
    assert message in err.value.message and "part_eval.hdf5" in err.value.message and err.value.hint
    with pytest.raises(DataError, match=f"row {row}:"):  # the row of the file, not of the selection
        shards.read_shard(info, 32, 5, select=np.array([0, row]))
    shards.read_shard(info, 32, 5, select=np.array([0, row + 1]))  # the other rows are fine


def test_dlrm_rows_are_checked_as_they_are_read(sets, tmp_path):
    from mlbench import registry
    from mlbench.benchmarks.dlrm import days

    hp = registry.get("dlrm", "tiny").definition.hparams
    root = _copy(sets, "dlrm", tmp_path)
    dense = np.load(root / "day_1_dense.npy")
    dense[300, 4] = np.inf
    np.save(root / "day_1_dense.npy", dense)
    day = days.open_day(root, 1, hp["table_rows"], hp["multi_hot"])
    days.read_rows(day, 0, 256, hp["table_rows"])  # the rows before it are fine
    with pytest.raises(DataError, match=r"day_1_dense.npy: row 300 holds inf in dense feature 4"):
        days.read_rows(day, 256, 512, hp["table_rows"])
    _truncate_member(root, day=0, member="3.npy")
    with pytest.raises(DataError, match=r"member 3.npy is truncated: its header says 512 rows"):
        days.open_day(root, 0, hp["table_rows"], hp["multi_hot"])


@pytest.mark.parametrize("change,message", [
    (lambda m: m[0]["files"][0].update(duration=-3.0), "an empty utterance"),
    (lambda m: m[0]["files"][0].update(duration=True), "are not finite numbers"),
    (lambda m: m[0]["files"][0].update(duration="14.5"), "are not finite numbers"),
    (lambda m: m[0]["files"][0].update(num_samples=10**30), "longer than any speech data set holds"),
    (lambda m: m[0]["files"][0].update(num_samples=1.5), "are not finite numbers"),
    (lambda m: m[0]["files"][0].update(fname=["a.wav"]), "fname ['a.wav'] is not a file name"),
    (lambda m: m[0]["files"][0].update(fname="/etc/passwd"), "fname '/etc/passwd' is an absolute path"),
    (lambda m: m[0].update(transcript=[["ab"]]), "'transcript' is a list, not text"),
    (lambda m: m.__setitem__(0, "entry"), "needs 'transcript' and a non-empty 'files' list"),
], ids=["negative", "bool", "text", "huge", "fraction", "fname-list", "fname-absolute", "nested", "string-entry"])
def test_rnnt_manifest_entries_are_checked(sets, tmp_path, change, message):
    from mlbench.benchmarks.rnnt import data
    from mlbench.benchmarks.rnnt.text import Tokenizer

    root = _copy(sets, "rnnt", tmp_path)
    _manifest(lambda m: (change(m), m)[1])(root)
    with pytest.raises(DataError) as err:
        data.read_manifest(root / "librispeech-train-wav.json", root, Tokenizer())
    assert "librispeech-train-wav.json entry 0" in err.value.message and message in err.value.message


@pytest.mark.parametrize("counts,message", [
    ("0`lg2", "cover 90000 pixels, but the image has 9216"),
    ("0`?0`?0`?0`?", "cover 4960 pixels, but the image has 9216"),
    ("@", "negative run length"),
    ("0`", "ends in the middle of a run"),
    ("\u00ff\u00ff", "outside '0' to 'o'"),
    ("abc~", "outside '0' to 'o'"),
    ("", "it is empty or ends in the middle"),
    ("0" + "`" * 8 + "1", "longer than 7 characters"),
])
def test_compressed_rle_is_checked_against_its_image(counts, message):
    from mlbench.benchmarks.maskrcnn.data import check_segmentation

    ann = {"id": 7, "segmentation": {"size": [96, 96], "counts": counts}}
    with pytest.raises(DataError, match="annotation 7") as err:
        check_segmentation(ann, {"file_name": "a.jpg", "width": 96, "height": 96}, Path("ann.json"))
    assert message in err.value.message


def test_rle_runs_match_pycocotools():
    from pycocotools import mask as mask_util

    from mlbench.benchmarks.maskrcnn.data import rle_runs

    rng = np.random.default_rng(0)
    for t in range(40):
        h, w = (int(v) for v in rng.integers(1, 60, 2))
        m = (rng.random((h, w)) < (0.0 if t == 0 else 1.0 if t == 1 else rng.random())).astype(np.uint8)
        runs = rle_runs(mask_util.encode(np.asfortranarray(m))["counts"].decode())
        flat = m.flatten(order="F")
        edges = np.flatnonzero(np.diff(flat)) + 1
        expect = np.diff(np.concatenate(([0], edges, [len(flat)])))
        expect = np.concatenate(([0], expect)) if flat[0] else expect  # COCO runs start with zeros
        assert runs.tolist() == expect.tolist()


@pytest.mark.parametrize("crowd", ["0", True, 2, None, [0]])
def test_coco_iscrowd_must_be_0_or_1(tmp_path, crowd):
    from mlbench.detection.coco_data import CocoIndex

    data = {"images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 80}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 20], "iscrowd": crowd}],
            "categories": [{"id": 1, "name": "circle"}]}
    (tmp_path / "gt.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match=re.escape(f"has iscrowd {crowd!r}; it must be the number 0 or 1")):
        CocoIndex(tmp_path / "gt.json", tmp_path, check_files=False)


@pytest.mark.parametrize("what", ["images", "categories"])
def test_coco_ids_are_unique(tmp_path, what):
    from mlbench.detection.coco_data import CocoIndex

    data = {"images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 80}], "annotations": [],
            "categories": [{"id": 1, "name": "circle"}]}
    data[what].append({**data[what][0], "file_name": "b.jpg"} if what == "images" else {"id": 1, "name": "ring"})
    (tmp_path / "gt.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match=f"two {what} have the id 1"):
        CocoIndex(tmp_path / "gt.json", tmp_path, check_files=False)


@pytest.mark.parametrize("name,message", [("../outside.jpg", "climbs out of"), ("/etc/hostname", "absolute path"),
                                          ("a/../../b.jpg", "climbs out of"), ("C:\\x.jpg", "absolute path")])
def test_coco_file_names_stay_in_the_image_folder(tmp_path, name, message):
    from mlbench.detection.coco_data import CocoIndex

    data = {"images": [{"id": 1, "file_name": name, "width": 100, "height": 80}], "annotations": [],
            "categories": [{"id": 1, "name": "circle"}]}
    (tmp_path / "gt.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match=message):
        CocoIndex(tmp_path / "gt.json", tmp_path / "images", check_files=False)


def test_squad_vocabulary_ids_beyond_the_model_are_refused(tmp_path):
    """A vocab.txt that repeats a token has fewer distinct tokens than lines, but ids up to its line count."""
    from mlbench.benchmarks.bert import squad

    lines = [*squad.SPECIAL_TOKENS, "a", "b", *(["a"] * 50), "zz"]
    (tmp_path / "vocab.txt").write_text("\n".join(lines) + "\n")
    assert squad.vocab_size(squad.load_tokenizer(tmp_path / "vocab.txt")) == len(lines)
