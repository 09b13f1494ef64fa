"""Speed and memory measurements (run from the project root: python benchmarks/run.py)."""
