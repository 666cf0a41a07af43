#!/usr/bin/env bash
# Run HERE (with network) before the GPU check: fetch the pure-Python wheels the GPU machine's image lacks —
# array-api-compat and array-api-strict, the versions in .venv — into .whl/ (git-ignored).  Then, with the device
# tool: run "bash scripts/gpu_check.sh" with carry [".whl"]; gpu_check.sh installs them there.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
for pkg in array-api-compat array-api-strict; do
  version=$(.venv/bin/python -c "import importlib.metadata as m; print(m.version('$pkg'))")
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_17_x86_64 -d .whl "$pkg==$version"
done
ls -l .whl
