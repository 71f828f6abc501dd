# Two commands, each doing its own set-up on a fresh machine with Python 3.10+ and PyPI access:
#   make demo   - virtualenv, install, train the default Vim on scikit-learn's digits (CPU is fine)
#   make test   - virtualenv, install with dev extras, run the test suite (Triton kernels run in the
#                 interpreter when there is no GPU)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test bench-cpu clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

demo: $(VENV)/.installed
	$(BIN)/visionssm train

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q

bench-cpu: $(VENV)/.installed
	$(BIN)/python benchmarks/bench_scan_cpu.py

clean:
	rm -rf $(VENV) runs .pytest_cache
