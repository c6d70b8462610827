"""Efficiency figures shared by training and inference: model FLOPs (``flops``), the hardware's peak per
precision (``datasheet`` for accelerators, ``cpu`` for a CPU's theoretical peak), the measured kernel peak
(``kernels``) and MFU with its flags (``mfu``). Depends on torch and the lower shared modules only."""
