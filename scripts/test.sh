#!/usr/bin/env bash
# The whole test suite of the workspace (the eddy library and the order
# pipeline example): sets up the machine (packages, Kafka jars), checks
# formatting and lints, starts a single-node Apache Kafka broker, runs every
# test against it, runs them again against the embedded cluster, and stops
# the broker.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$here/setup.sh" --kafka
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/eddy/target}"
cd "$here/.."

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo build --workspace --all-targets --quiet

"$here/kafka/stop.sh" >/dev/null 2>&1 || true
trap '"$here/kafka/stop.sh" >/dev/null 2>&1 || true' EXIT
bootstrap="$("$here/kafka/start.sh" | tail -n1)"

echo "== tests against Apache Kafka at $bootstrap" >&2
EDDY_TEST_BOOTSTRAP="$bootstrap" cargo test --workspace --quiet -- --test-threads 2
echo "== tests against the embedded cluster" >&2
env -u EDDY_TEST_BOOTSTRAP cargo test --workspace --quiet -- --test-threads 2
echo "== all tests passed" >&2
