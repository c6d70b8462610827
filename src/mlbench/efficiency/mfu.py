"""MFU: achieved model FLOP/s over the hardware's peak x devices, beside the fraction of the measured kernel peak.

The hardware peak (``hardware_peak``) is, in this order:
- ``--peak-tflops`` when the user gives one (per device, at the run's precision; recorded as user-given, with
  the datasheet or theoretical figure beside it when there is one);
- on a GPU, the datasheet figure of the accelerator torch names (``mlbench.efficiency.datasheet``) for the
  arithmetic the run uses: an fp32 run counts the TF32 tensor-core peak where torch lets TF32 run (cuDNN
  convolutions by default on CUDA, matmuls when ``torch.backends.cuda.matmul.allow_tf32`` is set);
- on a CPU, the theoretical peak from the cores used, the clock and the FLOPs per cycle of the instruction set
  (``mlbench.efficiency.cpu``).
Otherwise there is no MFU, and the record says why ("no datasheet peak known for ..."; the clock could not be
read) and how to give one.

The second figure divides by the measured kernel peak (``mlbench.efficiency.kernels``). Neither peak is ever
raised by what a run achieved: a fraction above 1 is shown as it is and flagged, with its likely cause, as a sign
that the FLOP count or the peak is wrong.
"""

from __future__ import annotations

from typing import Any

from mlbench.efficiency import cpu, datasheet

PEAK_HELP = ("give the peak with --peak-tflops (TFLOP/s per device at the run's precision, from the vendor's "
             "datasheet, dense)")


def math_precision(device: str, precision: str, convolutional: bool = False) -> tuple[str, str]:
    """(the datasheet column a run at ``precision`` on ``device`` computes in, why). Only fp32 on a CUDA GPU
    differs from the run's precision: TF32 where torch allows it."""
    if precision != "fp32" or not device.startswith("cuda"):
        return precision, ""
    import torch

    if getattr(torch.version, "hip", None):
        return "fp32", "fp32 on ROCm: matrix cores in fp32 (TF32 is off by default)"
    if torch.backends.cuda.matmul.allow_tf32:
        return "tf32", "fp32 run with TF32 tensor cores allowed for matmuls (torch.backends.cuda.matmul.allow_tf32)"
    if convolutional and torch.backends.cudnn.allow_tf32:
        return "tf32", ("fp32 run of a convolutional model: cuDNN runs its convolutions on TF32 tensor cores "
                        "(torch.backends.cudnn.allow_tf32, on by default)")
    return "fp32", "fp32 matmuls without TF32 (torch.backends.cuda.matmul.allow_tf32 is off): the fp32 cores"


def is_convolutional(model: Any) -> bool:
    import torch

    conv = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
    try:
        return any(isinstance(m, conv) for m in model.modules())
    except AttributeError:
        return False


def device_name(device: str) -> str:
    import torch

    index = int(device.split(":", 1)[1]) if ":" in device else torch.cuda.current_device()
    return torch.cuda.get_device_name(index)


def hardware_peak(device: str, precision: str, *, threads: int = 1, user_tflops: float | None = None,
                  convolutional: bool = False, name: str | None = None) -> dict[str, Any]:
    """The peak MFU divides by, per device: ``{"kind": datasheet|theoretical|user|unknown, "flops_per_s" (None
    when unknown), "precision", "math", "source", ...}``; ``why`` says what is missing when there is none.
    ``name`` overrides the GPU name torch reports (tests)."""
    math, math_note = math_precision(device, precision, convolutional)
    rec: dict[str, Any] = {"kind": "unknown", "flops_per_s": None, "precision": precision, "math": math}
    if math_note:
        rec["math_note"] = math_note
    if device.startswith("cuda"):
        rec["device_name"] = name = name or device_name(device)
        acc = datasheet.identify(name)
        if acc is None:
            rec["why"] = f"no datasheet peak known for '{name}'"
        elif acc.tflops(math) is None:
            rec.update(accelerator=acc.name, source=acc.source,
                       why=f"the {acc.name} datasheet gives no {math} peak (no {math} units)")
        else:
            rec.update(kind="datasheet", flops_per_s=acc.tflops(math) * 1e12, accelerator=acc.name, source=acc.source)
            if acc.note:
                rec["note"] = acc.note
    else:
        rec["device_name"] = "cpu"
        theo = cpu.theoretical_peak(precision, threads)
        rec.update(inputs=theo["inputs"], formula=theo["formula"])
        if theo["flops_per_s"]:
            rec.update(kind="theoretical", flops_per_s=theo["flops_per_s"],
                       source="theoretical CPU peak: " + theo["formula"])
        else:
            rec["why"] = theo["why"]
    if user_tflops:
        if rec["flops_per_s"]:
            rec["instead_of"] = {k: rec[k] for k in ("kind", "flops_per_s", "source") if k in rec}
        rec.update(kind="user", flops_per_s=float(user_tflops) * 1e12, source="--peak-tflops (user-given)")
        rec.pop("why", None)
    elif not rec["flops_per_s"]:
        rec["why"] += f": no MFU; {PEAK_HELP}"
    return rec


