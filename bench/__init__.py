"""Benchmarks of rwproxy: micro-benchmarks (``*_bench.py``) and the end-to-end suite (``run``)."""
