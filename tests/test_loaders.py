"""The real-format loaders on small files the tests write."""

import gzip

import numpy as np
import pytest
import torch

from mlbench.benchmarks.resnet50 import data as rdata
from mlbench.data import download, idx
from mlbench.errors import DataError
from mlbench.training.batches import DataSpec, TensorBatches, shard_indices


def test_idx_roundtrip_and_header(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    for name in ("a-idx3-ubyte", "a-idx3-ubyte.gz"):
        idx.write(tmp_path / name, arr)
        assert np.array_equal(idx.read(tmp_path / name), arr)
        assert idx.header_dims(tmp_path / name) == (2, 3, 4)


def test_idx_truncated_and_bad_magic(tmp_path):
    arr = np.zeros((4, 5), dtype=np.uint8)
    idx.write(tmp_path / "x", arr)
    data = (tmp_path / "x").read_bytes()
    (tmp_path / "t").write_bytes(data[:-3])
    with pytest.raises(DataError, match="size mismatch"):
        idx.read(tmp_path / "t")
    (tmp_path / "m").write_bytes(b"\x01\x02\x03\x04" + data[4:])
    with pytest.raises(DataError, match="bad magic"):
        idx.read(tmp_path / "m")
    (tmp_path / "g.gz").write_bytes(gzip.compress(data)[:20])
    with pytest.raises(DataError, match="corrupt or truncated"):
        idx.read(tmp_path / "g.gz")


def test_fashion_mnist_from_dir(fashion_dir):
    x, y = rdata.load_fashion_mnist(fashion_dir, "train")
    assert x.shape == (64, 1, 28, 28) and x.dtype == torch.uint8 and y.dtype == torch.int64
    bench = rdata.Benchmark  # noqa: F841 - module import sanity
    from mlbench import registry

    bundle = rdata.fashion_mnist_bundle(registry.get("resnet50", "mini").definition,
                                        DataSpec(batch_size=16, eval_batch_size=16, data_dir=str(fashion_dir)))
    assert bundle.train_samples == 64 and bundle.eval_samples == 32
    xb, yb = next(iter(bundle.train))
    assert xb.shape == (16, 1, 28, 28) and xb.dtype == torch.float32


def test_fashion_mnist_missing_files_error(tmp_path):
    with pytest.raises(DataError) as exc:
        rdata.fashion_mnist_dir(str(tmp_path))
    assert "missing" in str(exc.value) and "fix:" in str(exc.value)


def test_fashion_mnist_download_from_local_server(tmp_path, monkeypatch, fashion_dir):
    """No system copy: the files are fetched from the (here: local) official address and verified."""
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(fashion_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr(rdata, "FASHION_MNIST_SYSTEM_DIR", str(tmp_path / "nowhere"))
        monkeypatch.setenv("MLBENCH_FASHION_MNIST_URL", f"http://127.0.0.1:{server.server_port}/")
        # the test files are not the real Fashion-MNIST: their content hash must be rejected
        with pytest.raises(DataError, match="sha256"):
            rdata.fashion_mnist_dir(None)
        digests = {}
        for stem in rdata.FASHION_MNIST_FILES:
            with gzip.open(fashion_dir / f"{stem}.gz") as f:
                digests[stem] = download.hashlib.sha256(f.read()).hexdigest()
        monkeypatch.setattr(rdata, "FASHION_MNIST_FILES", digests)
        folder = rdata.fashion_mnist_dir(None)
        assert folder == download.cache_dir("fashion-mnist")
        assert rdata.load_fashion_mnist(folder, "t10k")[0].shape[0] == 32
    finally:
        server.shutdown()


def test_fashion_mnist_offline_error(tmp_path, monkeypatch):
    monkeypatch.setattr(rdata, "FASHION_MNIST_SYSTEM_DIR", str(tmp_path / "nowhere"))
    monkeypatch.setenv("MLBENCH_FASHION_MNIST_URL", "http://127.0.0.1:9/")  # nothing listens there
    with pytest.raises(DataError) as exc:
        rdata.fashion_mnist_dir(None)
    assert "apt-get install dataset-fashion-mnist" in str(exc.value)


def test_imagenet_layout(imagenet_tree):
    train = rdata.ImageNetFolder(imagenet_tree, "train", rdata.train_transform(32))
    val = rdata.ImageNetFolder(imagenet_tree, "val", rdata.eval_transform(32, 36))
    assert len(train) == 16 and len(val) == 10
    assert sorted({label for _, label in train.samples}) == [0, 1]
    x, label = val[0]
    assert x.shape == (3, 32, 32) and label == 0
    # the labels come from val_map.txt, including the deliberately mislabelled last image
    assert [lbl for _, lbl in val.samples] == [0] * 5 + [1] * 4 + [0]


def test_imagenet_errors(imagenet_tree, tmp_path):
    with pytest.raises(DataError, match="train folder not found"):
        rdata.ImageNetFolder(tmp_path, "train")
    (imagenet_tree / "val" / "val_map.txt").write_text("ILSVRC2012_val_99999999.JPEG 3\n")
    with pytest.raises(DataError, match="listed but missing"):
        rdata.ImageNetFolder(imagenet_tree, "val")
    (imagenet_tree / "val" / "val_map.txt").write_text("broken line here\n")
    with pytest.raises(DataError, match="expected '<file> <label>'"):
        rdata.ImageNetFolder(imagenet_tree, "val")


def test_corrupt_jpeg(imagenet_tree):
    victim = sorted((imagenet_tree / "train" / "n01440764").iterdir())[0]
    victim.write_bytes(victim.read_bytes()[:40])
    ds = rdata.ImageNetFolder(imagenet_tree, "train", rdata.train_transform(32))
    i = [p for p, _ in ds.samples].index(str(victim))
    with pytest.raises(DataError, match="corrupt or unreadable image"):
        ds[i]


def test_shards_are_disjoint_and_cover():
    shards = [shard_indices(10, r, 3, shuffle=True, seed=1, epoch=0, equal=False) for r in range(3)]
    assert sorted(torch.cat(shards).tolist()) == list(range(10))
    eq = [shard_indices(10, r, 3, shuffle=True, seed=1, epoch=0, equal=True) for r in range(3)]
    assert {len(s) for s in eq} == {3}


def test_tensor_batches_lazy_load():
    calls = []

    def load():
        calls.append(1)
        return torch.zeros(10, 1, 2, 2, dtype=torch.uint8), torch.arange(10)

    b = TensorBatches(load, 10, 4, train=False)
    assert len(b) == 3 and not calls  # sizing does not touch the data
    assert [len(y) for _, y in b] == [4, 4, 2] and calls == [1]
