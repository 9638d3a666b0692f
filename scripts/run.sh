#!/usr/bin/env bash
# Set up the machine (idempotent) and run the switch, release build. Without --port it runs the
# embedded default: a TAP uplink the host sees as 'tsn0'. Any arguments go to tsn-vswitch.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >&2
cargo build --release --quiet
exec ./target/release/tsn-vswitch "$@"
