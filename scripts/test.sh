#!/usr/bin/env bash
# The whole test suite, as root on Debian 12: set-up (idempotent), then every unit, property
# and integration test. Integration tests build network namespaces and start the switch (and
# later testpmd/QEMU peers), so they run one at a time.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export CARGO_TERM_COLOR=never
cargo build --workspace --all-targets
cargo test --workspace -- --test-threads=1
# The demo end to end (switch, two TCG guests, GCL, flood, plots): it must complete and write
# its PNGs; its figures are not checked.
bash scripts/demo.sh --seconds 20 --out target/demo-ci
