"""Benchmarks: scripts that print JSON figures (see bench/README.md); not tests."""
