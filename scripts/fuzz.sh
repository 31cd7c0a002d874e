#!/usr/bin/env bash
# Runs hookbridge's fuzz targets (fuzz/) with cargo fuzz on the stable toolchain (`-s none`:
# libFuzzer's coverage guidance without a sanitizer runtime, which needs nightly).
#
#   scripts/fuzz.sh                  every target for 30 s (what .ci/run does)
#   scripts/fuzz.sh --time 300 jwt   one target for 5 min
#   scripts/fuzz.sh --runs 10000000  every target for 10 million executions (RELIABILITY.md)
#
# Inputs found on the way go to fuzz/work/<target> (ignored by git); the committed seeds in
# fuzz/corpus/<target> are read, never written. A crash stops the script with libFuzzer's report
# and the input saved under fuzz/artifacts/<target>/. One summary line per target is printed
# and appended to fuzz/work/results.tsv: target, executions, seconds, exec/s, coverage, result.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO_BIN="${CARGO_HOME:-${HOME:-/root}/.cargo}/bin"
if [ -d "$CARGO_BIN" ]; then export PATH="$CARGO_BIN:$PATH"; fi

limit=(-max_total_time=30)
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --time) limit=(-max_total_time="$2"); shift 2 ;;
    --runs) limit=(-runs="$2"); shift 2 ;;
    -h|--help) sed -n 2,12p "$0"; exit 0 ;;
    *) targets+=("$1"); shift ;;
  esac
done

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "[fuzz.sh] installing cargo-fuzz" >&2
  cargo install --locked cargo-fuzz
fi
cd fuzz
if [ ${#targets[@]} -eq 0 ]; then mapfile -t targets < <(cargo fuzz list); fi
# Debug assertions (and overflow checks) on: a panic they raise is a finding.
cargo fuzz build -s none -a
mkdir -p work
for t in "${targets[@]}"; do
  mkdir -p "work/$t"
  log="work/$t.log"
  start=$(date +%s)
  if cargo fuzz run -s none -a "$t" "work/$t" "corpus/$t" -- "${limit[@]}" -print_final_stats=1 >"$log" 2>&1; then
    result=ok
  else
    result=CRASH
  fi
  secs=$(( $(date +%s) - start ))
  runs=$(grep -aoE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -aoE '[0-9]+$' | tail -1 || true)
  rate=$(grep -aoE 'stat::average_exec_per_sec: *[0-9]+' "$log" | grep -aoE '[0-9]+$' | tail -1 || true)
  cov=$(grep -aoE 'cov: [0-9]+' "$log" | tail -1 | grep -aoE '[0-9]+' || true)
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "${runs:-?}" "$secs" "${rate:-?}" "${cov:-?}" "$result" | tee -a work/results.tsv
  if [ "$result" != ok ]; then
    tail -n 60 "$log" >&2
    exit 1
  fi
done
