#!/usr/bin/env bash
# The test suite on a fresh machine: install what it needs, then run pytest (offline).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh test
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec "${PYTHON:-python3}" -m pytest -q "$@"
