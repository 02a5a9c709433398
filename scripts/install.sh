#!/usr/bin/env bash
# Install cxrbench, its built-in model plugins and (with "test") the test tools into the current Python.
# torch/torchvision are pinned to releases that install from local files on the reference machines;
# elsewhere pip downloads them once from the package index.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
extra=""
[ "${1:-}" = "test" ] && extra="[test]"
"$PY" -m pip install --disable-pip-version-check -q "torch==2.14.1" "torchvision==0.29.1"
"$PY" -m pip install --disable-pip-version-check -q -e ".${extra}" \
    -e plugins/frozen-encoder -e plugins/learnable-encoder -e plugins/stable-diffusion \
    -e plugins/token-embedding -e plugins/lora-encoder -e plugins/partial-encoder \
    -e plugins/encoder-schedule -e plugins/causal-encoder
