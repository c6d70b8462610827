"""ResNet-50: the MLPerf definition and its smaller sizes.

Recipe choice (documented in the README): SGD with momentum, label smoothing 0.1, linear warm-up then
polynomial (power 2) decay to 1e-4, as in the MLPerf ResNet reference's SGD path; the base learning
rate scales linearly with the global batch (0.1 per 256 images, Goyal et al.), on MLPerf's 0.001 grid.
"""

from mlbench.definition import Benchmark, ModelFile

# mlcommons/inference vision/classification_and_detection README, "Supported Models" (read 2026-12)
MODEL_FILES = (
    ModelFile("resnet50_v1.onnx", "ONNX, opset 8 or 11, converted from TensorFlow", "top-1 76.456%",
              "https://zenodo.org/record/2592612/files/resnet50_v1.onnx (opset 8), "
              "https://zenodo.org/record/4735647/files/resnet50_v1.onnx (opset 11)"),
    ModelFile("resnet50-19c8e357.pth", "PyTorch state dict (torchvision)", "top-1 76.014%",
              "https://zenodo.org/record/4588417/files/resnet50-19c8e357.pth"),
)

REFERENCE = Benchmark(
    name="resnet50",
    size="reference",
    mlperf_name="resnet",
    task="image classification",
    description="ResNet-50 v1.5 on ImageNet-1k",
    ruleset="4.0.0",
    division="closed",
    dataset="ImageNet-1k (ILSVRC2012: train/<wnid>/*.JPEG, val/ with val_map.txt)",
    metric="top1",
    target=0.7590,  # MLPerf Training v4.0 rules, ResNet-50: top-1 75.90%
    target_source="MLPerf Training v4.0 rules (training_rules.adoc): ResNet-50 top-1 75.90%",
    eval_every_epochs=4,  # MLPerf Training rules: ResNet evaluates every 4 epochs
    runs_required=5,  # MLPerf Training rules: 5 runs for ResNet
    max_epochs=41,  # reference convergence lies at ~35-41 epochs for SGD (MLPerf RCPs)
    batch_size=256,
    hparams={
        "lr_per_256": 0.1,
        "end_lr": 0.0001,  # fixed by the closed rules (closed_resnet_sgd.yaml)
        "poly_power": 2.0,
        "warmup_epochs": 5,
        "momentum": 0.9,
        "weight_decay": 5e-5,  # 1e-4 * 2^k as the closed rules require
        "label_smoothing": 0.1,
        "image_size": 224,
        "resize": 256,
    },
    input_shape=(3, 224, 224),
    num_classes=1000,
    inference_target=0.99 * 0.7646,  # MLPerf Inference: 99% of FP32 top-1 76.46%
    inference_target_source="MLPerf Inference rules: 99% of the FP32 reference top-1 76.46%",
    performance_sample_count=1024,  # MLPerf Inference: QSL performance sample count for ResNet-50
    server_latency_ms=15.0,  # MLPerf Inference: Server p99 bound for ResNet-50
    loadgen_model_name="resnet50",
    inference_name="resnet",  # MLPerf Inference's results folder
    model_files=MODEL_FILES,
)

MINI = REFERENCE.derive(
    size="mini",
    model_files=(),
    division="open",
    description="a small ResNet (3 stages of basic blocks, 16-32-64 channels) on Fashion-MNIST",
    dataset="Fashion-MNIST (IDX files; Debian package dataset-fashion-mnist)",
    target=0.90,  # top-1 on the 10k test set; see README for the measured time to reach it
    target_source="mlbench mini: top-1 >= 0.90 on the Fashion-MNIST test set (reached at epoch 3-4, ~4 min on 2 cores)",
    eval_every_epochs=1,
    runs_required=1,
    max_epochs=5,  # the schedule decays over this budget; 0.90 is reached at epoch 3-4
    batch_size=128,
    hparams={"lr_per_256": 0.4, "warmup_epochs": 0.5, "weight_decay": 5e-5, "image_size": 28, "width": 16},
    input_shape=(1, 28, 28),
    num_classes=10,
    inference_target=0.99 * 0.90,
    inference_target_source="99% of the mini training target",
    performance_sample_count=1024,
    notes="open division: smaller model and data than the MLPerf definition",
)

TINY = MINI.derive(
    size="tiny",
    description="a very small ResNet on generated 10-class pattern images, for tests",
    dataset="generated gratings, 4 orientations (512 train / 256 eval, 1x28x28)",
    target=0.60,
    target_source="mlbench tiny: reached in 2-3 epochs on generated data (tests only)",
    max_epochs=6,
    batch_size=64,
    hparams={"width": 8, "train_samples": 512, "eval_samples": 256},
    num_classes=4,
    inference_target=0.5,
    inference_target_source="tests only",
    performance_sample_count=256,
)

SIZES = {b.size: b for b in (REFERENCE, MINI, TINY)}
