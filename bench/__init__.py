"""Benchmarks of Datasync: `uv run python -m bench --help`. See bench/README.md.

Benchmarks are not tests: nothing here asserts a time; the figures are printed and written
as JSON, and docs/benchmarks.md records one run with the machine it ran on.
"""
