#!/usr/bin/env bash
# The main job: install, run every built-in entry on the default track (fine-tune, generate, localize,
# evaluate) and regenerate the leaderboard. Interrupt and run again to continue where it stopped.
# Two runs at a time, one thread each (JOBS=1: one at a time with every thread). SEEDS="0 1 2" runs all three seeds; TRACK=smoke runs the same job on the smoke track in a few minutes.
# Results and their leaderboard go to runs/<track>/ (a fresh run, not the committed leaderboard); to add them
# to the committed leaderboard: RESULTS=leaderboard/results LEADERBOARD=leaderboard REPORT=docs/report-default \
#   bash scripts/run_default_track.sh   (REPORT: an attention report folder the leaderboard links to)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
SEEDS=${SEEDS:-0}
TRACK=${TRACK:-default}
JOBS=${JOBS:-2}
RESULTS=${RESULTS:-runs/$TRACK/results}
LEADERBOARD=${LEADERBOARD:-runs/$TRACK/leaderboard}
REPORT=${REPORT:-}
BASELINES="box-prior nearest-report real-images"
MODELS="frozen-encoder learnable-encoder token-embedding lora-encoder partial-encoder \
frozen-then-learnable learnable-then-frozen causal-encoder-frozen causal-encoder-learnable"
"${PYTHON:-python3}" -m cxrbench run $BASELINES $MODELS --track "$TRACK" --seeds $SEEDS --jobs "$JOBS" --out "$RESULTS"
"${PYTHON:-python3}" -m cxrbench leaderboard --results "$RESULTS" --out "$LEADERBOARD" ${REPORT:+--report "$REPORT"}
