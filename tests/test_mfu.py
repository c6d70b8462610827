"""MFU: datasheet peaks found from the names torch reports, a CPU's theoretical peak from what it reports,
fractions above 1 kept and flagged, and the transformer FLOPs formula against torch's counter."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlbench.efficiency import cpu, datasheet, flops, mfu


@pytest.mark.parametrize("name,expected", [
    ("NVIDIA H100 80GB HBM3", "H100 SXM"), ("NVIDIA H100 PCIe", "H100 PCIe"), ("NVIDIA H100 NVL", "H100 NVL"),
    ("NVIDIA H200", "H200 SXM"), ("NVIDIA H200 NVL", "H200 NVL"), ("NVIDIA B200", "B200 (HGX)"),
    ("NVIDIA GB200", "GB200 (per Blackwell GPU)"), ("NVIDIA A100-SXM4-80GB", "A100 80GB"),
    ("NVIDIA A100-SXM4-40GB", "A100 40GB"), ("NVIDIA A100-PCIE-40GB", "A100 40GB"),
    ("NVIDIA A100 80GB PCIe", "A100 80GB"), ("NVIDIA L40S", "L40S"), ("NVIDIA L4", "L4"),
    ("AMD Instinct MI300X", "MI300X"), ("AMD Instinct MI300X VF", "MI300X"), ("AMD Instinct MI325X", "MI325X"),
    # look-alikes that are other parts: never matched to a neighbour's peak
    ("NVIDIA L40", None), ("NVIDIA RTX A1000", None), ("NVIDIA A10G", None), ("AMD Instinct MI300A", None),
    ("NVIDIA GeForce RTX 4090", None), ("", None),
])
def test_device_names_torch_reports(name, expected):
    acc = datasheet.identify(name)
    assert (acc.name if acc else None) == expected


def test_datasheet_figures_are_dense():
    h100 = datasheet.identify("NVIDIA H100 80GB HBM3")
    # the datasheet's 1,979 TFLOPS bf16 is with sparsity: dense is half, and fp8 twice bf16
    assert h100.bf16 == pytest.approx(989.5) and h100.fp8 == 2 * h100.bf16 and h100.fp32 == 67.0
    assert datasheet.identify("NVIDIA A100-SXM4-80GB").fp8 is None  # Ampere has no fp8 units
    assert datasheet.identify("AMD Instinct MI300X").bf16 == pytest.approx(1307.4)
    for acc in datasheet.ACCELERATORS:
        assert acc.source and all(acc.tflops(p) is None or acc.tflops(p) > 0 for p in datasheet.PRECISIONS)
        assert acc.tflops("bf16") >= acc.tflops("tf32") >= acc.fp32 / 2


def test_gpu_peak_from_the_datasheet_or_the_user():
    pk = mfu.hardware_peak("cuda:0", "bf16", name="NVIDIA H100 80GB HBM3")
    assert pk["kind"] == "datasheet" and pk["flops_per_s"] == pytest.approx(989.5e12) and "H100" in pk["source"]
    # fp32: a convolutional model runs cuDNN's TF32 tensor cores (torch's default); plain matmuls do not
    assert mfu.hardware_peak("cuda:0", "fp32", convolutional=True, name="NVIDIA L4")["math"] == "tf32"
    assert mfu.hardware_peak("cuda:0", "fp32", name="NVIDIA L4")["flops_per_s"] == pytest.approx(30.3e12)
    unknown = mfu.hardware_peak("cuda:0", "bf16", name="NVIDIA L40")
    assert unknown["flops_per_s"] is None and unknown["kind"] == "unknown"
    assert "no datasheet peak known for 'NVIDIA L40'" in unknown["why"] and "--peak-tflops" in unknown["why"]
    given = mfu.hardware_peak("cuda:0", "bf16", name="NVIDIA L40", user_tflops=181.0)
    assert given["kind"] == "user" and given["flops_per_s"] == 181e12 and "user-given" in given["source"]
    replaced = mfu.hardware_peak("cuda:0", "bf16", name="NVIDIA H100 PCIe", user_tflops=700.0)
    assert replaced["kind"] == "user" and replaced["instead_of"]["flops_per_s"] == pytest.approx(756.5e12)
    assert "no fp8 units" in mfu.hardware_peak("cuda:0", "fp8", name="NVIDIA A100-SXM4-40GB")["why"]


SPR = """processor\t: {n}
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 143
model name\t: Intel(R) Xeon(R) Platinum 8480+
physical id\t: 0
core id\t\t: {core}
cpu MHz\t\t: 2000.000
flags\t\t: fpu sse avx avx2 fma avx512f avx512_vnni avx512_bf16 avx512_fp16 amx_bf16 amx_int8 amx_tile
"""
ZEN = """processor\t: {n}
vendor_id\t: AuthenticAMD
cpu family\t: {family}
model\t\t: {model}
model name\t: AMD EPYC
core id\t\t: {n}
cpu MHz\t\t: 1996.249
flags\t\t: fpu sse avx fma avx2 hypervisor {extra}
"""


def _sys_with_max_freq(root: Path, khz: int, cpus: int) -> Path:
    for c in range(cpus):
        d = root / f"devices/system/cpu/cpu{c}/cpufreq"
        d.mkdir(parents=True)
        (d / "cpuinfo_max_freq").write_text(f"{khz}\n")
    return root


def test_cpu_theoretical_peak_per_instruction_set(tmp_path):
    # 4 logical CPUs on 2 cores (SMT): 4 threads use 2 cores' units; cpufreq's boost clock wins over 'cpu MHz'
    text = "\n".join(SPR.format(n=n, core=n // 2) for n in range(4))
    root = _sys_with_max_freq(tmp_path, 3_800_000, 4)
    peaks = {p: cpu.theoretical_peak(p, 4, cpuinfo=text, sys_root=root, cpus={0, 1, 2, 3})
             for p in ("fp32", "bf16", "fp16", "int8")}
    inputs = peaks["fp32"]["inputs"]
    assert inputs["cores_used"] == 2 and inputs["physical_cores"] == 2 and inputs["logical_cpus"] == 4
    assert inputs["clock_ghz"] == 3.8 and "cpuinfo_max_freq" in inputs["clock_source"]
    assert peaks["fp32"]["flops_per_s"] == pytest.approx(2 * 3.8e9 * 64)  # AVX-512: 2 FMA units x 16 lanes x 2
    assert peaks["bf16"]["flops_per_s"] == pytest.approx(2 * 3.8e9 * 1024) and "AMX" in peaks["bf16"]["inputs"][
        "instructions"]
    assert peaks["int8"]["flops_per_s"] == pytest.approx(2 * 3.8e9 * 2048)
    assert peaks["fp16"]["inputs"]["flops_per_cycle_per_core"] == 128  # AVX512-FP16, no AMX-FP16


@pytest.mark.parametrize("family,model,extra,fp32,int8", [
    (23, 1, "", 16, 32),  # Zen/Zen+: 256-bit instructions on 128-bit units; int8 through VPMADDUBSW
    (23, 49, "", 32, 64),  # Zen 2
    (25, 17, "avx512f avx512_vnni avx512_bf16", 32, 128),  # Zen 4: AVX-512 on 256-bit units
])
def test_amd_generations(family, model, extra, fp32, int8, tmp_path):
    text = ZEN.format(n=0, family=family, model=model, extra=extra)
    f = cpu.theoretical_peak("fp32", 1, cpuinfo=text, sys_root=tmp_path, cpus={0})
    assert f["inputs"]["flops_per_cycle_per_core"] == fp32
    assert f["flops_per_s"] == pytest.approx(1.996249e9 * fp32) and "cpu MHz" in f["inputs"]["clock_source"]
    i = cpu.theoretical_peak("int8", 1, cpuinfo=text, sys_root=tmp_path, cpus={0})
    assert i["inputs"]["flops_per_cycle_per_core"] == int8
    b = cpu.theoretical_peak("bf16", 1, cpuinfo=text, sys_root=tmp_path, cpus={0})
    assert b["inputs"]["flops_per_cycle_per_core"] == (2 * fp32 if "bf16" in extra else fp32)


def test_no_clock_no_guess(tmp_path):
    text = "processor\t: 0\nCPU implementer\t: 0x41\nCPU part\t: 0xd4f\nFeatures\t: fp asimd sve2 bf16 i8mm\n"
    pk = cpu.theoretical_peak("fp32", 8, cpuinfo=text, sys_root=tmp_path, cpus={0})
    assert pk["flops_per_s"] is None and "cannot be read" in pk["why"]
    assert pk["inputs"]["flops_per_cycle_per_core"] == 32  # Neoverse V2: 4 x 128-bit FMA pipes
    root = _sys_with_max_freq(tmp_path / "sys", 3_100_000, 1)
    assert cpu.theoretical_peak("fp32", 8, cpuinfo=text, sys_root=root, cpus={0})["flops_per_s"] == \
        pytest.approx(3.1e9 * 32)
    assert "not known" in cpu.theoretical_peak("int8", 1, cpuinfo=text, sys_root=root, cpus={0})["why"]


def test_fractions_above_one_are_kept_and_flagged():
    peak = {"kind": "user", "flops_per_s": 1e12, "precision": "bf16"}
    kernel = {"flops_per_s": 2e12, "precision": "bf16"}
    m, flags = mfu.figures(3e12, peak, kernel, "bf16")
    assert m["compute/mfu"] == pytest.approx(3.0) and m["compute/kernel_peak_fraction"] == pytest.approx(1.5)
    assert any("MFU 3.00 is above 1" in f and "--peak-tflops given" in f for f in flags)
    assert any("1.50x the measured kernel peak" in f for f in flags)
    m, flags = mfu.figures(3e12, peak, kernel, "bf16", devices=4)  # 4 devices: 4x the peak
    assert m["compute/mfu"] == pytest.approx(0.75) and m["compute/peak_tflops"] == pytest.approx(4) and not flags
    m, _ = mfu.figures(1e12, {"kind": "unknown", "flops_per_s": None}, {**kernel, "precision": "fp32"}, "bf16")
    assert "compute/mfu" not in m and "compute/kernel_peak_fraction" not in m  # a kernel peak of another precision


def test_a_kernel_peak_below_the_run_is_measured_again(monkeypatch):
    """A microbenchmark measured on a busy machine reads low: a run above it gets the kernels measured once more
    and the best microbenchmark counts (cached), never the run's own figure."""
    from mlbench.efficiency import kernels

    figures = iter([1e9, 3e9, 2e9])
    monkeypatch.setattr(kernels, "_MEASURED", {})  # no microbenchmark of an earlier test in this process
    monkeypatch.setattr(kernels, "microbenchmark", lambda d, p, t: {
        "flops_per_s": (f := next(figures)), "best_kernel": "gemm", "kernels": {"gemm": f}, "method": "test"})
    first = kernels.kernel_peak("cpu", "fp32", 1)  # a busy machine: 1 GFLOP/s
    assert kernels.confirm(first, 0.5e9) is first  # a run below it: nothing measured
    again = kernels.confirm(first, 2.5e9)  # above it: measured again, 3 GFLOP/s
    assert again["flops_per_s"] == 3e9 and "measured again" in again["remeasured"]
    assert kernels.confirm(again, 5e9) is again  # once per record
    assert kernels.kernel_peak("cpu", "fp32", 1)["flops_per_s"] == 3e9  # the best is cached
    low = kernels.confirm(kernels.kernel_peak("cpu", "fp32", 1), 4e9)  # measured again, lower: the best stays
    assert low["flops_per_s"] == 3e9 and "2 GFLOP/s" in low["remeasured"]
    _, flags = mfu.figures(4e9, None, low, "fp32")
    assert any("(measured again after the run)" in f for f in flags)  # still above: shown and flagged


