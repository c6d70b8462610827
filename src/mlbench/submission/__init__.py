"""MLPerf submissions: mlbench runs packaged into the official layout and checked (``mlbench package``).

training.py (Training layout, mlperf-logging's package_checker and result_summarizer), inference.py (Inference
layout and structural checks), system.py (systems JSON), checks.py (running and translating the checkers).
"""
