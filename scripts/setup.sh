#!/usr/bin/env bash
# Installs what building eddy needs, idempotently: a C toolchain, make,
# libclang (bindgen for RocksDB) and OpenSSL's headers (librdkafka's TLS) from
# Debian's packages, and Rust if absent. With --kafka (the tests) it also
# installs Debian's chromium (the status page's browser test) and openssl
# (the secured broker's certificates), and fetches the Apache Kafka broker jars (needs
# Java 17 and Maven) for the integration tests.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

need=()
packages=(build-essential pkg-config libclang-dev libssl-dev)
[ "${1:-}" = "--kafka" ] && packages+=(chromium openssl)
for pkg in "${packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if ((${#need[@]})); then
  echo "setup: installing ${need[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  [ -x "$HOME/.cargo/bin/cargo" ] || {
    echo "setup: installing Rust with rustup" >&2
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c clippy,rustfmt >/dev/null
  }
fi

if [ "${1:-}" = "--kafka" ]; then
  for tool in java mvn; do
    command -v "$tool" >/dev/null 2>&1 || { echo "setup: $tool is required for the Kafka broker" >&2; exit 1; }
  done
  "$here/kafka/fetch.sh" >/dev/null
fi
