"""Generation engines behind :mod:`mlbench.inference.generation` (one module each, imported when chosen)."""
