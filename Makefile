# U-Net ablation harness. `make test` and `make ablation` install into .venv when needed,
# from the hash-pinned requirements.lock (Linux x86-64, CPython 3.11); `make lock` refreshes it.
PYTHON ?= python3
LOCK := requirements.lock
VENV := .venv
BIN := $(VENV)/bin
PRESET ?= cpu
OUT ?= results/$(PRESET)
export OMP_NUM_THREADS ?= 2

.DELETE_ON_ERROR:  # a failed install leaves no target that looks up to date

.PHONY: install lock lint test-latest ablation test test-all bench bench-gpu report clean gpu-wheels gpu-check

# A changed lock: a new venv of exactly its packages, none left from before. It is built at
# its own path (a venv's scripts hold it), with the working one moved aside to $(VENV).old and
# put back when any step fails (a conflict marker or a bad pin in the lock), removed once the
# new one passes `pip check`; an install interrupted halfway is undone by the next one first.
$(BIN)/unet-ablate: pyproject.toml $(LOCK)
	@rm -rf $(VENV).trash
	@if [ -d $(VENV).old ]; then rm -rf $(VENV) && mv $(VENV).old $(VENV); fi
	@if [ -d $(VENV) ]; then mv $(VENV) $(VENV).old; fi
	@echo "installing $(LOCK) into a new $(VENV)"; \
	if $(PYTHON) -m venv $(VENV) \
	  && $(BIN)/pip install --quiet --require-hashes --no-deps -r $(LOCK) \
	  && $(BIN)/pip install --quiet --no-deps -e . \
	  && $(BIN)/pip check; \
	then if [ -d $(VENV).old ]; then mv $(VENV).old $(VENV).trash && rm -rf $(VENV).trash; fi; \
	else rm -rf $(VENV); \
	  if [ -d $(VENV).old ]; then mv $(VENV).old $(VENV) && echo "make: $(LOCK) did not install; $(VENV) is left as it was" >&2; fi; \
	  exit 1; fi
	@touch $@

install: $(BIN)/unet-ablate

# Re-resolve the lock from pyproject.toml's ranges (every extra) under constraints.txt, with
# hashes, for the platform CI runs on. Needs the network; commit the result.
lock:
	$(PYTHON) -m venv .cache/lock-venv
	.cache/lock-venv/bin/pip install --quiet uv
	.cache/lock-venv/bin/uv pip compile pyproject.toml --all-extras --constraint constraints.txt \
	  --python-version 3.11 --python-platform x86_64-manylinux_2_28 --generate-hashes \
	  --custom-compile-command 'make lock' --output-file $(LOCK)

# Non-blocking early warning: the newest releases pyproject.toml's ranges allow, in their own
# venv (.venv-latest), then the test suite. A failure here is the next breakage, not a CI failure.
test-latest:
	$(PYTHON) -m venv .venv-latest
	.venv-latest/bin/pip install --quiet --upgrade --upgrade-strategy eager -e '.[test,cluster]'
	.venv-latest/bin/python -m pytest -q

ablation: install
	$(BIN)/unet-ablate run $(PRESET) --out $(OUT)
	$(BIN)/unet-ablate report $(OUT)
	@echo "results: $(OUT)   report: reports/$(PRESET)/index.md"

report: install
	$(BIN)/unet-ablate report $(OUT)

# the suite in TEST_WORKERS processes (pytest-xdist), each test module whole in one of them
# (its module fixtures built once); TEST_WORKERS=0 runs it in this process
TEST_WORKERS ?= 2
test: install
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# ruff (pyproject.toml's [tool.ruff]): pyflakes, pycodestyle, import order, blind excepts, bugbear;
# then mypy over the packages [tool.mypy] names (files), the run records' types included
lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

test-all: install
	$(BIN)/python -m pytest -q -m '' -n $(TEST_WORKERS) --dist loadfile

bench: install
	$(BIN)/python -m pytest -q tests/bench --benchmark-enable -m '' -p no:cacheprovider

# On one GPU: the harness's training loop against a bare PyTorch loop (unet-w64-d4, 256x256,
# batch 16, bf16, channels_last; eager and torch.compile): prints img/s, the ratio (>= 0.95
# or it fails), TFLOP/s and MFU. Skips, saying so, where no CUDA device is present.
bench-gpu: install
	$(BIN)/python -m pytest -q -s -rs tests/bench/test_loop_overhead.py -k gpu -m '' -p no:cacheprovider

# For an offline CUDA node whose python3 has torch but not these: their wheels (pure Python,
# the lock's versions) for CPython 3.12 on Linux x86-64, into .whl/ (ignored; carry it to the
# node). Run where pip reaches a registry. The node must have their own needs (numpy, timm,
# huggingface-hub, safetensors, cloudpickle), as a CUDA image with timm does.
GPU_WHEELS := $(shell grep -E '^(segmentation-models-pytorch|monai|thop|submitit)==' $(LOCK) | cut -d' ' -f1)
gpu-wheels:
	rm -rf .whl && mkdir -p .whl
	$(PYTHON) -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
	  --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform any -d .whl $(GPU_WHEELS)
	@ls -la .whl

# One prepared check of the GPU path (tools/gpu_check.sh): environment, CUDA tests, the
# loop benchmark, the gpu-quick preset and its report, each step under its own timeout, in
# at most 6 minutes on one H200. Logs, runs.csv and the tables go to $$OUT (default gpu-check/).
# With the venv it uses it; without, the node's python3 and the wheels of .whl/.
gpu-check:
	@OUT="$(if $(filter environment command line,$(origin OUT)),$(OUT),gpu-check)" bash tools/gpu_check.sh

clean:
	rm -rf results/*/ reports/*/ .pytest_cache
