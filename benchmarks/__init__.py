"""Benchmarks (``make bench``): each module prints medians and ratios against a same-run baseline."""
