"""Benchmarks of the appliance against baselines measured in the same run (``make bench``; see docs/performance.md)."""
