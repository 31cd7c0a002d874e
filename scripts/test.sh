#!/usr/bin/env bash
# Runs hookbridge's whole test suite on a fresh machine: installs and starts what the tests need,
# then `cargo test --workspace`. Safe to re-run: everything is started only when missing.
#
# Services: RabbitMQ (127.0.0.1:5672) and NATS with JetStream (127.0.0.1:4222) are started when
# down and installed with apt-get when missing. A Kafka-protocol broker (tansu) is installed and
# started only once the workspace has a Kafka sink. Tests never stop these shared services.
set -euo pipefail
cd "$(dirname "$0")/.."

# cargo, and tools installed with `cargo install` (tansu), live here on rustup machines; a
# non-login shell may not have it on PATH.
CARGO_BIN="${CARGO_HOME:-${HOME:-/root}/.cargo}/bin"
if [ -d "$CARGO_BIN" ]; then export PATH="$CARGO_BIN:$PATH"; fi

log() { printf '[test.sh] %s\n' "$*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local port=$1 name=$2 i
  for i in $(seq 1 120); do
    if port_open "$port"; then return 0; fi
    sleep 1
  done
  log "$name did not open port $port"; return 1
}

APT_UPDATED=0
apt_install() {
  if [ "$APT_UPDATED" = 0 ]; then apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_tools() {
  command -v curl >/dev/null || apt_install curl
  command -v openssl >/dev/null || apt_install openssl
  # The jwt tests sign tokens with an independent implementation (PyJWT).
  if ! python3 -c "import jwt, cryptography" 2>/dev/null; then
    log "installing PyJWT and cryptography for the jwt tests"
    python3 -m pip install --quiet --disable-pip-version-check pyjwt cryptography
  fi
}

ensure_rabbitmq() {
  port_open 5672 && return 0
  command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
  log "starting RabbitMQ"
  rabbitmq-server -detached || true
  wait_port 5672 RabbitMQ
}

ensure_nats() {
  port_open 4222 && return 0
  [ -x /usr/sbin/nats-server ] || apt_install nats-server
  log "starting NATS with JetStream"
  mkdir -p /var/lib/nats-server
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
  wait_port 4222 NATS
}

ensure_kafka() {
  [ -d sinks/kafka ] || return 0
  port_open 9092 && return 0
  if ! command -v tansu >/dev/null; then
    log "installing tansu (a Kafka-protocol broker; slow the first time)"
    cargo install --locked tansu --version 0.6.0 --features dynostore
  fi
  log "starting tansu on 127.0.0.1:9092"
  nohup tansu --listener-url tcp://127.0.0.1:9092 --advertised-listener-url tcp://127.0.0.1:9092 \
    --storage-engine memory://tansu/ >/tmp/tansu.log 2>&1 &
  wait_port 9092 tansu
}

ensure_tools
ensure_rabbitmq
ensure_nats
ensure_kafka

log "cargo test --workspace"
cargo test --workspace "$@"
# OTLP export is a cargo feature (off by default: compiled in, it cost ~10 CPU-µs per RabbitMQ
# event even with no exporter, BENCHMARKS.md); its end-to-end test runs with it on.
log "cargo test --features otlp --test otlp"
cargo test -p hookbridge --features otlp --test otlp "$@"
