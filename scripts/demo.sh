#!/usr/bin/env bash
# The main job: sets up the machine, builds eddy (release) and runs the
# demo pipeline on the embedded cluster. Extra arguments go to `eddy demo`.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$here/setup.sh"
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/eddy/target}"
cd "$here/.."
cargo build --release --quiet --bin eddy
exec "$CARGO_TARGET_DIR/release/eddy" demo "$@"
