"""ResNet-50 inference (``mlbench infer resnet50``): the task of :mod:`mlbench.inference.task`.

Reference size: the model file decides the pre- and post-processing, as in the MLPerf reference
(:mod:`.modelfiles`): MLPerf's ``resnet50_v1.onnx`` (input ``input_tensor:0``, NCHW or NHWC read from its shape,
``ArgMax:0`` over 1001 classes with the background at 0) gets OpenCV-style area resizing and mean subtraction
on the 0-255 scale; torchvision's state dict (``resnet50-19c8e357.pth``, or an ONNX with its interface) gets
torchvision's resize, crop and normalisation. An ONNX file with another interface is refused before the test
(exit 2), naming what it has and what was expected. Mini and tiny use the normalised 28x28 image of the
Fashion-MNIST test set / generated gratings. The response LoadGen logs per sample is the predicted ImageNet
class as one int32; accuracy is top-1 against the labels.

Models: mini/tiny use the checkpoint of ``mlbench train resnet50 --size mini|tiny``, cached under
``cache_dir('models')`` and trained first when missing. Reference takes ``--weights`` (one of the files above),
else downloads MLCommons' ``resnet50-19c8e357.pth``, checked against the sha256 prefix in its file name.
``--weights random`` runs randomly initialised weights: throughput only, the accuracy is meaningless and the
run is invalid.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from mlbench.benchmarks.resnet50 import data as rdata
from mlbench.benchmarks.resnet50 import modelfiles
from mlbench.data import download
from mlbench.definition import Benchmark
from mlbench.errors import DataError, MlbenchError
from mlbench.finite import HINT, NonFinite
from mlbench.inference import modelfile
from mlbench.inference.models import find_weights, load_weights, pytorch_weights, random_weights, seeded_model
from mlbench.inference.sample_store import ArrayStore
from mlbench.inference.task import TaskOptions

# The PyTorch ResNet-50 v1.5 MLCommons publishes (torchvision's weights; top-1 76.014% with the reference's
# pre-processing); the 8 hex digits in the name prefix its sha256.
REFERENCE_WEIGHTS_URL = "https://zenodo.org/record/4588417/files/resnet50-19c8e357.pth"
REFERENCE_WEIGHTS_SHA256_PREFIX = "19c8e357"
RANDOM_WEIGHTS_SEED = 0  # --weights random: throughput only, but the same weights every time
NONFINITE = -2  # the response of a sample whose logits are not finite (-1: an empty response)


def accuracy(predicted: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy."""
    return float((np.asarray(predicted) == np.asarray(labels)).mean()) if len(labels) else 0.0


def metric_name(bench: Benchmark) -> str:
    return bench.metric


def build_task(bench: Benchmark, opts: TaskOptions) -> ResNetTask:
    return ResNetTask(bench, opts)


