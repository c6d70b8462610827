"""`mlbench data prepare retinanet` against a local HTTP server serving tiny files in OpenImages' formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlbench.cli import main as cli_main
from support import FileServer

CLASSES = "/m/014j1m,Apple\n/m/01yrx,Cat\n/m/0bt9lr,Dog\n"
HEADER = ("ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated,IsGroupOf,"
          "IsDepiction,IsInside\n")
ROWS = [  # image, label, xmin, xmax, ymin, ymax
    ("0001a", "/m/014j1m", 0.1, 0.5, 0.2, 0.6),
    ("0001a", "/m/0bt9lr", 0.0, 1.0, 0.0, 1.0),  # a class that is not asked for: dropped
    ("0002b", "/m/01yrx", 0.25, 0.75, 0.5, 1.0),
    ("0003c", "/m/0bt9lr", 0.1, 0.2, 0.1, 0.2),  # only unwanted classes: the image is not downloaded
    ("0004d", "/m/01yrx", 0.1, 0.9, 0.1, 0.9),  # served truncated
    ("0005e", "/m/014j1m", 0.1, 0.9, 0.1, 0.9),  # not on the server (404)
]


def jpeg(path: Path, size: tuple[int, int]) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.effect_noise(size, 40).convert("RGB").save(path, quality=90)


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    (root / "v5").mkdir(parents=True)
    (root / "v5" / "class-descriptions-boxable.csv").write_text(CLASSES)
    lines = [f"{i},xclick,{lab},1,{x0},{x1},{y0},{y1},0,0,0,0,0\n" for i, lab, x0, x1, y0, y1 in ROWS]
    (root / "v5" / "validation-annotations-bbox.csv").write_text(HEADER + "".join(lines))
    jpeg(root / "img" / "validation" / "0001a.jpg", (200, 100))
    jpeg(root / "img" / "validation" / "0002b.jpg", (64, 48))
    jpeg(root / "img" / "validation" / "0003c.jpg", (64, 48))
    jpeg(root / "img" / "validation" / "0004d.jpg", (64, 64))
    full = (root / "img" / "validation" / "0004d.jpg").read_bytes()
    (root / "img" / "validation" / "0004d.jpg").write_bytes(full[: len(full) // 2])
    s = FileServer(root)
    yield s
    s.close()


def prepare(server: FileServer, out: Path, *extra: str) -> int:
    return cli_main(["data", "prepare", "retinanet", "--root", str(out), "--split", "validation",
                     "--annotations-url", server.base, "--images-url", server.base + "img/",
                     "--classes", "Apple,Cat", "--workers", "4", "--retries", "2", *extra])


def test_failures_are_reported_and_resume_completes(server, tmp_path, capsys):
    out = tmp_path / "oi"
    assert prepare(server, out) == 1
    err = capsys.readouterr().err
    assert "2 of 4 images could not be downloaded or verified" in err and "run the same command again" in err
    failed = (out / "validation" / "failed.txt").read_text()
    assert "0004d" in failed and "not a complete image" in failed
    assert "0005e" in failed and "HTTP 404" in failed
    assert not (out / "validation" / "labels" / "openimages-mlperf.json").exists()
    assert not list((out / "validation" / "data").glob("*.part"))  # a partial file never stays
    assert sorted(p.name for p in (out / "validation" / "data").iterdir()) == ["0001a.jpg", "0002b.jpg"]

    # Second run: the verified files are kept (not fetched again); --allow-missing writes the json.
    server.requests.clear()
    assert prepare(server, out, "--allow-missing") == 0
    assert not any(r.endswith(("0001a.jpg", "0002b.jpg")) for r in server.requests)
    coco = json.loads((out / "validation" / "labels" / "openimages-mlperf.json").read_text())
    assert [im["file_name"] for im in coco["images"]] == ["0001a.jpg", "0002b.jpg"]
    assert (coco["images"][0]["width"], coco["images"][0]["height"]) == (200, 100)
    assert [c["name"] for c in coco["categories"]] == ["Apple", "Cat"]
    apple, cat = coco["annotations"]
    assert apple["bbox"] == [20.0, 20.0, 80.0, 40.0] and apple["category_id"] == 1
    assert cat["bbox"] == [16.0, 24.0, 32.0, 24.0] and cat["category_id"] == 2

    # The result goes through the training loader's checks.
    from mlbench.detection.coco_data import CocoIndex

    index = CocoIndex(out / "validation/labels/openimages-mlperf.json", out / "validation/data")
    assert len(index) == 2


def test_complete_set_after_server_fix(server, tmp_path):
    out = tmp_path / "oi"
    assert prepare(server, out) == 1
    www = Path(server.httpd.RequestHandlerClass.keywords["directory"])
    jpeg(www / "img" / "validation" / "0004d.jpg", (64, 64))
    jpeg(www / "img" / "validation" / "0005e.jpg", (32, 32))
    assert prepare(server, out) == 0
    coco = json.loads((out / "validation" / "labels" / "openimages-mlperf.json").read_text())
    assert len(coco["images"]) == 4 and not (out / "validation" / "failed.txt").exists()


def test_unknown_class_and_missing_server(server, tmp_path, capsys):
    code = cli_main(["data", "prepare", "retinanet", "--root", str(tmp_path / "x"), "--annotations-url",
                     server.base, "--classes", "Aple"])
    assert code == 2 and "did you mean 'Apple'" in capsys.readouterr().err
    code = cli_main(["data", "prepare", "retinanet", "--root", str(tmp_path / "y"), "--annotations-url",
                     "http://127.0.0.1:9/", "--retries", "1"])
    assert code == 1 and "class-descriptions-boxable.csv" in capsys.readouterr().err
    assert cli_main(["data", "prepare", "resnet50", "--root", str(tmp_path / "z")]) == 2
