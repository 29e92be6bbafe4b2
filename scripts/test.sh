#!/usr/bin/env bash
# Install terramind with CPU torch into .venv and run every check CI runs:
# ruff (lint + format), mypy, the import-layer contract, and pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# CPU torch first: a bare `torch` requirement would pull a multi-GB CUDA build.
.venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -e ".[dev,train,terramesh,stac,xarray,batch,serve,export,embed]"
.venv/bin/ruff check src tests benchmarks
.venv/bin/ruff format --check src tests benchmarks
.venv/bin/mypy
.venv/bin/lint-imports
export HF_HUB_OFFLINE=1  # tests never reach the network
# pytest exits 5 when it collects no test: under `set -e` that fails the run, as it should.
.venv/bin/python -m pytest -p no:cacheprovider "$@"
