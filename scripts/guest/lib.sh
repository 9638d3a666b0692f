# shellcheck shell=bash
# Shared by scripts/demo.sh and benches/compare/latency_vm.sh (sourced, not run): building the
# switch, tsn-latency and the TCG guest image with tsn-latency in it, and the namespace host that
# floods. The guests themselves are driven from Python: guest.py beside this file (GUEST_PY_DIR
# goes on the driver's sys.path). Expects ROOT (the checkout) and CARGO_TARGET_DIR; PFX (the
# caller's name) starts error messages.

GUEST_PY_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# guest_build: cargo build --release of tsn-vswitch and tsn-latency, a static tsn-latency for
# the guests and the test guest image (scripts/guest/build.sh, cached in GUEST_DIR, default
# target/guest). Sets BIN, LAT, STATIC, GUEST_DIR, GUEST_KERNEL.
guest_build() {
  local p
  for p in python3 cpio; do
    command -v "$p" >/dev/null || { echo "$PFX: $p is missing (apt-get install ${p/python3/python3-minimal})" >&2; exit 1; }
  done
  (cd "$ROOT" && cargo build --release --quiet -p tsn-vswitch -p tsn-latency)
  BIN=$CARGO_TARGET_DIR/release/tsn-vswitch
  LAT=$CARGO_TARGET_DIR/release/tsn-latency
  STATIC=$(bash "$ROOT/scripts/build-latency-static.sh" 2>/dev/null) || { bash "$ROOT/scripts/build-latency-static.sh"; exit 1; }
  GUEST_DIR=${TSN_GUEST_DIR:-$ROOT/target/guest}
  bash "$ROOT/scripts/guest/build.sh" "$GUEST_DIR"
  GUEST_KERNEL=$GUEST_DIR/vmlinuz
}

# guest_initrd WORKDIR OUT: the guests' initramfs, the shared image plus a second cpio archive
# holding /usr/bin/tsn-latency (Linux unpacks concatenated archives; the shared image is left
# alone).
guest_initrd() {
  local w=$1 out=$2
  mkdir -p "$w/extra/usr/bin"
  install -m 755 "$STATIC" "$w/extra/usr/bin/tsn-latency"
  (cd "$w/extra" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) > "$w/extra.cpio"
  cat "$GUEST_DIR/initramfs.cpio" "$w/extra.cpio" > "$out"
}

# guest_ns_host NS ROOT_IF NS_IF MAC IP/N: a namespace NS holding one end (NS_IF, MAC, IP) of a
# veth pair whose other end ROOT_IF stays in the root namespace for the switch's af_packet port.
guest_ns_host() {
  local ns=$1 rif=$2 nif=$3 mac=$4 ip=$5
  ip netns add "$ns"
  ip link add "$rif" type veth peer name "$nif"
  echo 1 > "/proc/sys/net/ipv6/conf/$rif/disable_ipv6"
  ip link set "$nif" netns "$ns"
  ip netns exec "$ns" sh -c "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6"
  ip -n "$ns" link set "$nif" address "$mac"
  ip -n "$ns" addr add "$ip" dev "$nif"
  ip -n "$ns" link set lo up
  ip -n "$ns" link set "$nif" up
  # No checksum offload on the namespace's veth: an af_packet port would hand its frames (TCP,
  # UDP) to the guests with the checksums still unfilled, and the guests would drop them.
  ip netns exec "$ns" ethtool -K "$nif" tx off >/dev/null
  ip link set "$rif" up
}

# guest_gcl FILE: the demo's gate control list (1 ms cycle: class 1 open [0, 200 us), class 0
# [200 us, 1 ms)).
guest_gcl() {
  cat > "$1" <<'GCL'
num_tc 2
map 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
base-time 0
cycle-time 1000000
sched-entry S 02 200000
sched-entry S 01 800000
GCL
}

# guest_kill_qemus WORKDIR: kills the QEMUs whose pidfiles are in WORKDIR and removes the
# pidfiles (a later call must not kill a process that reused the pid).
guest_kill_qemus() {
  local f
  for f in "$1"/*.qemu.pid; do
    [ -f "$f" ] || continue
    kill -KILL "$(cat "$f")" 2>/dev/null || true
    rm -f "$f"
  done
}
