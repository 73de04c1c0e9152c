# Two commands do everything on a fresh machine:  `make demo`  and  `make test`.
# Each creates .venv and installs the pinned dependencies first; when nothing changed that is a no-op.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.tumorseg-installed

.PHONY: setup demo test lint bench cv clean

setup: $(STAMP)

# Re-installs only when pyproject.toml or Resources/Python/{requirements,constraints}.txt change. torch goes first, pinned, so that pip
# takes the CPU wheel instead of resolving a multi-gigabyte CUDA build.
$(STAMP): pyproject.toml Resources/Python/requirements.txt Resources/Python/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c Resources/Python/constraints.txt -e '.[test]'
	touch $@

demo: setup
	$(BIN)/tumorseg demo -o demo_output

test: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check TumorSegLib TumorSeg Testing

bench: setup
	$(BIN)/python Testing/Benchmarks/segment_benchmark.py

cv: setup
	$(BIN)/python Testing/Benchmarks/cross_validation.py --subsets

clean:
	rm -rf demo_output runs .pytest_cache
