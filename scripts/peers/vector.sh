#!/usr/bin/env bash
# Builds Vector (vectordotdev/vector) as a benchmark peer, with only the components the peer
# configs in bench/peers/vector/ use, OUTSIDE this repository:
#
#   ${HB_PEERS_CACHE:-$HOME/.cache/hookbridge-bench/peers}/vector/
#     src/                 Vector at $VECTOR_REF (exported, then patched: see patch_manifest)
#     deps/vrl/            vectordotdev/vrl at the commit Vector's Cargo.lock locks
#     deps/tracing/        tokio-rs/tracing at the revision Vector pins for tracing-tower
#     deps/heim/           vectordotdev/heim (Vector's fork) at branch update-nix, see below
#     target/              cargo's target dir
#     bin/vector           the built binary; bin/vector.stamp says how it was built
#
# Idempotent: when bin/vector exists and its stamp matches this script's settings, nothing is
# rebuilt and the path is printed at once. The last line on stdout is the binary's path; on
# failure it exits non-zero and its last stderr line ("vector.sh: <reason>") says why (a build
# failure also shows the end of the build log above it).
#
# Sources. Scripts cannot reach GitHub, so the three source trees come from either
#   (a) already-exported trees in the cache dir (src/, deps/vrl/, deps/tracing/, each holding a
#       .hb-exported file naming the commit), or
#   (b) bare git mirrors, if present, at
#       $HB_MIRROR_DIR/vectordotdev+vector/repo, .../vectordotdev+vrl/repo,
#       .../tokio-rs+tracing/repo, .../vectordotdev+heim/repo
#       (HB_MIRROR_DIR defaults to /work/.mirror), from which they are exported with git archive.
# Everything else (crates) comes from crates.io; after patching, no git URL remains in the build.
#
# Patches made to the exported Vector tree (never committed anywhere):
#   - vrl (git, branch main)            -> path ../deps/vrl       (same commit as Cargo.lock)
#   - tracing-tower (git, fixed rev)    -> path ../deps/tracing/tracing-tower (same rev)
#   - heim (git fork, branch update-deps, locked at b62e0420; that commit and branch are not in
#     the fork's stored snapshot) -> path ../deps/heim/heim, the fork's branch update-nix
#     (4925b530, heim 0.1.0-rc.1 on nix 0.23 like the locked commit). heim 0.1.0-rc.1 from
#     crates.io does not resolve: its heim-runtime pins once_cell ~1.5, Vector's lock has 1.21.
#     Vector uses heim only for `vector validate`'s disk-space check and the host_metrics source
#     (not built here).
#   - [patch.crates-io] ntapi (git, Windows-only) -> removed
#   - heim crates: their #![deny(unused, dead_code, ...)] made #![warn(...)] (heim-disk has dead
#     fields by rustc 1.95's analysis; lints of path dependencies are not capped)
#   - rust-toolchain.toml removed (so rustup uses the installed toolchain, no download)
#   - RUSTFLAGS replaces .cargo/config.toml's rustflags (drops "-D warnings", which would turn
#     harmless unused-import warnings of this reduced feature set into errors)
#
# Build tools: cargo/rustc, cc/c++, make, perl, pkg-config, OpenSSL headers (libssl-dev),
# protoc (protobuf-compiler), libclang (libclang-dev, for bindgen in zstd-sys). No cmake: on
# Linux without Vector's `cmake_build`-carrying feature sets, rdkafka-sys builds librdkafka 2.12.1
# (static, with ssl + zstd, curl static) with librdkafka's own configure + make.
# Missing Debian packages are installed with apt-get when
# running as root.
#
# Env knobs: HB_PEERS_CACHE, HB_MIRROR_DIR, HB_VECTOR_FEATURES (space/comma list),
# HB_VECTOR_FORCE=1 (rebuild even if the stamp matches).
set -euo pipefail

VECTOR_REF="v0.57.0"
VECTOR_COMMIT="8832452f57afb536ea0de53a093f9fd1b669ccec"
VRL_COMMIT="33fec9bddb7e75db90187f686ac3a69063882ced"      # vrl 0.33.1, Cargo.lock of v0.57.0
TRACING_COMMIT="e0642d949891546a3bb7e47080365ee7274f05cd"  # tracing-tower rev pinned by v0.57.0
HEIM_COMMIT="4925b53083587ccd695c4149836cc42e0e5e76fb"     # vectordotdev/heim branch update-nix
FEATURES="${HB_VECTOR_FEATURES:-sources-http_server sinks-blackhole sinks-nats sinks-kafka sinks-amqp}"
FEATURES="$(echo "$FEATURES" | tr ', ' '\n\n' | sed '/^$/d' | sort -u | paste -sd, -)"
# Release profile: Vector ships lto="fat", codegen-units=1, which on a 2-core machine takes far
# too long; thin LTO with 16 codegen units is used instead.
PROFILE_LTO="thin"
PROFILE_CGU="16"

