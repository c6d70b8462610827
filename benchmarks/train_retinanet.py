"""RetinaNet training throughput: mlbench (harness epoch, speed levers) against a plain torchvision loop.

Both sides train one initial model (reset to the same weights before every trial) on the same held batches,
at the same batch size and precision, with Adam and the recipe's warm-up; trials alternate plain, mlbench,
plain, mlbench, ... in one process, so that machine noise hits both, and the medians are reported.

- plain: the loop of torchvision's detection reference (``loss_dict = model(images, targets)``,
  ``sum(...).backward()``, ``torch.optim.Adam`` with torch's default implementation), NCHW.
- mlbench: the real harness epoch (``mlbench.training.harness.train_epoch``: progress line, loss read-back,
  scheduler, data-wait timing) through the RetinaNet workload, with its speed levers
  (``mlbench.benchmarks.retinanet.trainer``: batched matching and loss, cached anchors, folded frozen batch norm,
  fused Adam on CUDA) plus ``--channels-last`` and ``--compile`` when given; ``--no-levers`` measures the
  harness alone on the plain model (its overhead).

Before the trials, ``--check-steps`` steps of each side from the same weights on the same batches compare the
loss values (the levers must not change them beyond rounding). ``--data-dir`` also measures the share of a
step spent waiting for data: the harness epoch on the real loader (JPEG decoding in ``--workers`` processes).

    python benchmarks/train_retinanet.py --case mini                 # generated shapes, the mini model
    python benchmarks/train_retinanet.py --case tiny --steps 8
    python benchmarks/train_retinanet.py --case reference --batch-size 2 --image-size 256 --steps 4
    python benchmarks/train_retinanet.py --case reference --device cuda --precision bf16 --batch-size 32 \\
        --channels-last --compile --json out.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time
from dataclasses import dataclass

import side_by_side
import torch

from mlbench import registry
from mlbench.config import TrainConfig
from mlbench.training import distributed, precision
from mlbench.training.batches import DataSpec
from mlbench.training.harness import RunOutcome, train_epoch
from mlbench.training.recipe import OptimArgs, StepContext


def plain_loop(model, opt, sched, batches, device, prec: str, losses: list | None = None) -> int:
    """The baseline: torchvision's detection training step, written by hand."""
    model.train()
    n = 0
    for images, targets in batches:
        images = [im.to(device, non_blocking=True) for im in images]
        targets = [{k: (v.to(device) if torch.is_tensor(v) else v) for k, v in t.items()} for t in targets]
        with precision.autocast(device, prec):
            loss_dict = model(images, targets)
        loss = sum(loss_dict.values())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
        n += len(images)
        if losses is not None:
            losses.append(float(loss.detach()))
    precision.synchronize(device)
    return n


@dataclass
class Side:
    """One side of the comparison: its workload, the model, the module the loop calls, the initial weights."""

    wl: object
    model: torch.nn.Module
    train: torch.nn.Module
    init: dict

    def fresh(self, bs: int, steps: int):
        """The initial weights back, a new optimizer and schedule (one epoch of ``steps``)."""
        self.model.load_state_dict(self.init)
        opt, sched = self.wl.build_optimizer(self.model, OptimArgs(global_batch_size=bs, steps_per_epoch=steps,
                                                                   epochs=1))
        return self.train, opt, sched


def make_side(handle, base, device, levers: bool, channels_last: bool, compile_: bool) -> Side:
    wl = handle.workload()
    if hasattr(wl, "levers"):
        wl.levers = levers
    model = copy.deepcopy(base)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    train = wl.wrap_model(model, device, False)
    if compile_:
        train = wl.compile_model(train)
    return Side(wl, model, train, copy.deepcopy(model.state_dict()))


def harness_epoch(side: Side, batches, cfg, ctx, bs: int, steps: int, losses: list | None = None) -> RunOutcome:
    """mlbench's side: the harness epoch (or, with ``losses``, the workload's step with each loss read)."""
    train, opt, sched = side.fresh(bs, steps)
    out = RunOutcome(seed=0)
    if losses is None:
        train_epoch(train, opt, sched, None, side.wl, batches, 0, cfg, ctx, lambda msg: None, out,
                    distributed.DistInfo())
    else:
        train.train()
        for batch in batches:
            loss, _ = side.wl.loss(train, side.wl.to_device(batch, ctx), ctx)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            sched.step()
            losses.append(float(loss.detach()))
    precision.synchronize(ctx.device)
    return out


def load_batches(handle, args, bs: int, steps: int) -> side_by_side.Held:
    """Decoded batches held in memory (mini/tiny: the generated set; reference: synthetic images at the
    model's input size), so that both loops time the model step and not the JPEG decoder."""
    wl = handle.workload()
    if args.case == "reference":
        return side_by_side.Held([wl.synthetic_batch(bs, StepContext(device=torch.device("cpu")))] * steps)
    data = wl.build_data(DataSpec(batch_size=bs, eval_batch_size=bs, workers=0))
    return side_by_side.Held.first(data.train, steps)


