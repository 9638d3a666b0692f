#!/usr/bin/env bash
# Idempotent machine set-up for tsn-vswitch on Debian 12, as root:
# Debian packages (DPDK 22.11, libclang for bindgen, test peers) and hugepages.
# Safe to run again: it only installs what is missing and only raises the hugepage count.
set -euo pipefail

PKGS=(dpdk dpdk-dev libdpdk-dev libclang-dev clang pkg-config iproute2 procps iputils-ping python3)
# tsn-latency's plots draw their labels with DejaVu Sans (read at run time, no fontconfig).
PKGS+=(fonts-dejavu-core)
# Extra peers for the test suite / comparisons (later issues add qemu, openvswitch).
PKGS+=(${TSN_EXTRA_PKGS:-})

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Hugepages: 2 MiB pages, at least NR (default 1024 = 2 GiB), and a hugetlbfs mount.
NR=${TSN_HUGEPAGES:-1024}
cur=$(cat /proc/sys/vm/nr_hugepages 2>/dev/null || echo 0)
if [ "$cur" -lt "$NR" ]; then
  echo "$NR" > /proc/sys/vm/nr_hugepages || true
fi
mkdir -p /dev/hugepages
if ! grep -qs ' /dev/hugepages hugetlbfs ' /proc/mounts; then
  mount -t hugetlbfs nodev /dev/hugepages || echo "setup: could not mount hugetlbfs (the switch will run in no-huge mode)"
fi
echo "setup: ok (hugepages: $(cat /proc/sys/vm/nr_hugepages) total, $(grep HugePages_Free /proc/meminfo | awk '{print $2}') free)"
