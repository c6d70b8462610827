"""Datasheet peaks of the accelerators users run, per precision, dense (without structured sparsity).

Each entry gives the vendor's figure in TFLOP/s (int8: TOPS) for fp32 (the CUDA/vector cores), tf32, bf16,
fp16, fp8 and int8 on the tensor/matrix cores, and names the document it comes from. Where a vendor lists the
tensor-core figures with 2:4 sparsity only (the H100/H200/B200/GB200/L4 datasheets mark them with an asterisk),
the dense figure is half of it, as the datasheets' footnotes say; ``None`` is a precision the part lacks.

An accelerator is identified from the name torch reports (``torch.cuda.get_device_name``), for example
"NVIDIA H100 80GB HBM3" (SXM), "NVIDIA H100 PCIe", "NVIDIA A100-SXM4-80GB" or "AMD Instinct MI300X".
Names are matched on whole words, most specific first, so "NVIDIA GB200" is not a B200, "NVIDIA L40" is not
an L40S and "NVIDIA RTX A1000" is not an A100. An unknown name gives None: the caller says "no datasheet peak
known" and asks for ``--peak-tflops``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PRECISIONS = ("fp32", "tf32", "bf16", "fp16", "fp8", "int8")

_H100 = "NVIDIA H100 Tensor Core GPU datasheet"
_H200 = "NVIDIA H200 Tensor Core GPU datasheet"
_GH200 = "NVIDIA GH200 Grace Hopper Superchip datasheet"
_BLACKWELL = "NVIDIA Blackwell datasheet (GB200 NVL72 / HGX B200 technical specifications, per GPU)"
_SPARSE = "tensor-core figures listed with sparsity, dense = half"


@dataclass(frozen=True)
class Accelerator:
    """One accelerator's dense datasheet peaks (TFLOP/s; int8 in TOPS) and where they come from."""

    name: str
    pattern: str  # regular expression over the torch device name (case-insensitive)
    fp32: float
    tf32: float | None
    bf16: float | None
    fp16: float | None
    fp8: float | None
    int8: float | None
    source: str
    note: str = ""

    def tflops(self, precision: str) -> float | None:
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; known: {', '.join(PRECISIONS)}")
        return getattr(self, precision)


def _sparse_halved(fp32: float, tf32: float, bf16: float, fp16: float, fp8: float, int8: float) -> dict:
    """Dense figures from a datasheet that lists the tensor-core peaks with sparsity (fp32 is dense there)."""
    return {"fp32": fp32, "tf32": tf32 / 2, "bf16": bf16 / 2, "fp16": fp16 / 2, "fp8": fp8 / 2, "int8": int8 / 2}


# The same silicon under several names: H200 and GH200 compute as an H100 SXM, the H200 NVL as the H100 NVL.
_HOPPER_SXM = _sparse_halved(67.0, 989.0, 1979.0, 1979.0, 3958.0, 3958.0)
_HOPPER_NVL = _sparse_halved(60.0, 835.0, 1671.0, 1671.0, 3341.0, 3341.0)

# Most specific first: the first pattern that matches the device name wins.
ACCELERATORS: tuple[Accelerator, ...] = (
    Accelerator("GB200 (per Blackwell GPU)", r"\bGB200\b",
                **_sparse_halved(80.0, 2500.0, 5000.0, 5000.0, 10000.0, 10000.0),
                source=f"{_BLACKWELL}, GB200 NVL72 column; {_SPARSE}",
                note="earlier revisions of the GB200 datasheet gave fp32 90 TFLOP/s per GPU"),
    Accelerator("B200 (HGX)", r"\bB200\b", **_sparse_halved(75.0, 2200.0, 4500.0, 4500.0, 9000.0, 9000.0),
                source=f"{_BLACKWELL}, HGX B200 column; {_SPARSE}"),
    Accelerator("GH200 (Hopper GPU)", r"\bGH200\b", **_HOPPER_SXM, source=f"{_GH200}; {_SPARSE}"),
    Accelerator("H200 NVL", r"\bH200\b.*\bNVL\b", **_HOPPER_NVL, source=f"{_H200}, H200 NVL column; {_SPARSE}"),
    Accelerator("H200 SXM", r"\bH200\b", **_HOPPER_SXM, source=f"{_H200}, H200 SXM column; {_SPARSE}"),
    Accelerator("H100 PCIe", r"\bH100\b.*\bPCIe\b", **_sparse_halved(51.0, 756.0, 1513.0, 1513.0, 3026.0, 3026.0),
                source=f"{_H100}, H100 PCIe column; {_SPARSE}"),
    Accelerator("H100 NVL", r"\bH100\b.*\bNVL\b", **_HOPPER_NVL, source=f"{_H100}, H100 NVL column; {_SPARSE}"),
    Accelerator("H100 SXM", r"\bH100\b", **_HOPPER_SXM,
                source=f"{_H100}, H100 SXM column; {_SPARSE}",
                note="torch names the SXM part 'NVIDIA H100 80GB HBM3'; an H100 whose name says neither PCIe nor "
                     "NVL is taken as SXM, the highest peak"),
    Accelerator("A100 80GB", r"\bA100\b.*\b80\s*GB\b", fp32=19.5, tf32=156.0, bf16=312.0, fp16=312.0, fp8=None,
                int8=624.0, source="NVIDIA A100 Tensor Core GPU datasheet (dense figures; SXM and PCIe alike)"),
    Accelerator("A100 40GB", r"\bA100\b", fp32=19.5, tf32=156.0, bf16=312.0, fp16=312.0, fp8=None, int8=624.0,
                source="NVIDIA A100 Tensor Core GPU datasheet (dense figures; SXM and PCIe alike)"),
    Accelerator("L40S", r"\bL40S\b", fp32=91.6, tf32=183.0, bf16=362.05, fp16=362.05, fp8=733.0, int8=733.0,
                source="NVIDIA L40S GPU datasheet (dense figures; sparsity doubles them)"),
    Accelerator("L4", r"\bL4\b", **_sparse_halved(30.3, 120.0, 242.0, 242.0, 485.0, 485.0),
                source=f"NVIDIA L4 Tensor Core GPU datasheet; {_SPARSE}"),
    Accelerator("MI325X", r"\bMI325X\b", fp32=163.4, tf32=653.7, bf16=1307.4, fp16=1307.4, fp8=2614.9,
                int8=2614.9, source="AMD Instinct MI325X accelerator data sheet (peak dense figures; fp32 matrix)"),
    Accelerator("MI300X", r"\bMI300X\b", fp32=163.4, tf32=653.7, bf16=1307.4, fp16=1307.4, fp8=2614.9,
                int8=2614.9, source="AMD Instinct MI300X accelerator data sheet (peak dense figures; fp32 matrix)"),
)


def identify(device_name: str) -> Accelerator | None:
    """The table entry for the device name torch reports, or None when no entry matches."""
    for acc in ACCELERATORS:
        if re.search(acc.pattern, device_name or "", flags=re.IGNORECASE):
            return acc
    return None


def table_rows() -> list[list[str]]:
    """The table as text cells (name, one column per precision, source), for docs and ``--help`` texts."""
    def cell(v: float | None) -> str:
        return "-" if v is None else f"{v:g}"
    return [[a.name, *(cell(a.tflops(p)) for p in PRECISIONS), a.source] for a in ACCELERATORS]
