#!/usr/bin/env bash
# The main job: sets up the machine, builds the order pipeline example
# (release) and runs its demo on the embedded cluster, from the example's
# folder so that it finds its topology files in `config/`. Extra arguments
# go to `eddy-orders demo`.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$here/setup.sh"
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/eddy/target}"
cd "$here/.."
cargo build --release --quiet -p eddy-orders --bin eddy-orders
cd examples/orders
exec "$CARGO_TARGET_DIR/release/eddy-orders" demo "$@"
