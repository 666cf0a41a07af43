#!/usr/bin/env bash
# The GPU check (#17), one prepared script for a lent GPU machine (device tool: the H200 image, which has CuPy,
# PyTorch, pytest and hypothesis, but not array-api-compat/-strict: run scripts/gpu_prepare.sh here first and
# carry .whl).  It runs the CuPy backend tests (skips listed with their reasons), then bench forward on CuPy arrays
# in float32 and in TF32 (CUPY_TF32=1) with TFLOP/s and the fraction of the measured and the datasheet
# matrix-product peak, bench llm on CuPy (SmolLM2's shape, random weights: the GGUF file is too big to carry;
# the timings do not depend on the values) and bench decode on CuPy.  Everything goes to docs/gpu_check.txt (or $1)
# and, when the device tool's $OUT is set, to $OUT/gpu_check.txt.  Commit docs/gpu_check.txt.
#   device run:  bash scripts/gpu_check.sh    (carry [".whl"]; not yet timed on a GPU — leave it room)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
out=${1:-docs/gpu_check.txt}
mkdir -p "$(dirname "$out")"
if ! $PY -c "import array_api_compat, array_api_strict" 2>/dev/null; then
  if ls .whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
  else
    echo "array-api-compat/-strict are missing and .whl/ holds no wheels: run scripts/gpu_prepare.sh here, carry .whl"
  fi
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
step() { echo; echo "## $*"; "$@" || echo "(exit status $?)"; }
{
  echo "# transformer_np GPU check, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "nvidia-smi: not found"
  $PY -c "import numpy, cupy; print('numpy', numpy.__version__, '| cupy', cupy.__version__, '|', cupy.cuda.runtime.getDeviceProperties(0)['name'].decode())" \
    || echo "CuPy: not usable here"
  step $PY -m pytest -o addopts="-ra" -p no:cacheprovider -q -rs tests/test_backends.py tests/test_cli.py -k cupy
  step $PY -m transformer_np bench forward --backend cupy --repeat 5
  step env CUPY_TF32=1 $PY -m transformer_np bench forward --backend cupy --repeat 5 --no-torch
  step $PY -m transformer_np bench llm --backend cupy --random-weights
  step $PY -m transformer_np bench decode --backend cupy --plot /tmp/bench_decode_cupy.png
} 2>&1 | tee "$out"
if [ -n "${OUT:-}" ]; then cp "$out" "$OUT/gpu_check.txt"; fi