@pytest.mark.parametrize("arch", ["bert", "llama"])
def test_transformer_formula_agrees_with_the_counter(arch):
    """6N + 12LHQT per token (PaLM, appendix B) against torch's counter over one training step, within 5%:
    a BERT-like encoder (sdpa attention, MLM head over every token) and a Llama-like decoder (causal sdpa,
    grouped-query attention, untied output projection), built from configs."""
    import torch
    import transformers

    torch.manual_seed(0)
    common = dict(vocab_size=512, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                  max_position_embeddings=128)
    if arch == "bert":
        config = transformers.BertConfig(intermediate_size=256, **common)
        model = transformers.BertForMaskedLM(config)
    else:
        config = transformers.LlamaConfig(intermediate_size=192, num_key_value_heads=2, **common)
        model = transformers.LlamaForCausalLM(config)
    batch, seq = 2, 64
    ids = torch.randint(0, config.vocab_size, (batch, seq))

    def step():
        model(input_ids=ids, labels=ids).loss.backward()

    counted = flops.count(step) / (batch * seq)
    formula = flops.transformer_flops_per_token(
        params=flops.matmul_params(model), layers=config.num_hidden_layers, heads=config.num_attention_heads,
        head_dim=config.hidden_size // config.num_attention_heads, seq_len=seq)
    assert counted == pytest.approx(formula, rel=0.05)
    forward = flops.transformer_flops_per_token(params=1000, layers=2, heads=4, head_dim=16, seq_len=64,
                                                training=False)
    assert forward == 2 * 1000 + 4 * 2 * 4 * 16 * 64
    with pytest.raises(ValueError, match="seq_len"):
        flops.transformer_flops_per_token(params=1, layers=1, heads=1, head_dim=1, seq_len=-1)


def test_docs_table_is_the_code_table():
    text = (Path(__file__).resolve().parents[1] / "docs" / "efficiency.md").read_text()
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[3:9]]
            for line in text.splitlines() if line.startswith("| ") and line.count("|") > 9}
    for acc in datasheet.ACCELERATORS:
        assert rows[acc.name] == ["-" if acc.tflops(p) is None else f"{acc.tflops(p):g}" for p in datasheet.PRECISIONS]
