"""ka-bench: benchmark and ablation harness for knowledge amalgamation."""

__version__ = "0.1.0"
