#!/usr/bin/env bash
# `make gpu-check`: one prepared check of the GPU path, for a short window on one GPU (an
# H200: at most 6 minutes). Each step runs under its own timeout and the check goes on past
# a failure; every log, runs.csv and the report's tables go into $OUT (default gpu-check/),
# at most 8 files:
#   summary.txt     each step's exit status and seconds, and `unet-ablate plan gpu-quick` here
#                   (its estimate, to hold against the time gpu-quick took)
#   env.txt         nvidia-smi; the device, driver, torch, CUDA and cuDNN versions
#   cuda-tests.log  the CUDA tests, REQUIRE_CUDA=1 (a skip for want of CUDA fails)
#   bench-gpu.log   harness loop vs a bare loop (eager, compiled), cuDNN autotuning off/on
#   gpu-quick.log   the gpu-quick preset (every variant of gpu, 1 seed, 150 steps), its report
#   runs.csv        its runs, one row per run and form
#   tables.md       its report: the suite's front page and each data set's table
# With the project's venv (.venv) it uses it; without (an offline node whose python3 has
# torch), it installs the wheels of .whl/ (`make gpu-wheels`) into a temporary folder on
# PYTHONPATH and runs from the checkout. Where torch does not import (its error said) or
# sees no CUDA device, it stops at once, exit 2.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-check}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export PYTHONUNBUFFERED=1 REQUIRE_CUDA=1 UNET_ABLATE_CACHE="$WORK/cache"

if [ -x .venv/bin/python ]; then
  PY=.venv/bin/python
else
  PY=python3
  if ls .whl/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$WORK/site" .whl/*.whl \
      || { echo "gpu-check: the wheels of .whl/ did not install (make gpu-wheels where pip reaches a registry)" >&2; exit 2; }
  fi
  export PYTHONPATH="$WORK/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi

# one import of torch; the reason it cannot check is the last line it writes on stderr
if ! reason=$("$PY" - 2>&1 <<'EOF'
import sys
try:
    import torch
except Exception as e:  # an ImportError, or an OSError for a missing CUDA library
    text = str(e).strip().splitlines()
    sys.exit(f"torch failed to import ({e.__class__.__name__}{': ' + text[-1] if text else ''})")
if not torch.cuda.is_available():
    sys.exit("no CUDA device here (torch.cuda.is_available() is False)")
EOF
); then
  echo "gpu-check: with $PY, ${reason##*$'\n'}: nothing to check" >&2
  exit 2
fi

mkdir -p "$OUT"
: > "$OUT/summary.txt"
step() {  # step NAME SECONDS LOG COMMAND...: run under a timeout, log, note the exit status
  local name=$1 limit=$2 log=$3 start=$SECONDS status
  shift 3
  echo "== $name (at most ${limit} s)" >> "$log"
  timeout --signal=TERM --kill-after=10 "$limit" "$@" >> "$log" 2>&1
  status=$?
  printf '%-12s exit %3d  %4d s%s\n' "$name" "$status" $((SECONDS - start)) \
    "$([ $status -eq 124 ] && echo '  (timed out)')" | tee -a "$OUT/summary.txt"
}

step env 20 "$OUT/env.txt" bash -c "nvidia-smi; $PY - <<'EOF'
import platform, torch
print('python', platform.python_version(), 'torch', torch.__version__, 'cuda', torch.version.cuda,
      'cudnn', torch.backends.cudnn.version())
print('device', torch.cuda.get_device_name(), 'capability', torch.cuda.get_device_capability(),
      'memory GiB', round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1))
print('bf16', torch.cuda.is_bf16_supported(), 'tf32 conv', torch.backends.cudnn.allow_tf32,
      'tf32 matmul', torch.backends.cuda.matmul.allow_tf32)
EOF"
step plan 30 "$OUT/summary.txt" "$PY" -m harness plan gpu-quick -q
step cuda-tests 50 "$OUT/cuda-tests.log" "$PY" -m pytest -q -rs -p no:cacheprovider -m 'not slow' \
  tests/test_gpu.py tests/test_environment.py tests/test_runner.py -k 'cuda or gpu'
step bench-gpu 85 "$OUT/bench-gpu.log" "$PY" -m pytest -q -s -rs -p no:cacheprovider -m '' \
  tests/bench/test_loop_overhead.py -k gpu
step gpu-quick 180 "$OUT/gpu-quick.log" "$PY" -m harness run gpu-quick --out "$WORK/results" --no-progress
step report 35 "$OUT/gpu-quick.log" "$PY" -m harness report "$WORK/results" --out "$WORK/report"

cp "$WORK/results/runs.csv" "$OUT/runs.csv" 2>/dev/null
{ cat "$WORK/report/index.md"; for t in "$WORK"/report/*/table.md; do echo; echo "## ${t%/table.md}"; cat "$t"; done; } \
  > "$OUT/tables.md" 2>/dev/null
echo "gpu-check: logs and tables in $OUT ($(ls "$OUT" | wc -l) files, ${SECONDS} s)" | tee -a "$OUT/summary.txt"
