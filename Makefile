# Set-up and the two commands of the README. `make reproduce` runs the main job,
# `make test` the test suite; both create .venv and install everything on first use.
PY ?= python3
VENV ?= .venv
# On our machines torch==2.13.0 resolves to the CPU build on local disk; elsewhere pip takes
# the default (CUDA) build. Override, e.g. TORCH_SPEC="torch==2.13.0+cpu --index-url ...".
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT ?= out
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: setup reproduce test bench

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

reproduce: $(STAMP)
	$(BIN)/lensarith reproduce --model organism --out $(OUT)/reproduce

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/logit_lens.py
	$(BIN)/python benchmarks/patching.py