CACHE="${HB_PEERS_CACHE:-$HOME/.cache/hookbridge-bench/peers}/vector"
MIRRORS="${HB_MIRROR_DIR:-/work/.mirror}"
BIN="$CACHE/bin/vector"
STAMP_WANT="vector=$VECTOR_COMMIT vrl=$VRL_COMMIT tracing=$TRACING_COMMIT heim=$HEIM_COMMIT features=$FEATURES lto=$PROFILE_LTO cgu=$PROFILE_CGU"

log() { printf '[vector.sh] %s\n' "$*" >&2; }
die() { printf 'vector.sh: %s\n' "$*" >&2; exit 1; }

CARGO_BIN="${CARGO_HOME:-${HOME:-/root}/.cargo}/bin"
if [ -d "$CARGO_BIN" ]; then export PATH="$CARGO_BIN:$PATH"; fi

# Fast path: already built with these settings.
if [ "${HB_VECTOR_FORCE:-0}" != 1 ] && [ -x "$BIN" ] && [ -f "$BIN.stamp" ] \
   && [ "$(cat "$BIN.stamp")" = "$STAMP_WANT" ]; then
  echo "$BIN"
  exit 0
fi

mkdir -p "$CACHE/deps" "$CACHE/bin"

# export DEST MIRROR COMMIT: make DEST hold COMMIT's tree (from the mirror when needed).
export_tree() {
  local dest=$1 mirror=$2 commit=$3
  if [ -f "$dest/.hb-exported" ] && [ "$(cat "$dest/.hb-exported")" = "$commit" ]; then
    return 0
  fi
  if [ ! -d "$mirror" ] || ! git --git-dir "$mirror" cat-file -e "$commit^{commit}" 2>/dev/null; then
    log "need $commit in $dest: export it there (git archive $commit | tar -x -C $dest; echo $commit > $dest/.hb-exported), or provide the bare mirror $mirror"
    die "source tree $dest (commit $commit) is missing and no mirror at $mirror holds it"
  fi
  log "exporting $commit from $mirror into $dest"
  rm -rf "$dest.tmp" && mkdir -p "$dest.tmp"
  git --git-dir "$mirror" archive "$commit" | tar -x -C "$dest.tmp"
  echo "$commit" > "$dest.tmp/.hb-exported"
  rm -rf "$dest" && mv "$dest.tmp" "$dest"
}

# What patch_manifest writes depends on these only; a tree patched differently is exported anew.
PATCH_ID="patch-v2 vrl=$VRL_COMMIT tracing=$TRACING_COMMIT heim=$HEIM_COMMIT"
if [ -f "$CACHE/src/.hb-patched" ] && [ "$(cat "$CACHE/src/.hb-patched")" != "$PATCH_ID" ]; then
  rm -f "$CACHE/src/.hb-exported"
fi
export_tree "$CACHE/src" "$MIRRORS/vectordotdev+vector/repo" "$VECTOR_COMMIT"
export_tree "$CACHE/deps/vrl" "$MIRRORS/vectordotdev+vrl/repo" "$VRL_COMMIT"
export_tree "$CACHE/deps/tracing" "$MIRRORS/tokio-rs+tracing/repo" "$TRACING_COMMIT"
export_tree "$CACHE/deps/heim" "$MIRRORS/vectordotdev+heim/repo" "$HEIM_COMMIT"

# Tools.
need_pkgs=()
command -v cc >/dev/null || need_pkgs+=(gcc)
command -v c++ >/dev/null || need_pkgs+=(g++)
command -v make >/dev/null || need_pkgs+=(make)
command -v perl >/dev/null || need_pkgs+=(perl)
command -v pkg-config >/dev/null || need_pkgs+=(pkg-config)
command -v protoc >/dev/null || need_pkgs+=(protobuf-compiler)
pkg-config --exists openssl 2>/dev/null || need_pkgs+=(libssl-dev)
# bindgen (zstd-sys) loads libclang at build time.
if [ -z "${LIBCLANG_PATH:-}" ] && ! ldconfig -p 2>/dev/null | grep -q 'libclang\(-[0-9.]*\)\?\.so'; then
  need_pkgs+=(libclang-dev)
fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing ${need_pkgs[*]}"
    apt-get update -qq >&2 || die "apt-get update failed (needed for ${need_pkgs[*]})"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >&2 \
      || die "apt-get install ${need_pkgs[*]} failed"
  else
    die "missing build tools: ${need_pkgs[*]} (install them, e.g. apt-get install ${need_pkgs[*]})"
  fi
fi
command -v cargo >/dev/null || die "cargo not found (install Rust with rustup)"

# Patch Vector's manifest so that no git source remains (idempotent: the patched tree is marked).
patch_manifest() {
  local src=$CACHE/src
  local mark="$src/.hb-patched"
  [ -f "$mark" ] && [ "$(cat "$mark")" = "$PATCH_ID" ] && return 0
  local m="$src/Cargo.toml"
  sed -i \
    -e 's#^vrl = { git = "https://github.com/vectordotdev/vrl.git", branch = "main",#vrl = { path = "../deps/vrl",#' \
    -e 's#^tracing-tower = { git = "https://github.com/tokio-rs/tracing", default-features = false, rev = "'"$TRACING_COMMIT"'" }#tracing-tower = { path = "../deps/tracing/tracing-tower", default-features = false }#' \
    -e 's#^heim = { git = "https://github.com/vectordotdev/heim.git", branch = "update-deps",#heim = { path = "../deps/heim/heim",#' \
    -e '/^ntapi = { git = "https:\/\/github.com\/MSxDOS\/ntapi.git"/d' \
    "$m"
  rm -f "$src/rust-toolchain.toml" "$src/rust-toolchain"
  grep -q '^vrl = { path = "../deps/vrl"' "$m" && grep -q '^tracing-tower = { path = ' "$m" \
    && grep -q '^heim = { path = ' "$m" \
    || die "Vector's Cargo.toml did not take the patches (has $VECTOR_REF's manifest changed?)"
  if grep -rnE 'git *= *"' --include=Cargo.toml "$src" "$CACHE/deps/vrl/Cargo.toml" \
       "$CACHE/deps/tracing/tracing-tower/Cargo.toml" "$CACHE"/deps/heim/heim*/Cargo.toml >&2; then
    die "a git dependency remains in Vector's manifests after patching (see above)"
  fi
  echo "$PATCH_ID" > "$mark"
}
patch_manifest

# heim's crates say #![deny(unused, dead_code, ...)]; as path dependencies their lints are not
# capped the way registry crates' are, and rustc 1.95 finds dead fields in heim-disk. Turn the
# deny into warn (only in files that still have it, so that re-runs touch nothing).
for f in "$CACHE"/deps/heim/heim*/src/lib.rs; do
  if grep -q '^#!\[deny($' "$f"; then sed -i 's/^#!\[deny($/#![warn(/' "$f"; fi
done

log "building Vector $VECTOR_REF ($VECTOR_COMMIT) with features: $FEATURES (lto=$PROFILE_LTO, codegen-units=$PROFILE_CGU)"
start=$(date +%s)
(
  cd "$CACHE/src"
  export CARGO_TARGET_DIR="$CACHE/target"
  export CARGO_PROFILE_RELEASE_LTO="$PROFILE_LTO"
  export CARGO_PROFILE_RELEASE_CODEGEN_UNITS="$PROFILE_CGU"
  export CARGO_NET_GIT_FETCH_WITH_CLI=false
  export RUSTFLAGS="-C link-args=-rdynamic"
  nice -n 10 cargo build --release --bin vector --no-default-features --features "$FEATURES" \
    >"$CACHE/build.log" 2>&1
) || { tail -n 30 "$CACHE/build.log" >&2; die "cargo build failed (log: $CACHE/build.log): $(grep -m1 -E '^error' "$CACHE/build.log" || echo 'see log')"; }
log "build took $(( $(date +%s) - start )) s"

cp "$CACHE/target/release/vector" "$BIN.tmp" && mv "$BIN.tmp" "$BIN"
echo "$STAMP_WANT" > "$BIN.stamp"
"$BIN" --version >&2 || die "built binary does not run"
echo "$BIN"
