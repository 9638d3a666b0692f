#!/usr/bin/env bash
# Builds the QEMU test guest: a Debian cloud kernel and a small busybox initramfs whose /init
# (init.sh beside this script) loads the virtio-net modules, configures eth0 from the kernel
# command line and serves a command loop on the serial console (see tests/qemu/mod.rs).
#
#   scripts/guest/build.sh [OUTDIR]        (as root; default OUTDIR: target/guest)
#
# Outputs: OUTDIR/vmlinuz, OUTDIR/initramfs.cpio (uncompressed: faster to boot under TCG),
# OUTDIR/kernel-version. Idempotent and cached: when the outputs exist and are newer than this
# script and init.sh, it only checks that the host packages are installed. Installs with apt-get
# what is missing: qemu-system-x86 (QEMU 7.2), busybox-static, cpio, and two tools copied into the
# guest with their shared libraries: ethtool (multiqueue: `ethtool -L eth0 combined N`,
# `ethtool -S eth0`), netcat-openbsd as nc.openbsd (busybox-static's nc has no UDP) and tcpdump
# (kernel receive timestamps in the guest).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
OUT="${1:-$ROOT/target/guest}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

# One build at a time (test binaries or several shells may call this together).
exec 9>"$OUT/.lock"
flock 9

# --- host packages ------------------------------------------------------------------------------
PKGS=(qemu-system-x86 busybox-static cpio ethtool netcat-openbsd tcpdump xz-utils zstd)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "guest: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- cache check --------------------------------------------------------------------------------
fresh=1
for f in vmlinuz initramfs.cpio kernel-version; do
  if [ ! -s "$OUT/$f" ] || [ "$OUT/$f" -ot "$HERE/build.sh" ] || [ "$OUT/$f" -ot "$HERE/init.sh" ]; then
    fresh=0
  fi
done
if [ "$fresh" = 1 ]; then
  exit 0
fi

# --- kernel ---------------------------------------------------------------------------------------
WORK="$OUT/work"
rm -rf "$WORK"
mkdir -p "$WORK/kernel" "$WORK/root"
# The concrete package behind the meta-package (linux-image-6.1.0-NN-cloud-amd64).
KPKG="$(apt-cache depends linux-image-cloud-amd64 2>/dev/null \
  | awk '/Depends: linux-image-[0-9].*-cloud-amd64$/ {print $2; exit}')"
if [ -z "$KPKG" ]; then
  apt-get update -qq
  KPKG="$(apt-cache depends linux-image-cloud-amd64 \
    | awk '/Depends: linux-image-[0-9].*-cloud-amd64$/ {print $2; exit}')"
fi
[ -n "$KPKG" ] || { echo "guest: cannot resolve linux-image-cloud-amd64" >&2; exit 1; }
# The .deb is kept in OUTDIR/deb (one version) so that a change of this script or init.sh
# does not download it again.
mkdir -p "$OUT/deb"
DEB="$(ls "$OUT"/deb/"${KPKG}"_*.deb 2>/dev/null | head -n1 || true)"
if [ -z "$DEB" ]; then
  rm -f "$OUT"/deb/*.deb
  echo "guest: downloading $KPKG" >&2
  # apt-get download writes to the current directory; _apt cannot write there (unsandboxed).
  (cd "$OUT/deb" && apt-get download -q "$KPKG" 2>&1 | grep -v -i 'unsandboxed' >&2 || true)
  DEB="$(ls "$OUT"/deb/"${KPKG}"_*.deb 2>/dev/null | head -n1 || true)"
  if [ -z "$DEB" ]; then
    # Stale package lists (the mirror moved on to a newer kernel): refresh and resolve again.
    apt-get update -qq
    KPKG="$(apt-cache depends linux-image-cloud-amd64 \
      | awk '/Depends: linux-image-[0-9].*-cloud-amd64$/ {print $2; exit}')"
    (cd "$OUT/deb" && apt-get download -q "$KPKG" 2>&1 | grep -v -i 'unsandboxed' >&2 || true)
    DEB="$(ls "$OUT"/deb/"${KPKG}"_*.deb 2>/dev/null | head -n1 || true)"
  fi
fi
[ -n "$DEB" ] || { echo "guest: apt-get download $KPKG failed" >&2; exit 1; }
dpkg-deb -x "$DEB" "$WORK/kernel"
VMLINUZ="$(ls "$WORK"/kernel/boot/vmlinuz-* | head -n1)"
KVER="${VMLINUZ##*/vmlinuz-}"
MODDIR="$WORK/kernel/lib/modules/$KVER"
[ -d "$MODDIR" ] || MODDIR="$WORK/kernel/usr/lib/modules/$KVER"
[ -d "$MODDIR" ] || { echo "guest: no modules for $KVER" >&2; exit 1; }

