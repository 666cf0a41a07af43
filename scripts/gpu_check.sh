#!/usr/bin/env bash
# The GPU check of the one-code-path promise: run on a machine with an NVIDIA GPU, CuPy and the test
# extras installed (no network needed).  It runs the backend tests with CuPy (none should be skipped for
# want of a GPU; skips are listed with their reasons), then times the forward pass with transformer_np's
# functions on CuPy arrays against NumPy on the same machine, and writes it all to docs/gpu_check.txt
# (or $1).  Commit that file.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/gpu_check.txt}
mkdir -p "$(dirname "$out")"
{
  echo "# transformer_np GPU check, $(date -u '+%Y-%m-%d %H:%M UTC')"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "nvidia-smi: not found"
  python -c "import cupy; print('cupy', cupy.__version__, '| device', cupy.cuda.runtime.getDeviceProperties(0)['name'].decode())"
  echo "## backend tests with CuPy"
  python -m pytest -q -rs tests/test_backends.py -k cupy
  echo "## bench forward --backend cupy (GPT-2-small-shaped encoder: C=768, 12 heads, 12 layers)"
  python -m transformer_np bench forward --backend cupy
  if python -m transformer_np bench --help | grep -q decode; then
    echo "## bench decode --backend cupy"
    python -m transformer_np bench decode --backend cupy
  else
    echo "## bench decode: not available yet (lands with the inference work)"
  fi
} 2>&1 | tee "$out"