def make_data(root: str, images: int, size: int, distinct: int = 16) -> None:
    """An OpenImages-MLPerf-layout set for the data-share figure when no real set is at hand: ``distinct``
    generated ``size`` x ``size`` JPEGs (shapes on textured backgrounds) named ``images`` times in the train
    json (decoding them costs what decoding distinct files costs), and 8 validation images."""
    from pathlib import Path

    from mlbench.detection import synthetic

    labels = "openimages-mlperf.json"
    path = Path(root) / "train" / "labels" / labels
    if path.is_file() and len(json.loads(path.read_text())["images"]) >= images:
        return
    synthetic.write_split(Path(root), "validation", 8, size, seed=2, labels_file=labels)
    synthetic.write_split(Path(root), "train", distinct, size, seed=1, labels_file=labels)
    coco = json.loads(path.read_text())
    ims, anns = [], []
    for k in range(images):
        im = coco["images"][k % distinct]
        ims.append({**im, "id": k + 1})
        anns += [{**a, "id": len(anns) + 1, "image_id": k + 1} for a in coco["annotations"] if a["image_id"] == im["id"]]
    path.write_text(json.dumps({**coco, "images": ims, "annotations": anns}))


def data_share(side: Side, args, cfg, ctx, bs: int) -> dict:
    """The harness epoch on the real loader: images/s and the share of the step spent waiting for data."""
    spec = DataSpec(batch_size=bs, eval_batch_size=bs, workers=args.workers, data_dir=args.data_dir,
                    pin_memory=ctx.device.type == "cuda")
    data = side.wl.build_data(spec)
    batches = side_by_side.Streamed(data.train, args.data_steps)
    harness_epoch(side, side_by_side.Streamed(data.train, 2), cfg, ctx, bs, 2)  # starts the workers
    out = harness_epoch(side, batches, cfg, ctx, bs, args.data_steps)
    return {"images_per_s": out.samples / out.train_s, "data_wait_share": out.data_wait_s / out.train_s,
            "steps": len(batches), "generated_size": args.make_data or None, "workers": data.train.loader.num_workers
            if hasattr(data.train, "loader") else args.workers}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", choices=("tiny", "mini", "reference"), default="mini")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    ap.add_argument("--batch-size", type=int, default=None, help="default: the size's batch (reference: 2)")
    ap.add_argument("--image-size", type=int, default=None,
                    help="reference only: a smaller input than 800 (for CPU figures; same network)")
    ap.add_argument("--steps", type=int, default=16, help="steps per trial")
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--channels-last", action="store_true", help="mlbench side: channels_last weights and input")
    ap.add_argument("--compile", action="store_true", help="mlbench side: torch.compile backbone+head and loss")
    ap.add_argument("--no-levers", action="store_true", help="mlbench side without the automatic levers "
                                                                "(MLBENCH_RETINANET_LEVERS=off): harness overhead")
    ap.add_argument("--check-steps", type=int, default=3, help="steps of the loss comparison (0: none)")
    ap.add_argument("--data-dir", default=None, help="also measure the data share on this set's real loader")
    ap.add_argument("--data-steps", type=int, default=20)
    ap.add_argument("--make-data", type=int, default=0, metavar="SIZE",
                    help="first generate an OpenImages-layout set of SIZExSIZE JPEGs in --data-dir (when missing)")
    ap.add_argument("--workers", type=int, default=None, help="loader workers for --data-dir (default: auto)")
    ap.add_argument("--clock", choices=("wall", "process"), default="wall",
                    help="time the trials by the wall clock, or by this process's CPU time (a busy shared CPU "
                         "machine; with one thread); the device is timed by the wall clock only")
    ap.add_argument("--json", default=None, help="write the figures here")
    args = ap.parse_args()
    os.environ.setdefault("MLBENCH_RETINANET_BACKBONE", "random")  # throughput only: no download
    if args.clock == "process" and args.device != "cpu":
        ap.error("--clock process times the CPU: use it with --device cpu")
    fp16_scaler = args.precision == "fp16"
    if fp16_scaler:
        ap.error("fp16 needs gradient scaling, which this comparison leaves out: use --precision bf16")

    handle = registry.get("retinanet", args.case)
    if args.image_size:
        if args.case != "reference":
            ap.error("--image-size is for --case reference")
        from mlbench.benchmarks.retinanet import definition

        bench = definition.REFERENCE.derive(hparams={**definition.REFERENCE.hparams, "image_size": args.image_size},
                                            input_shape=(3, args.image_size, args.image_size))
        definition.SIZES["reference"] = bench
        handle = registry.get("retinanet", args.case)
    device = precision.resolve_device(args.device)
    bs = args.batch_size or (2 if args.case == "reference" else handle.definition.batch_size)
    ctx = StepContext(device=device, channels_last=args.channels_last,
                      autocast=lambda: precision.autocast(device, args.precision))
    batches = load_batches(handle, args, bs, args.steps)
    torch.manual_seed(0)
    base = handle.workload().build_model().to(device)
    cfg = TrainConfig(benchmark="retinanet", size=args.case, precision=args.precision, log_every=20)

    # cudnn.benchmark is global: the plain side runs with torch's default, mlbench's with what it chose
    cudnn_plain = torch.backends.cudnn.benchmark
    plain = make_side(handle, base, device, False, False, False)
    mine = make_side(handle, base, device, not args.no_levers, args.channels_last, args.compile)
    cudnn_mine = torch.backends.cudnn.benchmark
    del base
    report: dict = {"case": args.case, "device": str(device), "precision": args.precision, "batch_size": bs,
                    "image_size": handle.definition.hparams["image_size"], "steps": args.steps,
                    "trials": args.trials, "torch": torch.__version__,
                    "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                    "mlbench_side": {"levers": not args.no_levers, "channels_last": args.channels_last,
                                     "compile": args.compile}}

    t = time.perf_counter()
    warm = side_by_side.Held(batches.batches[:2])
    torch.backends.cudnn.benchmark = cudnn_plain
    plain_loop(*plain.fresh(bs, 2), warm, device, args.precision)
    torch.backends.cudnn.benchmark = cudnn_mine
    harness_epoch(mine, warm, cfg, ctx, bs, 2)  # compiles with --compile
    report["warm_up_s"] = time.perf_counter() - t
    report["speed"] = mine.wl.speed_record()
    print(f"warm-up {report['warm_up_s']:.1f} s; mlbench speed choices: {json.dumps(report['speed'])}", flush=True)

    if args.check_steps:
        first = side_by_side.Held(batches.batches[:args.check_steps])
        a: list[float] = []
        b: list[float] = []
        torch.backends.cudnn.benchmark = cudnn_plain
        plain_loop(*plain.fresh(bs, args.check_steps), first, device, args.precision, losses=a)
        torch.backends.cudnn.benchmark = cudnn_mine
        harness_epoch(mine, first, cfg, ctx, bs, args.check_steps, losses=b)
        rel = max(abs(x - y) / max(abs(x), 1e-12) for x, y in zip(a, b))
        report["loss_check"] = {"plain": a, "mlbench": b, "max_rel_diff": rel}
        print(f"losses over the first {len(a)} steps: plain {[round(x, 5) for x in a]}  "
              f"mlbench {[round(x, 5) for x in b]}  max relative difference {rel:.2e}", flush=True)

    clock = time.process_time if args.clock == "process" else time.perf_counter
    report["clock"] = args.clock
    ratios, h_tp, p_tp = [], [], []
    for _ in range(args.trials):
        torch.backends.cudnn.benchmark = cudnn_plain
        t = clock()
        n = plain_loop(*plain.fresh(bs, args.steps), batches, device, args.precision)
        p_tp.append(n / (clock() - t))
        torch.backends.cudnn.benchmark = cudnn_mine
        t = clock()
        out = harness_epoch(mine, batches, cfg, ctx, bs, args.steps)
        h_tp.append(out.samples / (clock() - t))
        ratios.append(h_tp[-1] / p_tp[-1])
        print(f"trial: plain {p_tp[-1]:7.2f} images/s  mlbench {h_tp[-1]:7.2f} images/s  ratio {ratios[-1]:.3f}",
              flush=True)
    report.update(plain_images_per_s=p_tp, mlbench_images_per_s=h_tp, ratios=ratios,
                  median_plain=statistics.median(p_tp), median_mlbench=statistics.median(h_tp),
                  median_ratio=statistics.median(ratios))
    side = ", ".join(k for k, v in report["mlbench_side"].items() if v) or "no levers"
    print(f"\nRetinaNet {args.case} ({device}, {args.precision}, batch {bs}, {report['image_size']}x"
          f"{report['image_size']}, {args.steps} steps/trial, {args.trials} trials, {args.clock} clock; "
          f"mlbench with {side})")
    print(f"median throughput: plain {report['median_plain']:.2f}  mlbench {report['median_mlbench']:.2f} images/s")
    print(f"median ratio mlbench/plain: {report['median_ratio']:.3f} (range {min(ratios):.3f}-{max(ratios):.3f})")
    if device.type == "cuda":
        report["max_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    if args.data_dir:
        if args.make_data:
            make_data(args.data_dir, bs * (args.data_steps + 2), args.make_data)
        report["data"] = data_share(mine, args, cfg, ctx, bs)
        d = report["data"]
        print(f"real loader ({d['workers']} workers, {d['steps']} steps): {d['images_per_s']:.2f} images/s, "
              f"data wait {100 * d['data_wait_share']:.1f}% of the step time")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
