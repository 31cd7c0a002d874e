#!/usr/bin/env bash
# Runs the spool model tests (tests/spool_model.rs) for longer than CI does: both the in-process
# schedules and the SIGKILL rounds, each for SECONDS (default 600), from a random base seed
# (printed, so a run can be repeated). A failure prints the seed that replays it:
#   SPOOL_MODEL_SEED=<n> cargo test --release --test spool_model -- --nocapture
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH="${1:-600}"
BASE="${SPOOL_MODEL_SEED_BASE:-$(( (RANDOM << 15 | RANDOM) ))}"
echo "spool model: ${SECONDS_EACH}s each, seeds from ${BASE}"
SPOOL_MODEL_SECONDS="$SECONDS_EACH" SPOOL_MODEL_SEED_BASE="$BASE" \
  cargo test --release --test spool_model -- --nocapture
