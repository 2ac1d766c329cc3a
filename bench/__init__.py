"""Benchmarks run by hand or by ``make bench`` (not part of the fortrolig package)."""
