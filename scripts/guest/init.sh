#!/bin/busybox sh
# /init of the tsn-vswitch test guest (built into the initramfs by build.sh).
#
# Kernel command line (all optional):
#   tsn.name=NAME      hostname, echoed in the readiness marker
#   tsn.ip=A.B.C.D/N   IPv4 address of eth0
#   tsn.mac=MAC        MAC of eth0 (QEMU's virtio-net-pci mac= sets it anyway)
#   tsn.queues=N       `ethtool -L eth0 combined N` (multiqueue virtio-net)
#   tsn.ipv6=1         keep IPv6 on (off by default: no RS/DAD/MLD noise on the wire)
#
# Serial protocol (ttyS0, echo off). The host sends one line
#   TSNCMD <id> <timeout-seconds> <shell command>
# and the guest answers
#   TSN-BEGIN <id>
#   ...output (stdout and stderr)...
#   TSN-END <id> <exit code>
# A command still running after its timeout is killed (exit code 137 or 143).
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm
mount -t tmpfs tmp /tmp
dmesg -n 1

NAME=guest IP= MAC= QUEUES= IPV6=
for x in $(cat /proc/cmdline); do
  case "$x" in
    tsn.name=*) NAME="${x#tsn.name=}" ;;
    tsn.ip=*) IP="${x#tsn.ip=}" ;;
    tsn.mac=*) MAC="${x#tsn.mac=}" ;;
    tsn.queues=*) QUEUES="${x#tsn.queues=}" ;;
    tsn.ipv6=*) IPV6="${x#tsn.ipv6=}" ;;
  esac
done
hostname "$NAME"

for m in $(cat /lib/modules/order); do
  insmod "/lib/modules/$m.ko" || echo "TSN-GUEST-ERROR insmod $m"
done

if [ "$IPV6" != 1 ]; then
  echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6 2>/dev/null
  echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6 2>/dev/null
fi
ip link set lo up

i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do
  sleep 0.1
  i=$((i + 1))
done
ERR=
if [ -e /sys/class/net/eth0 ]; then
  [ "$IPV6" = 1 ] || echo 1 > /proc/sys/net/ipv6/conf/eth0/disable_ipv6 2>/dev/null
  [ -n "$MAC" ] && ip link set eth0 address "$MAC"
  [ -n "$IP" ] && ip addr add "$IP" dev eth0
  ip link set eth0 up
  if [ -n "$QUEUES" ] && [ "$QUEUES" -gt 1 ]; then
    ethtool -L eth0 combined "$QUEUES" || ERR="ethtool -L eth0 combined $QUEUES failed"
  fi
else
  ERR="no eth0"
fi

stty -F /dev/ttyS0 -echo -echoe -echok -echonl 2>/dev/null
exec </dev/ttyS0 >/dev/ttyS0 2>&1
[ -n "$ERR" ] && echo "TSN-GUEST-ERROR $ERR"
echo "TSN-GUEST-READY $NAME"

while true; do
  if ! read -r line; then
    sleep 1
    continue
  fi
  line="${line%$(printf '\r')}"
  case "$line" in
    "TSNCMD "*) ;;
    *) continue ;;
  esac
  rest="${line#TSNCMD }"
  id="${rest%% *}"
  rest="${rest#* }"
  tmo="${rest%% *}"
  cmd="${rest#* }"
  echo "TSN-BEGIN $id"
  timeout -s KILL "$tmo" sh -c "$cmd" </dev/null 2>&1
  echo "TSN-END $id $?"
done
