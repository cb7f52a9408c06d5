# Two commands on a fresh machine: `make run` (the product) and `make test` (the suite).
# Both create .venv themselves and install what they need into it.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint fmt screenshots protos stress bench bench-smoke bench-console clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m tsconsole.demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The README's pictures of the console: screenshots/<screen>.svg and .png, from the snapshot tests' fixed data.
screenshots: $(STAMP)
	$(BIN)/python scripts/screenshots.py

# Reliability figures under load (docs/reliability.md): lost requests while scaling, unregistering and stopping,
# failures per worker crash, frontend memory over a soak (STRESS_SOAK_S seconds, default 120). Not in `make test`.
stress: $(STAMP)
	$(BIN)/python -m pytest tests/stress -m stress -s -p no:cacheprovider

# Performance side by side with TorchServe (docs/benchmarks.md, raw figures in bench/results/latest.json): noop and
# resnet18 workloads under wrk (apt-get install wrk). Not in `make test`. BENCH_ARGS="--torchserve /path/to/venv/bin/torchserve"
# adds TorchServe 0.12 from its own venv; `--quick`, `--workloads noop`, `--reps N`, `--duration S`: python -m bench --help.
bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

# CI's guard against gross slow-downs (about 20 s, no wrk needed): tsconsole's noop throughput as a share of a bare
# aiohttp server's on the same machine, failing under half the share in bench/smoke_baseline.json.
bench-smoke: $(STAMP)
	$(BIN)/python -m bench.smoke

# The console under load (Pilot): 200 models, 5,000 log lines/s; key-press and screen-switch latency, and the
# server CPU the idle console adds. Prints a markdown table (docs/performance.md quotes one). Not in `make test`.
bench-console: $(STAMP)
	$(BIN)/python -m bench.console

# The gRPC messages and stubs under server/api/grpc/proto/, from the .proto files there (committed; run after editing one).
protos: $(STAMP)
	$(BIN)/python scripts/gen_protos.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache demo
