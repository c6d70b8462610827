"""Llama 3.1 8B pre-training (MLPerf Training llama31_8b)."""
