"""RNN-T speech recognition (MLPerf Training rnnt, ruleset 3.1.0; MLPerf Inference rnnt)."""
