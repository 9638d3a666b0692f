#!/usr/bin/env bash
# A static tsn-latency for guests (busybox initramfs, any distribution): glibc linked statically
# (the tool resolves no names, so glibc's NSS, the usual reason static glibc breaks, is unused).
# --target keeps crt-static off build scripts and proc macros, which cannot be static.
# Prints the binary's path.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=x86_64-unknown-linux-gnu
# Stripped: the workspace's release profile keeps line tables, 10 MB a guest's initramfs can spare.
RUSTFLAGS='-C target-feature=+crt-static' CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=true \
  cargo build --release -p tsn-latency --target "$TARGET" >&2
BIN="${CARGO_TARGET_DIR:-target}/$TARGET/release/tsn-latency"
if ! ldd "$BIN" 2>&1 | grep -qE 'statically linked|not a dynamic executable'; then
  echo "build-latency-static: $BIN is dynamically linked" >&2
  exit 1
fi
echo "$BIN"
