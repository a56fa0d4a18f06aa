"""slimtrace's benchmarks: how small, how fast, how much overhead, how it scales.

    python -m bench [--only NAMES] [--builds N] [--rounds N] [--skip-overhead] [--skip-scaling] [--quick] [--keep]

Benchmarks are measurements, not tests: nothing here fails on a number. The targets from the issue are
printed next to what was measured (`bench.targets`), and the results go to bench/results/.
"""
