"""Benchmarks: scripts that print figures (not tests). A package, so that bench/mpps.py is
``bench.mpps`` to mypy and not a second ``mpps``."""
