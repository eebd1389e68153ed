# U-Net ablation harness. `make test` and `make ablation` install into .venv when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PRESET ?= cpu
OUT ?= results/$(PRESET)
export OMP_NUM_THREADS ?= 2

.PHONY: install ablation test test-all bench bench-gpu report clean

$(BIN)/unet-ablate: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

install: $(BIN)/unet-ablate

ablation: install
	$(BIN)/unet-ablate run $(PRESET) --out $(OUT)
	$(BIN)/unet-ablate report $(OUT)
	@echo "results: $(OUT)   report: reports/$(PRESET)/index.md"

report: install
	$(BIN)/unet-ablate report $(OUT)

test: install
	$(BIN)/python -m pytest -q

test-all: install
	$(BIN)/python -m pytest -q -m ''

bench: install
	$(BIN)/python -m pytest -q tests/bench --benchmark-enable -m '' -p no:cacheprovider

# On one GPU: the harness's training loop against a bare PyTorch loop (unet-w64-d4, 256x256,
# batch 16, bf16, channels_last; eager and torch.compile): prints img/s, the ratio (>= 0.95
# or it fails), TFLOP/s and MFU. Skips, saying so, where no CUDA device is present.
bench-gpu: install
	$(BIN)/python -m pytest -q -s -rs tests/bench/test_loop_overhead.py -k gpu -m '' -p no:cacheprovider

clean:
	rm -rf results/*/ reports/*/ .pytest_cache
