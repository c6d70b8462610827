"""RetinaNet training speed levers (mlbench.benchmarks.retinanet.trainer): the same matching and losses as
torchvision's per-image code, the same loss values over the first training steps as the plain torchvision
loop (same initial weights, same batches), and what result.json records."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from mlbench.benchmarks.retinanet import definition, model
from mlbench.benchmarks.retinanet import trainer as levers
from mlbench.training import precision

CPU = torch.device("cpu")


def random_boxes(g: torch.Generator, n: int, size: int) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=g) * size * 0.75
    wh = torch.rand(n, 2, generator=g) * size * 0.3 + 1.0
    return torch.cat([xy, xy + wh], 1)


def random_targets(g: torch.Generator, counts, size: int, classes: int) -> list[dict]:
    return [{"boxes": random_boxes(g, n, size), "labels": torch.randint(0, classes, (n,), generator=g)}
            for n in counts]


def small_reference(monkeypatch, size: int = 64):
    """The reference network (ResNeXt50 FPN P3-P7, frozen batch norm, 264 classes) at a small input size."""
    monkeypatch.setenv(model.BACKBONE_ENV, "random")
    hp = {**definition.REFERENCE.hparams, "image_size": size}
    return definition.REFERENCE.derive(hparams=hp, input_shape=(3, size, size))


@pytest.mark.parametrize("counts", [(3, 0, 1, 7), (0, 0), (12,)])
def test_batched_matching_equals_torchvision_matcher(counts):
    from torchvision.models.detection._utils import Matcher
    from torchvision.ops import box_iou

    g = torch.Generator().manual_seed(sum(counts) + len(counts))
    anchors = random_boxes(g, 500, 96)
    targets = random_targets(g, counts, 96, 5)
    # one box equal to an anchor (IoU 1) and one far smaller than any anchor (a low-quality match)
    if counts[0]:
        targets[0]["boxes"][0] = anchors[17]
        targets[0]["boxes"][-1] = torch.tensor([40.0, 40.0, 40.5, 40.5])
    matcher = Matcher(0.5, 0.4, allow_low_quality_matches=True)
    boxes, labels, valid = levers.pad_targets(targets)
    got = levers.match(anchors, boxes, valid, 0.5, 0.4, True)
    for i, t in enumerate(targets):
        want = (torch.full((500,), -1, dtype=torch.int64) if t["boxes"].numel() == 0
                else matcher(box_iou(t["boxes"], anchors)))
        assert torch.equal(got[i], want), i
    assert (got >= 0).any() or not any(counts)
    # in chunks of images (large batches): the same
    old = levers.MATCH_CHUNK_ELEMENTS
    try:
        levers.MATCH_CHUNK_ELEMENTS = 1
        assert torch.equal(levers.match(anchors, boxes, valid, 0.5, 0.4, True), got)
    finally:
        levers.MATCH_CHUNK_ELEMENTS = old


def test_padding_buckets_keep_few_shapes():
    g = torch.Generator().manual_seed(0)
    for counts, m in (((0, 0), 8), ((3, 8), 8), ((9,), 16), ((17, 1), 32)):
        boxes, labels, valid = levers.pad_targets(random_targets(g, counts, 64, 3))
        assert boxes.shape == (len(counts), m, 4) and labels.shape == valid.shape == (len(counts), m)
        assert valid.sum(1).tolist() == list(counts)


@pytest.mark.parametrize("prec", ["fp32", "bf16"])
def test_batched_losses_equal_torchvision_per_image(prec):
    from torchvision.models.detection import _utils as det_utils
    from torchvision.models.detection.retinanet import RetinaNetHead

    g = torch.Generator().manual_seed(3)
    b, a, c = 4, 300, 6
    anchors = random_boxes(g, a, 80)
    targets = random_targets(g, (2, 0, 5, 1), 80, c)
    head = RetinaNetHead(8, 9, c)
    cls_logits = torch.randn(b, a, c, generator=g).to(precision.DTYPES[prec])
    bbox = torch.randn(b, a, 4, generator=g).to(precision.DTYPES[prec])
    boxes, labels, valid = levers.pad_targets(targets)
    matched = levers.match(anchors, boxes, valid)
    want = head.compute_loss(targets, {"cls_logits": cls_logits, "bbox_regression": bbox}, [anchors] * b,
                             list(matched))
    got = levers.losses(cls_logits, bbox, anchors, boxes, labels, matched, det_utils.BoxCoder((1.0, 1.0, 1.0, 1.0)))
    tol = 1e-5 if prec == "fp32" else 1e-2
    for k in ("classification", "bbox_regression"):
        assert torch.allclose(got[k].float(), want[k].float(), rtol=tol, atol=tol), (k, got[k], want[k])


def test_trainer_equals_the_torchvision_model_on_the_light_model():
    from mlbench import registry

    torch.manual_seed(0)
    net = registry.get("retinanet", "tiny").workload().build_model()
    g = torch.Generator().manual_seed(1)
    images = [torch.rand(3, 96 + 7 * i, 96 - 5 * i, generator=g) for i in range(4)]  # the transform resizes
    targets = random_targets(g, (3, 0, 1, 9), 80, 4)
    plain, trainer = copy.deepcopy(net), levers.DetectorTrainer(copy.deepcopy(net))
    plain.train()
    trainer.train()
    for prec in ("fp32", "bf16"):
        with precision.autocast(CPU, prec):
            want = plain(images, copy.deepcopy(targets))
            got = trainer(images, copy.deepcopy(targets))
        for k in want:
            assert torch.allclose(got[k].float(), want[k].float(), rtol=1e-4, atol=1e-5), (prec, k)
    assert trainer.record()["frozen_bn_folded_into_conv"] == 0  # the light model has trainable batch norm


def test_prepare_equals_the_torchvision_transform_and_keeps_the_random_stream():
    from mlbench import registry

    net = registry.get("retinanet", "tiny").workload().build_model()
    net.train()
    trainer = levers.DetectorTrainer(net)
    g = torch.Generator().manual_seed(2)
    images = [torch.rand(3, 96, 96, generator=g), torch.rand(3, 131, 77, generator=g)]  # one needs no resize
    targets = random_targets(g, (2, 3), 70, 4)
    torch.manual_seed(7)
    want_list, want_targets = net.transform(images, copy.deepcopy(targets))
    after_torchvision = torch.rand(1)
    torch.manual_seed(7)
    x, image_list, boxes, labels = trainer.prepare(images, copy.deepcopy(targets))
    assert torch.equal(torch.rand(1), after_torchvision)  # one draw per image, as torchvision's resize makes
    assert torch.equal(x, want_list.tensors) and image_list.image_sizes == want_list.image_sizes
    for i, t in enumerate(want_targets):
        n = len(t["boxes"])
        assert torch.equal(boxes[i, :n], t["boxes"]) and torch.equal(labels[i, :n], t["labels"])
        assert (labels[i, n:] == -1).all()


def test_frozen_batch_norm_folds_into_the_frozen_stem_and_stays_shared(monkeypatch):
    bench = small_reference(monkeypatch)
    net = model.build_model(bench)
    trainer = levers.DetectorTrainer(net)
    rec = trainer.record()
    # stem + layer1 (3 blocks x 3 convs + downsample) are frozen: 11 folds; layers 2-4 keep an affine each
    assert rec["frozen_bn_folded_into_conv"] == 11 and rec["frozen_bn_as_affine"] == 42
    trainable = {id(p) for p in net.parameters() if p.requires_grad}
    assert trainable <= {id(p) for p in trainer.parameters()}  # the optimizer's tensors are the trainer's
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        want = net.backbone(x)
        got = trainer.core.backbone(x)
    for k in want:
        assert torch.allclose(got[k], want[k], rtol=1e-4, atol=1e-4), k


def _steps(net, batches, levers: bool, prec: str, steps: int) -> list[float]:
    from mlbench.benchmarks.retinanet import workload
    from mlbench.training.recipe import OptimArgs, StepContext

    wl = workload.RetinaNetWorkload(definition.REFERENCE)
    wl.levers = levers
    opt, sched = wl.build_optimizer(net, OptimArgs(global_batch_size=2, steps_per_epoch=10, epochs=1))
    train = wl.wrap_model(net, CPU, False) if levers else net
    ctx = StepContext(device=CPU, autocast=lambda: precision.autocast(CPU, prec))
    train.train()
    out = []
    for batch in batches[:steps]:
        loss, _ = wl.loss(train, wl.to_device(copy.deepcopy(batch), ctx), ctx)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
        out.append(float(loss.detach()))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("prec,tol", [("fp32", 2e-4), ("bf16", 2e-2)])
def test_first_steps_losses_equal_the_plain_loop_on_the_reference_network(monkeypatch, prec, tol):
    bench = small_reference(monkeypatch)
    torch.manual_seed(0)
    net = model.build_model(bench)
    g = torch.Generator().manual_seed(5)
    batches = [([torch.rand(3, 64, 64, generator=g) for _ in range(2)], random_targets(g, (2, 0), 56, 264))
               for _ in range(2)]
    plain = _steps(copy.deepcopy(net), batches, False, prec, 2)
    levers = _steps(copy.deepcopy(net), batches, True, prec, 2)
    assert all(abs(a - b) <= tol * max(1.0, abs(a)) for a, b in zip(plain, levers)), (plain, levers)
    assert plain[0] != plain[1]  # the step trained (the second loss is over changed weights)


def test_levers_env_switch(monkeypatch):
    from mlbench.errors import ConfigError

    monkeypatch.setenv(levers.LEVERS_ENV, "off")
    assert not levers.levers_enabled()
    monkeypatch.setenv(levers.LEVERS_ENV, "maybe")
    with pytest.raises(ConfigError, match="MLBENCH_RETINANET_LEVERS"):
        levers.levers_enabled()


def test_degenerate_box_is_a_clear_error():
    from mlbench.errors import DataError

    with pytest.raises(DataError, match="no width or height"):
        levers.check_boxes([{"boxes": torch.tensor([[1.0, 1.0, 5.0, 5.0]])},
                          {"boxes": torch.tensor([[4.0, 2.0, 4.0, 9.0]])}])
    levers.check_boxes([{"boxes": torch.zeros(0, 4)}])


@pytest.mark.slow
def test_tiny_run_records_the_levers(tmp_path):
    import os
    import subprocess
    import sys

    out = tmp_path / "runs"
    proc = subprocess.run(
        [sys.executable, "-m", "mlbench", "train", "retinanet", "--size", "tiny", "--device", "cpu", "--seed", "3",
         "--epochs", "1", "--workers", "0", "--channels-last", "--output-dir", str(out)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert proc.returncode in (0, 1), proc.stderr
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    result = json.loads((run_dir / "result.json").read_text())
    speed = result["speed"]
    assert speed["levers"] == "on" and speed["batched_matching_and_loss"] and speed["channels_last_input"]
    assert speed["adam"] == "default" and result["runs"][0]["speed"] == speed
    assert result["config"]["channels_last"] is True
