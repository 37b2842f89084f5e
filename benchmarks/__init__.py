"""Load, ingestion, training-scaling and memory benchmarks of Tastemaker (`python -m benchmarks`).

Every figure is reported beside a baseline measured in the same run, as a ratio.
"""
