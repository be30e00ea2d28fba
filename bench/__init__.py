"""Benchmarks: `.venv/bin/python -m bench.store_bench`."""
