# Two commands on a fresh machine:  `make run` (install + demo)  and  `make test` (install + tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install bench clean

run: install
	$(BIN)/caseplan demo

test: install
	$(BIN)/python -m pytest

install: $(STAMP)

# torch first, pinned to the CPU build (an unpinned torch pulls gigabytes of CUDA packages);
# llama-cpp-python builds from source without native CPU flags (they crashed on multi-token prompts here).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	CMAKE_ARGS="-DGGML_NATIVE=OFF" $(BIN)/python -m pip install --quiet -e ".[dev]" --config-settings editable_mode=compat
	touch $@

bench: install
	$(BIN)/python -m bench.orchestration
	$(BIN)/python -m bench.record
	$(BIN)/python -m bench.service
	$(BIN)/python -m bench.policies
	$(BIN)/python -m bench.retrieval

clean:
	rm -rf $(VENV) .caseplan
