# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Options for `nrp up`, e.g. make run ARGS="--port 8091 --verbose"
ARGS ?=

.PHONY: run test bench lint install clean

$(BIN)/python:
	@echo ">>> Creating the virtual environment $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	@echo ">>> Installing nrp-backend into $(VENV) with the simulators (MuJoCo, PyBullet, Gymnasium,"
	@echo ">>> NEST with NEST Server, OpenSim, TVB) and the dev tools (pytest, ruff, mypy): about 2 GB"
	@echo ">>> once installed (OpenSim 0.3 GB, TVB and its numba/scipy/pandas 0.6 GB); a few minutes"
	@echo ">>> on a first download, about a minute from pip's cache."
	$(BIN)/pip install -e '.[dev,sim]'
	touch $(STAMP)
	@echo ">>> Installed. In a shell, '. $(VENV)/bin/activate' puts nrp on the PATH."

install: $(STAMP)

run: $(STAMP)
	$(BIN)/nrp up $(ARGS)

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m benchmarks

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .ruff_cache
