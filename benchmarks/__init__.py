"""Speed comparisons (not part of the test run): ``python -m benchmarks.run`` or ``make bench``."""
