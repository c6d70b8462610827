"""Issue 10, point 8: bad data gets an error, not a traceback. Each case is a one-line cause and fix, exit 1, and
nothing recorded as valid."""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from catalogue import Case, check

from mlbench import runs
from mlbench.data import idx
from mlbench.errors import DataError, MlbenchError
from support import make_imagenet_tree, mlbench

# ---------------------------------------------------------------- Fashion-MNIST (resnet50 mini)

MINI = ("train", "resnet50", "--size", "mini", "--data-dir", "{tmp}/fm", "--device", "cpu", "--epochs", "1",
        "--output-dir", "{tmp}/runs")


def _fashion(tmp: Path, train_shape=(64, 28, 28)) -> Path:
    d = tmp / "fm"
    d.mkdir()
    rng = np.random.default_rng(0)
    for split, shape in (("train", train_shape), ("t10k", (32, 28, 28))):
        idx.write(d / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 255, shape, dtype=np.uint8))
        idx.write(d / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, 10, (shape[0],), dtype=np.uint8))
    return d


def _fashion_then(change):
    def setup(tmp: Path) -> None:
        change(_fashion(tmp) / "train-images-idx3-ubyte.gz")
    return setup


def _corrupt_deflate(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[12:40] = bytes(range(28))  # inside the first deflate block: the header cannot be read either
    path.write_bytes(bytes(data))


# ---------------------------------------------------------------- ImageNet (resnet50 reference)

REFERENCE = ("train", "resnet50", "--size", "reference", "--data-dir", "{tmp}/im", "--device", "cpu",
             "--batch-size", "16", "--epochs", "1", "--output-dir", "{tmp}/runs")


def _imagenet_label(label: str):
    def setup(tmp: Path) -> None:
        root = make_imagenet_tree(tmp / "im", per_class_train=2, per_class_val=2)
        val_map = root / "val" / "val_map.txt"
        lines = val_map.read_text().splitlines()
        lines[0] = f"{lines[0].split()[0]} {label}"
        val_map.write_text("\n".join(lines) + "\n")
    return setup


# ---------------------------------------------------------------- RetinaNet (COCO json + JPEG)

RETINANET = ("train", "retinanet", "--size", "tiny", "--data-dir", "{tmp}/rn", "--device", "cpu", "--epochs", "1",
             "--output-dir", "{tmp}/runs")


_GENERATED: dict[str, Path] = {}  # the tiny shapes set, generated once per module (see the fixture below)


@pytest.fixture(scope="module", autouse=True)
def _shapes_set(tmp_path_factory):
    _GENERATED["dir"] = tmp_path_factory.mktemp("shapes")
    yield
    _GENERATED.clear()


def _retinanet(change_json=None, change_root=None):
    def setup(tmp: Path) -> None:
        from mlbench import registry
        from mlbench.detection import synthetic

        hp = registry.get("retinanet", "tiny").definition.hparams
        cached = _GENERATED["dir"] / "rn"
        if not (cached / "validation" / "labels" / hp["labels_file"]).is_file():
            synthetic.ensure(cached, hp, phantom=False)
        root = Path(shutil.copytree(cached, tmp / "rn"))
        if change_json:
            path = root / "train" / "labels" / hp["labels_file"]
            data = json.loads(path.read_text())
            path.write_text(json.dumps(change_json(data)))
        if change_root:
            change_root(root)
    return setup


def _drop(key: str, where: str):
    def change(data: dict) -> dict:
        del data[where][0][key]
        return data
    return change


def _set_bbox(box):
    def change(data: dict) -> dict:
        data["annotations"][0]["bbox"] = box
        return data
    return change


def _first_train_image(root: Path) -> Path:
    return sorted((root / "train" / "data").iterdir())[0]


def _resize_first_image(root: Path) -> None:
    from PIL import Image

    path = _first_train_image(root)
    with Image.open(path) as img:
        img.resize((img.width * 2, img.height)).save(path, format="JPEG")


def _a_file(tmp: Path) -> None:
    (tmp / "somefile").write_text("not a folder\n")


CASES = [
    Case("fashion-gzip-garbage", MINI, 1, "cannot read",
         setup=_fashion_then(lambda p: p.write_bytes(b"\x1f\x8b\x08\x00" + bytes(range(256)) * 4))),
    Case("fashion-text-named-gz", MINI, 1, "cannot read",
         setup=_fashion_then(lambda p: p.write_text("this is not gzip\n"))),
    Case("fashion-corrupt-deflate", MINI, 1, "cannot read", setup=_fashion_then(_corrupt_deflate)),
    Case("fashion-wrong-image-size", MINI, 1, "not fashion-mnist's 28x28",
         setup=lambda tmp: _fashion(tmp, train_shape=(64, 32, 32))),
    Case("imagenet-label-5000", REFERENCE, 1, "label 5000 is outside the 1000 classes",
         setup=_imagenet_label("5000")),
    Case("imagenet-label-unicode-digit", REFERENCE, 1, "expected '<file> <label>'", setup=_imagenet_label("\u00b2")),
    Case("coco-top-level-list", RETINANET, 1, "holds a json list, not a coco detection object",
         setup=_retinanet(lambda data: [data])),
    Case("coco-annotation-without-bbox", RETINANET, 1, "lacks 'bbox'",
         setup=_retinanet(_drop("bbox", "annotations"))),
    Case("coco-image-without-width", RETINANET, 1, "lacks 'width'", setup=_retinanet(_drop("width", "images"))),
    Case("coco-nan-box", RETINANET, 1, "holds NaN, which JSON does not allow",
         setup=_retinanet(_set_bbox([float("nan"), 1.0, 5.0, 5.0]))),
    Case("coco-image-of-wrong-size", (*RETINANET, "--workers", "0"), 1, "but shapes",
         setup=_retinanet(change_root=_resize_first_image)),
    Case("train-output-under-a-file", ("train", "resnet50", "--size", "tiny", "--device", "cpu",
                                       "--output-dir", "{tmp}/somefile/runs"), 1, "somefile is a file, not a folder",
         setup=_a_file),
    Case("infer-output-under-a-file", ("infer", "resnet50", "--size", "tiny", "--backend", "null", "--quick",
                                       "--output-dir", "{tmp}/somefile/runs"), 1, "somefile is a file, not a folder",
         setup=_a_file),
    Case("sysinfo-output-under-a-file", ("sysinfo", "-o", "{tmp}/somefile/system.json"), 1,
         "somefile is a file, not a folder", setup=_a_file),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_hostile_data(case: Case, tmp_path: Path) -> None:
    check(case, tmp_path)


def _gt() -> dict:
    return {"images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 80}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 20]}],
            "categories": [{"id": 1, "name": "circle"}]}


@pytest.mark.parametrize("change,message", [
    (lambda d: d["images"][0].pop("file_name"), "image 1 lacks 'file_name'"),
    (lambda d: d["images"][0].pop("height"), "image 'a.jpg' lacks 'height'"),
    (lambda d: d["images"][0].update(width=-5), "has an invalid 'width': -5"),
    (lambda d: d["images"][0].update(id="1"), "has an invalid 'id'"),
    (lambda d: d["categories"][0].pop("id"), "category None lacks 'id'"),
    (lambda d: d["annotations"][0].update(bbox=[1.0, 1.0, float("inf"), 5.0]), "holds Infinity, which JSON does not"),
    (lambda d: d["annotations"][0].update(bbox=[1, 2, 3]), "has an invalid 'bbox'"),
    (lambda d: d["annotations"][0].update(bbox="1,2,3,4"), "has an invalid 'bbox'"),
    (lambda d: d["annotations"][0].update(bbox=[1, 2, True, 4]), "has an invalid 'bbox'"),
    (lambda d: d["images"].append(7), "an entry of the images is 7, not an object"),
    (lambda d: d["annotations"].append(None), "an entry of the annotations is None, not an object"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_coco_index_names_what_is_missing_or_wrong(tmp_path, change, message):
    from mlbench.detection.coco_data import CocoIndex

    data = _gt()
    change(data)
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(data))
    with pytest.raises(DataError) as exc:
        CocoIndex(path, tmp_path, check_files=False)
    assert message in exc.value.message and exc.value.hint


def test_corrupt_jpeg_in_a_loader_worker_is_one_message_naming_the_file(tmp_path):
    root = make_imagenet_tree(tmp_path / "im", per_class_train=8, per_class_val=2)
    bad = sorted((root / "train" / "n01440764").iterdir())[0]
    bad.write_bytes(bad.read_bytes()[:300])
    p = mlbench(*[a.replace("{tmp}", str(tmp_path)) for a in REFERENCE], "--workers", "2", cwd=tmp_path)
    out = p.stdout + p.stderr
    assert p.returncode == 1, out[-3000:]
    assert "Traceback" not in out and "DataLoader worker" not in out, out[-3000:]
    errors = [line for line in out.splitlines() if line.startswith("mlbench: error:")]
    assert errors == [f"mlbench: error: corrupt or unreadable image {bad.relative_to(tmp_path)}: Truncated File Read"] \
        or (len(errors) == 1 and str(bad.name) in errors[0]), out[-3000:]
    assert "  fix: replace the file" in out


def test_a_worker_error_keeps_its_message_and_hint():
    """What torch's DataLoader does with an error raised in a worker: ``type(exc)(text with the traceback)``."""
    text = ("Caught DataError in DataLoader worker process 1.\nOriginal Traceback (most recent call last):\n"
            "  File \"x.py\", line 1, in f\n    raise DataError(...)\n"
            "mlbench.errors.DataError: corrupt or unreadable image a.JPEG: broken\n  fix: replace the file\n")
    exc = DataError(text)
    assert exc.message == "corrupt or unreadable image a.JPEG: broken" and exc.hint == "replace the file"
    assert DataError("plain message").message == "plain message"


# ---------------------------------------------------------------- a full disk

def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_write_json_on_a_full_disk_leaves_no_tmp_file_and_keeps_the_old_content(tmp_path, monkeypatch):
    target = tmp_path / "result.json"
    runs.write_json(target, {"status": "running"})

    real_write_text = Path.write_text

    def half_then_enospc(self, text, *args, **kwargs):
        real_write_text(self, text[: len(text) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", half_then_enospc)
    with pytest.raises(MlbenchError) as exc:
        runs.write_json(target, {"status": "success", "valid": True})
    assert "No space left on device" in exc.value.message and "free some space" in exc.value.hint
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]
    assert json.loads(target.read_text()) == {"status": "running"}


def test_write_json_under_a_file_is_a_clear_error(tmp_path):
    (tmp_path / "somefile").write_text("x")
    with pytest.raises(MlbenchError, match="somefile is a file, not a folder"):
        runs.write_json(tmp_path / "somefile" / "runs" / "result.json", {})


def test_download_on_a_full_disk_leaves_no_part_file(tmp_path, monkeypatch):
    from mlbench.data import download

    src = tmp_path / "src.bin"
    src.write_bytes(b"x" * 1000)
    monkeypatch.setattr(download.shutil, "copyfileobj", _enospc)
    dest = tmp_path / "cache" / "file.bin"
    with pytest.raises(DataError) as exc:
        download.fetch(src.as_uri(), dest)
    assert "No space left on device" in exc.value.message and "MLBENCH_CACHE" in exc.value.hint
    assert list((tmp_path / "cache").iterdir()) == []
