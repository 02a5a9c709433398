#!/usr/bin/env bash
# The main job: install, run both built-in encoder strategies and the box-prior baseline on the default track
# (fine-tune, generate, localize, evaluate) and regenerate the leaderboard. Interrupt and run again to continue where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
SEEDS=${SEEDS:-0}
"${PYTHON:-python3}" -m cxrbench run box-prior frozen-encoder learnable-encoder --track default --seeds $SEEDS --out leaderboard/results
"${PYTHON:-python3}" -m cxrbench leaderboard --results leaderboard/results --out leaderboard