class ResNetTask:
    """ResNet-50 (reference) or the small ResNet (mini/tiny) as an inference task."""

    metric = "top1"
    response_dtype = "int32"

    def __init__(self, bench: Benchmark, opts: TaskOptions):
        self.bench, self.opts = bench, opts
        self._store: ArrayStore | None = None
        self._weights_file: Path | None = None
        self._interface: modelfiles.Interface | None = None

    # ------------------------------------------------------------------ model file
    def interface(self) -> modelfiles.Interface:
        """How the model file is fed and read, recognised from the file (ConfigError when unknown)."""
        if self._interface is None:
            b, w = self.bench, self.opts.weights
            if w and str(w).endswith(".onnx"):
                sig = modelfile.signature(w)
                self._interface = modelfiles.recognise_onnx(sig, b.size, tuple(b.input_shape), b.num_classes)
            elif b.is_reference:
                self._interface = modelfiles.TORCHVISION
            else:
                self._interface = modelfiles.own_interface(b.size, b.num_classes)
        return self._interface

    @property
    def onnx_outputs(self) -> list[str] | None:
        """The ONNX outputs the onnxruntime backend fetches, in this order (None: all of the model's)."""
        out = self.interface().output
        return [out] if out and self.opts.weights and str(self.opts.weights).endswith(".onnx") else None

    def info(self) -> dict:
        return {"model_file": {**self.interface().info(), "file": self.opts.weights}}

    # ------------------------------------------------------------------ data
    def dataset(self) -> ArrayStore:
        if self._store is None:
            self.interface()  # an unknown model file fails here, before any image is read
            self._store = self._build_store()
        return self._store

    def _build_store(self) -> ArrayStore:
        b, cap = self.bench, self.opts.max_samples
        if b.is_reference:
            return self._imagenet_store()
        if b.size == "mini":
            images, labels = rdata.load_fashion_mnist(rdata.fashion_mnist_dir(self.opts.data_dir), "t10k")
            tf = rdata.normalize_gray(rdata.FASHION_MEAN, rdata.FASHION_STD, flip=False)
        else:
            images, labels = rdata.generate_patterns(b.hparams["eval_samples"], seed=2, num_classes=b.num_classes)
            tf = rdata.normalize_gray(127.5 / 255, 0.25, flip=False)
        n = len(labels) if cap is None else min(cap, len(labels))

        def preprocess(indices: Sequence[int]) -> np.ndarray:
            return tf(images[torch.as_tensor(indices)], None).numpy()

        return ArrayStore(total_count=n, performance_count=b.performance_sample_count,
                          preprocess=preprocess, labels=labels.numpy()[:n])

    def _imagenet_store(self) -> ArrayStore:
        if not self.opts.data_dir:
            raise DataError("ResNet-50 reference inference needs the ImageNet validation set",
                            "pass --data-dir DIR holding val/ with its images and val_map.txt (the ILSVRC2012 "
                            "layout MLPerf uses); ImageNet cannot be downloaded automatically")
        hp = self.bench.hparams
        folder = rdata.ImageNetFolder(self.opts.data_dir, "val")
        n = len(folder) if self.opts.max_samples is None else min(self.opts.max_samples, len(folder))
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
        iface = self.interface()
        image = modelfiles.image_preprocessor(iface, hp["image_size"], hp["resize"])

        def preprocess(indices: Sequence[int]) -> np.ndarray:
            self.opts.say(f"pre-processing {len(indices)} images ({iface.preprocessing}: resize 256, centre crop 224)")
            with ThreadPoolExecutor(max(1, cores)) as pool:  # PIL and numpy decode and resize without the GIL
                return np.stack(list(pool.map(lambda i: image(folder.samples[i][0]), indices)))

        return ArrayStore(total_count=n, performance_count=self.bench.performance_sample_count,
                          preprocess=preprocess, labels=[s[1] for s in folder.samples[:n]])

    # ------------------------------------------------------------------ outputs
    def postprocess(self, outputs: Sequence[np.ndarray], indices: Sequence[int]) -> np.ndarray:
        """Scores (or the model's own ArgMax) -> the predicted class of each sample, background offset removed,
        one int32 each (row i is sample i's response); :data:`NONFINITE` for a sample whose scores hold NaN or
        infinity (never scored: accuracy fails on it)."""
        pred = modelfiles.classes_of(outputs, self.interface())
        scores = np.asarray(outputs[0])
        if scores.dtype.kind == "f":
            pred[~np.isfinite(scores.reshape(len(scores), -1)).all(axis=1)] = NONFINITE
        return pred

    def accuracy(self, responses: dict[int, bytes], store: ArrayStore) -> dict[str, float]:
        """Top-1 over the logged responses: each response is the predicted class as one int32."""
        if not responses:
            return {"top1": 0.0, "samples": 0}
        idx = np.fromiter(responses, dtype=np.int64, count=len(responses))
        # an empty response (the null backend, an aborted batch) counts as wrong: -1 is never a class
        pred = np.asarray([np.frombuffer(responses[i][:4], dtype=np.int32)[0] if len(responses[i]) >= 4 else -1
                           for i in idx], dtype=np.int64)
        bad = int((pred == NONFINITE).sum())
        if bad:
            raise NonFinite(f"{bad} of {len(pred)} logged predictions come from logits holding NaN or infinity: "
                            "they are not scored, and the run has no result", HINT)
        truth = np.asarray([store.label(int(i)) for i in idx])
        return {"top1": accuracy(pred, truth), "samples": len(idx)}

    # ------------------------------------------------------------------ model
    def model(self) -> torch.nn.Module:
        from mlbench.benchmarks.resnet50.model import build_model

        if random_weights(self.bench, self.opts):
            return seeded_model(lambda: build_model(self.bench), RANDOM_WEIGHTS_SEED)
        model = build_model(self.bench)
        path = pytorch_weights(self._weights(), ".pth")
        hint = ("pass torchvision's ResNet-50 state dict (MLCommons' resnet50-19c8e357.pth), or resnet50_v1.onnx with "
                "--backend onnxruntime" if self.bench.is_reference else
                "pass weights of the same model and size (a state dict, as saved by torch.save)")
        return load_weights(model, path, what=f"ResNet-50 {self.bench.size}", keys=("model", "state_dict"),
                            hint=hint).eval()

    def model_id(self) -> str:
        if random_weights(self.bench, self.opts):
            return f"random{RANDOM_WEIGHTS_SEED}"
        return download.sha256_file(self._weights())[:12]

    def _weights(self) -> Path:
        if self._weights_file is None:
            self._weights_file = find_weights(self.bench, self.opts, files=".pth/.pt (or .onnx)",
                                              reference=self._download_reference)
        return self._weights_file

    def _download_reference(self) -> Path:
        dest = download.cache_dir("models", Path(REFERENCE_WEIGHTS_URL).name)
        if dest.is_file():
            return dest
        if self.opts.offline:
            raise MlbenchError("no ResNet-50 weights: --offline forbids the download",
                               f"pass --weights FILE, or put {Path(REFERENCE_WEIGHTS_URL).name} into {dest.parent}")

        def check(path: Path) -> None:
            if not download.sha256_file(path).startswith(REFERENCE_WEIGHTS_SHA256_PREFIX):
                raise DataError(f"{path.name}: sha256 does not match its published prefix", "download it again")
        try:
            return download.fetch(REFERENCE_WEIGHTS_URL, dest, verify=check, timeout=60)
        except DataError as exc:
            raise MlbenchError(f"no ResNet-50 weights and the download failed: {exc.message}",
                               f"pass --weights FILE (resnet50-19c8e357.pth, or resnet50_v1.onnx with "
                               "--backend onnxruntime), or copy "
                               f"{Path(REFERENCE_WEIGHTS_URL).name} into {dest.parent}; "
                               "--weights random measures throughput only") from exc
