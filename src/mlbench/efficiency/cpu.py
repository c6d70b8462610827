"""A CPU's theoretical peak from what the machine reports: cores used x clock x FLOPs per cycle per core.

FLOPs per cycle come from the instruction set the kernels use at the run's precision (oneDNN/MKL for torch,
MLAS for ONNX Runtime pick the widest the CPU has), read from the CPU flags:
- fp32: fused multiply-add (FMA) on AVX-512 (16 lanes) or AVX2 (8 lanes), 2 FLOPs per lane, times the FMA
  units per core. Two units are assumed (Intel server cores since Haswell, AMD since Zen 2); AMD Zen and Zen+
  (family 17h, models below 30h) split 256-bit operations over 128-bit units, and Zen 4 (family 19h with
  AVX-512) runs 512-bit operations over two 256-bit units, so both count half the width. Some Xeon Silver/Bronze
  and Gold 5xxx parts of the Skylake/Cascade Lake generations have one AVX-512 FMA unit: the peak is then twice
  theirs, which makes their MFU read low, never high.
- bf16: AMX-BF16 tiles (1024 FLOPs per cycle per core), else AVX512-BF16 dot products (VDPBF16PS: twice the
  fp32 lanes), else the kernels convert to fp32 and the fp32 rate is the bound.
- fp16: AMX-FP16 (1024), else AVX512-FP16 (twice the fp32 lanes), else converted to fp32 (the fp32 rate).
- int8: AMX-INT8 tiles (2048 ops per cycle per core), else VNNI dot products (AVX512-VNNI or AVX-VNNI,
  VPDPBUSD: 4 products per 32-bit lane), else AVX2's VPMADDUBSW + VPMADDWD pair (2 products per 16-bit lane,
  two instructions per step).
- Arm: Neoverse N1/N2 (two 128-bit FMA pipes) and V1/V2 (four 128-bit pipes), identified by "CPU part", for
  fp32; other precisions and cores are not known, and say so.

The clock is the highest the machine reports: cpufreq's ``cpuinfo_max_freq`` (the boost clock), else the base
clock in the model name ("@ 2.10GHz"), else ``cpu MHz`` in /proc/cpuinfo (the current clock; in a VM usually the
host's nominal rate, below its boost clock, so the peak may be understated and the note says so). When none can
be read, there is no theoretical peak and the record says why: it is never guessed.

Cores used: the run's threads, at most the physical cores this process may run on (SMT siblings share the FMA
units). Every input is recorded beside the figure.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

_HALF_PRECISION = {  # precision -> (AMX flag, its name, vector flag, its name, what the CPU lacks otherwise)
    "bf16": ("amx_bf16", "AMX-BF16", "avx512_bf16", "AVX512-BF16 dot products (VDPBF16PS)",
             "no bf16 instructions (AVX512-BF16, AMX)"),
    "fp16": ("amx_fp16", "AMX-FP16", "avx512_fp16", "AVX512-FP16", "no fp16 arithmetic (AVX512-FP16, AMX-FP16)"),
}
_ARM_PARTS = {  # "CPU part" -> (name, FP/SIMD pipes of 128 bits, each an FMA)
    "0xd0c": ("Neoverse N1", 2), "0xd49": ("Neoverse N2", 2), "0xd40": ("Neoverse V1", 4), "0xd4f": ("Neoverse V2", 4),
}


def read_cpuinfo(text: str | None = None) -> dict[str, Any]:
    """The fields of /proc/cpuinfo the peak needs: vendor, family, model, model name, flags, Arm part, the
    clock in MHz per logical CPU, and the (package, core) of each logical CPU."""
    if text is None:
        try:
            text = Path("/proc/cpuinfo").read_text()
        except OSError:
            text = ""
    info: dict[str, Any] = {"flags": set(), "mhz": {}, "core_of": {}}
    cpu, package = None, "0"
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        if key == "processor":
            cpu, package = int(value) if value.isdigit() else None, "0"
        elif key == "physical id":
            package = value
        elif key == "core id" and cpu is not None:
            info["core_of"][cpu] = (package, value)
        elif key == "cpu MHz" and cpu is not None:
            try:
                info["mhz"][cpu] = float(value)
            except ValueError:
                pass
        elif key in ("flags", "Features") and not info["flags"]:
            info["flags"] = set(value.split())
        elif key in ("vendor_id", "cpu family", "model", "model name", "CPU implementer", "CPU part"):
            info.setdefault(key, value)
    return info


def physical_cores(info: dict[str, Any], cpus: set[int]) -> int:
    """Physical cores among the logical CPUs ``cpus`` (each SMT sibling pair counts once)."""
    known = {info["core_of"][c] for c in cpus if c in info["core_of"]}
    return len(known) + sum(1 for c in cpus if c not in info["core_of"])


def clock_ghz(info: dict[str, Any], cpus: set[int], sys_root: Path = Path("/sys")) -> tuple[float | None, str]:
    """(GHz, where it was read) for the CPUs used, or (None, why it could not be read)."""
    khz = []
    for c in sorted(cpus):
        try:
            khz.append(int((sys_root / f"devices/system/cpu/cpu{c}/cpufreq/cpuinfo_max_freq").read_text()))
        except (OSError, ValueError):
            pass
    if khz:
        return max(khz) / 1e6, "cpufreq cpuinfo_max_freq (the highest boost clock the driver reports)"
    m = re.search(r"@\s*([0-9.]+)\s*GHz", info.get("model name", ""))
    if m:
        return float(m.group(1)), "the base clock in the processor's model name (boost clocks may be higher)"
    mhz = [info["mhz"][c] for c in cpus if c in info["mhz"]] or list(info["mhz"].values())
    if mhz:
        return max(mhz) / 1e3, ("'cpu MHz' in /proc/cpuinfo (the current clock; in a virtual machine usually the "
                                "host's nominal rate, below its boost clock: the peak may be understated)")
    return None, ("the CPU clock cannot be read: no cpufreq in /sys, no clock in the model name, no 'cpu MHz' "
                  "in /proc/cpuinfo")


def _x86_width(info: dict[str, Any]) -> tuple[int, int, str]:
    """(vector bits of one FMA instruction, bits the core computes per FMA unit and cycle, the ISA's name)."""
    flags = info["flags"]
    family = int(info.get("cpu family", "0") or 0)
    model = int(info.get("model", "0") or 0)
    amd = info.get("vendor_id") == "AuthenticAMD"
    if "avx512f" in flags:
        datapath = 256 if amd and family == 0x19 else 512  # Zen 4 runs 512-bit operations on 256-bit units
        return 512, datapath, "AVX-512 FMA"
    if "avx2" in flags and "fma" in flags:
        datapath = 128 if amd and family == 0x17 and model < 0x30 else 256  # Zen/Zen+: 128-bit units
        return 256, datapath, "AVX2 FMA"
    if "avx" in flags:
        return 256, 256, "AVX (separate multiply and add)"
    return 128, 128, "SSE (separate multiply and add)"


def flops_per_cycle(info: dict[str, Any], precision: str) -> tuple[float | None, str]:
    """(FLOPs per cycle per core at ``precision``, how it was derived) or (None, why not known)."""
    flags = info["flags"]
    if info.get("CPU implementer") or "asimd" in flags:  # Arm
        part = (info.get("CPU part") or "").lower()
        if part not in _ARM_PARTS:
            return None, f"FLOPs per cycle of this Arm core (CPU part {part or 'unknown'}) are not known"
        name, pipes = _ARM_PARTS[part]
        if precision != "fp32":
            return None, f"the {precision} rate of {name} is not known (only its fp32 FMA rate is)"
        return pipes * 4 * 2.0, f"{name}: {pipes} x 128-bit FMA pipes x 4 fp32 lanes x 2 FLOPs"
    width, datapath, isa = _x86_width(info)
    units = 2
    lanes32 = datapath // 32
    shape = f"{datapath}-bit datapath" + (f", {width}-bit instructions" if width != datapath else "")
    if "FMA" in isa:
        fp32 = float(units * lanes32 * 2)
        fp32_text = f"{isa}: {units} FMA units x {lanes32} fp32 lanes ({shape}) x 2 FLOPs"
    else:  # one multiply and one add unit, one FLOP per lane each
        fp32 = float(lanes32 * 2)
        fp32_text = f"{isa}: a multiply and an add unit x {lanes32} fp32 lanes ({shape})"
    if precision == "fp32":
        return fp32, fp32_text
    if precision in _HALF_PRECISION:
        amx, amx_name, vector, vector_name, fallback = _HALF_PRECISION[precision]
        if amx in flags:
            return 1024.0, f"{amx_name} tiles: 1024 FLOPs per cycle per core"
        if vector in flags:
            return 2 * fp32, f"{vector_name}: twice the fp32 rate ({fp32_text})"
        return fp32, f"{fallback}: {precision} is computed in fp32, at most {fp32_text}"
    if precision == "int8":
        lanes8 = datapath // 8
        if "amx_int8" in flags:
            return 2048.0, "AMX-INT8 tiles: 2048 ops per cycle per core"
        if "avx512_vnni" in flags and width == 512 or "avx_vnni" in flags:
            vnni = "AVX512-VNNI" if "avx512_vnni" in flags else "AVX-VNNI"
            return units * lanes8 * 2.0, (f"{vnni} dot products (VPDPBUSD): {units} units x {lanes8} int8 products "
                                          f"per cycle ({datapath}-bit datapath) x 2 ops")
        if "avx2" in flags:
            return units * lanes8 * 2.0 / 2, (f"AVX2 without VNNI: VPMADDUBSW + VPMADDWD, two instructions per {lanes8} "
                                              f"int8 products on {units} units ({datapath}-bit datapath) x 2 ops")
        return None, "no int8 dot-product instructions (AVX2, VNNI, AMX): the int8 rate is not known"
    return None, f"no CPU peak is known for {precision}"


def theoretical_peak(precision: str, threads: int, cpuinfo: str | None = None, sys_root: Path = Path("/sys"),
                     cpus: set[int] | None = None) -> dict[str, Any]:
    """The CPU's theoretical peak at ``precision`` with ``threads`` threads:
    ``{"flops_per_s" (None when unknown), "why" (when None), "inputs": {...every input...}}``."""
    info = read_cpuinfo(cpuinfo)
    if cpus is None:
        try:
            cpus = set(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            cpus = set(range(os.cpu_count() or 1))
    cores = physical_cores(info, cpus)
    used = max(1, min(int(threads), cores))
    ghz, clock_source = clock_ghz(info, cpus, sys_root)
    per_cycle, how = flops_per_cycle(info, precision)
    inputs = {"processor": info.get("model name") or info.get("CPU part") or "unknown",
              "vendor": info.get("vendor_id") or info.get("CPU implementer"),
              "family_model": (f"{info['cpu family']}/{info['model']}" if "cpu family" in info else None),
              "threads": int(threads), "logical_cpus": len(cpus), "physical_cores": cores, "cores_used": used,
              "clock_ghz": ghz, "clock_source": clock_source,
              "flops_per_cycle_per_core": per_cycle, "instructions": how,
              "flags": sorted(f for f in info["flags"] if f in _FLAGS_USED)}
    out: dict[str, Any] = {"flops_per_s": None, "inputs": inputs,
                           "formula": "cores used x clock x FLOPs per cycle per core"}
    if ghz is None:
        out["why"] = clock_source
    elif per_cycle is None:
        out["why"] = how
    else:
        out["flops_per_s"] = used * ghz * 1e9 * per_cycle
    return out


_FLAGS_USED = ("avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni", "avx_vnni",
               "amx_bf16", "amx_fp16", "amx_int8", "asimd", "sve", "bf16", "i8mm")
