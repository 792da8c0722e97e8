#!/usr/bin/env bash
# The whole test suite of the workspace (the eddy library and the order
# pipeline example): sets up the machine (packages, Kafka jars), checks
# formatting and lints, starts a single-node Apache Kafka broker and a
# secured one (TLS, SCRAM, ACLs), runs every test against them, runs the chaos harness on a three-node cluster, runs the
# tests again against the embedded cluster, and stops the brokers.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$here/setup.sh" --kafka
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/eddy/target}"
cd "$here/.."

cargo fmt --all -- --check
# Everything in the release profile: the demo's build (scripts/demo.sh) of
# RocksDB and librdkafka serves the tests too, instead of a second one.
cargo clippy --release --workspace --all-targets --quiet -- -D warnings
cargo build --release --workspace --all-targets --quiet

"$here/kafka/stop.sh" >/dev/null 2>&1 || true
trap '"$here/kafka/stop.sh" >/dev/null 2>&1 || true' EXIT
bootstrap="$("$here/kafka/start.sh" | tail -n1)"
# Beside it, the secured broker (TLS, SCRAM users, ACLs enforced).
secured_bootstrap="$("$here/kafka/start.sh" --secured | tail -n1)"
# shellcheck source=kafka/common.sh
secured_dir="$(source "$here/kafka/common.sh" && use_secured && cluster_dir 1)"

echo "== tests against Apache Kafka at $bootstrap (secured: $secured_bootstrap)" >&2
EDDY_TEST_BOOTSTRAP="$bootstrap" EDDY_TEST_SECURED_BOOTSTRAP="$secured_bootstrap" \
  EDDY_TEST_SECURED_DIR="$secured_dir" \
  cargo test --release --workspace --quiet -- --test-threads 2
"$here/kafka/stop.sh" >/dev/null 2>&1

echo "== the chaos harness on a three-node cluster" >&2
trap '"$here/kafka/stop.sh" >/dev/null 2>&1 || true' EXIT
chaos_bootstrap="$("$here/kafka/start.sh" --nodes 3 | tail -n1)"
# shellcheck source=kafka/common.sh
chaos_dir="$(source "$here/kafka/common.sh" && cluster_dir 3)"
EDDY_CHAOS_BOOTSTRAP="$chaos_bootstrap" EDDY_CHAOS_KAFKA_DIR="$chaos_dir" \
  EDDY_CHAOS_RESTART_PORT="$(source "$here/kafka/common.sh" && broker_port 2)" \
  cargo test --release -p eddy-orders --test broker_chaos --quiet -- --test-threads 1
"$here/kafka/stop.sh" >/dev/null 2>&1
echo "== tests against the embedded cluster" >&2
env -u EDDY_TEST_BOOTSTRAP cargo test --release --workspace --quiet -- --test-threads 2
echo "== all tests passed" >&2
