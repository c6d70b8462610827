"""A CPU-only stand-in workload for the harness's own tests (not an MLPerf benchmark)."""
