#!/usr/bin/env bash
# Installs the peer mq-bridge-app (crates.io) for scripts/bench_peers.py, once: into
# ${HB_PEERS_CACHE:-$HOME/.cache/hookbridge-bench/peers}/mq-bridge-app, built with only the
# features the benchmark uses (HTTP input; NATS, Kafka and AMQP outputs) plus mimalloc, the
# allocator its default build ships with (measuring it without would handicap it).
# Prints the binary's path as the last line of stdout; exits non-zero with a one-line reason.
# Nothing of the peer's code is kept in this repository.
set -euo pipefail

VERSION="${MQ_BRIDGE_APP_VERSION:-1.3.0}"
FEATURES="http,nats,kafka,amqp,mimalloc"
CACHE="${HB_PEERS_CACHE:-${HOME:-/root}/.cache/hookbridge-bench/peers}/mq-bridge-app"
BIN="$CACHE/bin/mq-bridge-app"
STAMP="$CACHE/installed"
WANT="mq-bridge-app $VERSION features=$FEATURES"

CARGO_BIN="${CARGO_HOME:-${HOME:-/root}/.cargo}/bin"
if [ -d "$CARGO_BIN" ]; then export PATH="$CARGO_BIN:$PATH"; fi

fail() { echo "mq-bridge-app: $*" >&2; echo "mq-bridge-app: $*"; exit 1; }

if [ -x "$BIN" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$WANT" ]; then
  echo "$BIN"
  exit 0
fi

command -v cargo >/dev/null || fail "cargo not found"
mkdir -p "$CACHE" || fail "cannot create $CACHE"
# One install at a time: a second caller waits for the first, then finds the binary.
exec 9>"$CACHE/.lock"
flock 9 || fail "cannot lock $CACHE/.lock"
if [ -x "$BIN" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$WANT" ]; then
  echo "$BIN"
  exit 0
fi
LOG="$CACHE/install.log"
echo "[peers] installing $WANT into $CACHE (log: $LOG; slow the first time)" >&2
started=$(date +%s)
# Its own target dir (kept on failure so a retry is incremental, removed on success).
if ! CARGO_TARGET_DIR="$CACHE/build" nice -n 10 cargo install --locked --force --root "$CACHE" \
    mq-bridge-app --version "=$VERSION" --no-default-features --features "$FEATURES" >"$LOG" 2>&1; then
  fail "cargo install failed: $(grep -m1 -E '^error' "$LOG" || tail -n1 "$LOG")"
fi
[ -x "$BIN" ] || fail "cargo install succeeded but $BIN is missing"
echo "$WANT" >"$STAMP"
rm -rf "$CACHE/build"
echo "[peers] installed in $(( $(date +%s) - started )) s" >&2
echo "$BIN"
