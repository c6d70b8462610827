"""Dataset helpers shared by benchmarks: file formats, downloads, caches."""
