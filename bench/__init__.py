"""`make bench`: tsconsole side by side with TorchServe 0.12, measured the same way, reproducible anywhere.

Run ``python -m bench --help``. Assets are made locally (nothing is downloaded), each server runs in a
private workdir on free 127.0.0.1 ports, load comes from wrk, and the run writes docs/benchmarks.md plus
the raw figures in bench/results/latest.json.
"""