# --- initramfs ----------------------------------------------------------------------------------
R="$WORK/root"
mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,run,etc,lib/modules,lib64,lib/x86_64-linux-gnu}
cp /bin/busybox "$R/bin/busybox"
# The kernel needs a console node before devtmpfs is mounted, to give /init its stdio.
mknod -m 600 "$R/dev/console" c 5 1 2>/dev/null || true
mknod -m 666 "$R/dev/null" c 1 3 2>/dev/null || true

# virtio-net modules in load order (no modules.dep here); built-in ones are skipped.
MODS="virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci failover net_failover virtio_net"
: > "$R/lib/modules/order"
for m in $MODS; do
  f="$(find "$MODDIR" -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" | head -n1)"
  if [ -z "$f" ]; then
    if grep -q "/$m.ko" "$MODDIR/modules.builtin" 2>/dev/null; then continue; fi
    echo "guest: module $m not found in $KVER" >&2
    exit 1
  fi
  case "$f" in
    *.xz) xz -dc "$f" > "$R/lib/modules/$m.ko" ;;
    *.zst) zstd -qdc "$f" > "$R/lib/modules/$m.ko" ;;
    *) cp "$f" "$R/lib/modules/$m.ko" ;;
  esac
  echo "$m" >> "$R/lib/modules/order"
done

# Dynamically linked tools and the shared libraries they link.
copy_with_libs() {
  local bin="$1" dest="$2" lib
  cp "$bin" "$R$dest"
  for lib in $(ldd "$bin" | awk '/=>/ {print $3} /^[ \t]*\/lib64\// {print $1}'); do
    [ -f "$lib" ] || continue
    mkdir -p "$R$(dirname "$lib")"
    cp -L "$lib" "$R$lib"
  done
}
copy_with_libs "$(command -v ethtool || echo /usr/sbin/ethtool)" /usr/sbin/ethtool
copy_with_libs /bin/nc.openbsd /usr/bin/nc.openbsd
# Kernel receive timestamps of frames as the guest sees them (`tcpdump -tt
# --time-stamp-precision=nano`: the packet socket's software rx timestamp).
copy_with_libs "$(command -v tcpdump || echo /usr/bin/tcpdump)" /usr/bin/tcpdump
# ld.so is found through /lib64 and /lib/x86_64-linux-gnu; make both paths resolve.
if [ -f "$R/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" ] && [ ! -e "$R/lib64/ld-linux-x86-64.so.2" ]; then
  cp "$R/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" "$R/lib64/"
fi

install -m 755 "$HERE/init.sh" "$R/init"
echo "tsn-guest" > "$R/etc/hostname"
printf 'root:x:0:0:root:/:/bin/sh\n' > "$R/etc/passwd"
printf 'root:x:0:\n' > "$R/etc/group"

(cd "$R" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) > "$OUT/initramfs.cpio.tmp"
cp "$VMLINUZ" "$OUT/vmlinuz.tmp"
echo "$KVER" > "$OUT/kernel-version.tmp"
mv "$OUT/initramfs.cpio.tmp" "$OUT/initramfs.cpio"
mv "$OUT/vmlinuz.tmp" "$OUT/vmlinuz"
mv "$OUT/kernel-version.tmp" "$OUT/kernel-version"
rm -rf "$WORK"
echo "guest: built $OUT (kernel $KVER, initramfs $(du -k "$OUT/initramfs.cpio" | cut -f1) KiB)" >&2