def figures(achieved_flops_per_s: float, peak: dict[str, Any] | None, kernel: dict[str, Any] | None,
            precision: str, devices: int = 1) -> tuple[dict[str, float], list[str]]:
    """(metrics, flags) of a run that achieved ``achieved_flops_per_s`` in total on ``devices`` devices:
    ``compute/achieved_tflops``, ``compute/mfu`` and ``compute/peak_tflops`` (the hardware peak x devices),
    ``compute/kernel_peak_fraction`` and ``compute/kernel_peak_tflops``. A fraction above 1 is kept as it is;
    ``flags`` says so and why it probably happened."""
    devices = max(1, int(devices))
    m: dict[str, float] = {"compute/achieved_tflops": achieved_flops_per_s / 1e12}
    flags: list[str] = []
    pk = (peak or {}).get("flops_per_s")
    if pk:
        mfu = achieved_flops_per_s / (pk * devices)
        m["compute/peak_tflops"] = pk * devices / 1e12
        m["compute/mfu"] = mfu
        if mfu > 1:
            flags.append(f"MFU {mfu:.2f} is above 1: the FLOP count or the peak is wrong; likely cause: "
                         + _mfu_cause(peak))
    kp = (kernel or {}).get("flops_per_s")
    if kp and (kernel or {}).get("precision") == precision:
        frac = achieved_flops_per_s / (kp * devices)
        m["compute/kernel_peak_tflops"] = kp * devices / 1e12
        m["compute/kernel_peak_fraction"] = frac
        if frac > 1:
            again = " (measured again after the run)" if kernel.get("remeasured") else ""
            flags.append(f"the run's FLOP/s are {frac:.2f}x the measured kernel peak{again}: the microbenchmark "
                         "did not reach what the hardware does (measured while the machine was busy, or the run's "
                         "kernels beat its GEMM and convolutions), or the FLOP count is too high")
    return m, flags


def _mfu_cause(peak: dict[str, Any]) -> str:
    kind = peak.get("kind")
    if kind == "user":
        return (f"the --peak-tflops given ({peak['flops_per_s'] / 1e12:g} TFLOP/s per device) is below what the "
                "hardware does at this precision")
    if kind == "datasheet":
        return (f"the device '{peak.get('device_name')}' was taken for {peak.get('accelerator')} ({peak.get('math')} "
                f"peak); if that is not the part, give --peak-tflops; otherwise the FLOP count is too high")
    inputs = peak.get("inputs") or {}
    causes = []
    if "cpu MHz" in str(inputs.get("clock_source")) or "model name" in str(inputs.get("clock_source")):
        causes.append(f"the clock read ({inputs.get('clock_ghz')} GHz, {inputs.get('clock_source')}) is below the "
                      "clock the cores ran at")
    causes.append(f"the cores compute more per cycle than the {inputs.get('flops_per_cycle_per_core')} FLOPs "
                  f"assumed from the flags ({inputs.get('instructions')}; a virtual machine may report an "
                  "older CPU model than the host's)")
    causes.append("or the FLOP count is too high")
    return "; ".join(causes)


def summary_lines(metrics: dict[str, Any], compute: dict[str, Any] | None) -> list[str]:
    """The efficiency figures in words, for a command's closing summary (empty when nothing was counted)."""
    achieved = metrics.get("compute/achieved_tflops")
    if achieved is None or not compute:
        return []
    peak = compute.get("peak") or {}
    what = {"datasheet": f"{peak.get('accelerator')} datasheet, {peak.get('math')}",
            "theoretical": "theoretical CPU peak", "user": "--peak-tflops"}.get(str(peak.get("kind")), "")
    text = f"efficiency: {achieved:.4g} TFLOP/s achieved; "
    if metrics.get("compute/mfu") is not None:
        text += f"MFU {100 * metrics['compute/mfu']:.3g}% of {metrics['compute/peak_tflops']:.4g} TFLOP/s ({what})"
    else:
        text += f"no MFU ({peak.get('why') or 'no peak'})"
    if metrics.get("compute/kernel_peak_fraction") is not None:
        text += f"; {100 * metrics['compute/kernel_peak_fraction']:.3g}% of the measured kernel peak"
    return [text] + [f"  WARNING: {f}" for f in compute.get("flags") or []]
