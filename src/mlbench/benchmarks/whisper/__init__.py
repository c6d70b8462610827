"""Whisper speech recognition inference (MLPerf Inference's whisper, from v5.1)."""
