"""Benchmarks: one folder each, fixed file names (see :mod:`mlbench.registry`)."""
