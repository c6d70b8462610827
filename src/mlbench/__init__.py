"""mlbench: MLPerf-style training and inference benchmarks on one machine or a SLURM cluster."""

__version__ = "0.1.0"
