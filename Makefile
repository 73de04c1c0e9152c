# Two commands do everything on a fresh machine:  `make demo`  and  `make test`.
# Each creates .venv and installs the pinned dependencies first; when nothing changed that is a no-op.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.tumorseg-installed
# Where pip finds torch. Empty: pip's configured index, which on our CI and dev machines serves a local CPU wheel.
# On a plain machine PyPI's Linux torch wheel is the CUDA build (GBs); use the CPU index instead:
#   make setup TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=

.PHONY: setup system-packages demo web test lint bench cv gpu-prepare train-gpu train-cpu clean

setup: $(STAMP)

# Re-installs only when pyproject.toml or Resources/Python/{requirements,constraints}.txt change. torch goes first,
# pinned and from TORCH_INDEX when set, so the rest of the install finds it satisfied and pulls no other build.
$(STAMP): pyproject.toml Resources/Python/requirements.txt Resources/Python/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) torch==2.13.0
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c Resources/Python/constraints.txt -e '.[test,web,batch]'
	touch $@

# Debian packages for DICOM validation, the Orthanc round trip and the PDF report (needs root or sudo; .ci/run
# calls it); without them those tests skip, saying why.
system-packages:
	bash scripts/system_packages.sh

demo: setup
	$(BIN)/tumorseg demo -o demo_output

# The browser app on http://127.0.0.1:8080 (HOST/PORT to change; another interface needs TOKEN_FILE).
HOST ?= 127.0.0.1
PORT ?= 8080
TOKEN_FILE ?=
web: setup
	$(BIN)/tumorseg web --host $(HOST) --port $(PORT) -o web_output $(if $(TOKEN_FILE),--token-file $(TOKEN_FILE))

test: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check TumorSegLib TumorSeg Testing

bench: setup
	$(BIN)/python Testing/Benchmarks/segment_benchmark.py

cv: setup
	$(BIN)/python Testing/Benchmarks/cross_validation.py --subsets

# Training on a lent GPU (README: "Training on a lent GPU"): prepare the carried cache, wheels and resume weights
# here, then run `bash scripts/train_gpu.sh` on the device; train-gpu runs that same script where it is called.
gpu-prepare: setup
	$(BIN)/python scripts/gpu_prepare.py

train-gpu:
	bash scripts/train_gpu.sh

# Without a GPU: one member trained further on the CPU (scripts/train_cpu.sh; FOLD 0-4 or all).
FOLD ?= 0
TIME_LIMIT ?= 4800
train-cpu: setup
	bash scripts/train_cpu.sh $(FOLD) $(TIME_LIMIT)

clean:
	rm -rf demo_output web_output runs .pytest_cache
