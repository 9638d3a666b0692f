# shellcheck shell=bash
# OVS-DPDK for run.sh (sourced, not run): installed if missing, never as a system service,
# started per run in a private directory (its own ovsdb, pidfiles, logs, control sockets) and
# stopped by the pids in its pidfiles. Uses run.sh's log, stop_pid, clean_prefix, wait_for,
# TAG, MEM, NICE, AUTOGROUP_NICE, BE_MAIN, BE_PMD, OVS_VSWITCHD, OVS_SCHEMA, UP_TIMEOUT.

OVS_DIR=""

# Install openvswitch-switch-dpdk if needed, without letting the package start the system OVS
# (it would busy-poll a core and hold hugepages for the whole comparison).
ovs_install() {
  local installed=0
  if [ ! -x "$OVS_VSWITCHD" ] || ! command -v ovsdb-server >/dev/null; then
    log "installing openvswitch-switch-dpdk"
    local guard=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      # Debian's invoke-rc.d and deb-systemd-invoke both honour policy-rc.d: 101 = do not start.
      printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
      chmod 755 /usr/sbin/policy-rc.d
      guard=1
      trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    local rc=0
    export DEBIAN_FRONTEND=noninteractive
    { timeout 600 apt-get update -qq && timeout 900 apt-get install -y -qq openvswitch-switch-dpdk; } >&2 || rc=$?
    if [ "$guard" = 1 ]; then rm -f /usr/sbin/policy-rc.d; trap - EXIT; fi
    [ "$rc" = 0 ] || { log "apt-get install openvswitch-switch-dpdk failed ($rc)"; exit 1; }
    installed=1
  fi
  [ -x "$OVS_VSWITCHD" ] || { log "$OVS_VSWITCHD missing after install"; exit 1; }
  # With systemd: make sure the packaged service neither runs now nor at boot.
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
    local u
    for u in openvswitch-switch.service ovs-vswitchd.service ovsdb-server.service; do
      if systemctl is-active --quiet "$u" 2>/dev/null || systemctl is-enabled --quiet "$u" 2>/dev/null; then
        log "stopping and disabling $u (it would take a core and hugepages)"
        timeout 60 systemctl disable --now "$u" >/dev/null 2>&1 || true
      fi
    done
  fi
  # Without systemd, a packaged OVS could still have been started by its init script.
  local pf=/run/openvswitch/ovs-vswitchd.pid
  if [ -f "$pf" ] && kill -0 "$(cat "$pf" 2>/dev/null)" 2>/dev/null; then
    if [ "$installed" = 1 ]; then
      log "the package started the system OVS: stopping it"
      timeout 60 /usr/share/openvswitch/scripts/ovs-ctl stop >/dev/null 2>&1 || true
    else
      log "warning: a system ovs-vswitchd (pid $(cat "$pf")) is running; it may share cores and hugepages"
    fi
  fi
}

# ovs_daemon_start DIR: ovsdb + ovs-vswitchd-dpdk in DIR (its run, log and db directory, so
# dpdkvhostuser sockets land in DIR too) and an empty netdev bridge br0 (MAC learning: NORMAL).
ovs_daemon_start() {
  local d=$1
  OVS_DIR=$d
  export OVS_RUNDIR=$d OVS_LOGDIR=$d OVS_DBDIR=$d
  local db="unix:$d/db.sock"
  local pmd_mask lcore_mask
  pmd_mask=$(printf '0x%x' $((1 << BE_PMD)))
  lcore_mask=$(printf '0x%x' $((1 << BE_MAIN)))
  clean_prefix "${TAG}ovs"
  ovsdb-tool create "$d/conf.db" "$OVS_SCHEMA" >>"$d/ovs-setup.log" 2>&1 \
    || { log "ovsdb-tool create failed"; cat "$d/ovs-setup.log" >&2; return 1; }
  timeout 20 ovsdb-server --remote="punix:$d/db.sock" --pidfile="$d/ovsdb.pid" --detach \
    --log-file="$d/ovsdb.log" --unixctl="$d/ovsdb.ctl" "$d/conf.db" >>"$d/ovs-setup.log" 2>&1 \
    || { log "ovsdb-server did not start"; return 1; }
  local vs=(timeout 30 ovs-vsctl --db="$db" --timeout=25)
  "${vs[@]}" --no-wait init >>"$d/ovs-setup.log" 2>&1 || { log "ovs-vsctl init failed"; return 1; }
  "${vs[@]}" --no-wait set Open_vSwitch . other_config:dpdk-init=true \
    other_config:dpdk-socket-mem="$MEM" other_config:dpdk-lcore-mask="$lcore_mask" \
    other_config:pmd-cpu-mask="$pmd_mask" \
    other_config:dpdk-extra="--no-pci --file-prefix=${TAG}ovs" >>"$d/ovs-setup.log" 2>&1 \
    || { log "ovs-vsctl set other_config failed"; return 1; }
  timeout "$((UP_TIMEOUT + 30))" "${NICE[@]}" "$OVS_VSWITCHD" "$db" --pidfile="$d/vswitchd.pid" --detach \
    --log-file="$d/ovs-vswitchd.log" --unixctl="$d/vswitchd.ctl" >>"$d/ovs-setup.log" 2>&1 \
    || { log "ovs-vswitchd-dpdk did not start (DPDK init?)"; return 1; }
  # --detach makes it a session leader, so an autogroup of its own: it gets the comparison's
  # autogroup nice too (run.sh), or it would share its CPU on other terms than A and C.
  if [ -n "${AUTOGROUP_NICE:-}" ]; then
    echo "$AUTOGROUP_NICE" >"/proc/$(cat "$d/vswitchd.pid")/autogroup" 2>/dev/null \
      || log "warning: could not set ovs-vswitchd's autogroup nice"
  fi
  "${vs[@]}" add-br br0 -- set bridge br0 datapath_type=netdev >>"$d/ovs-setup.log" 2>&1 \
    || { log "ovs-vsctl add-br failed"; return 1; }
}

# ovs_start DIR: ovs_daemon_start, then two dpdkvhostuserclient ports on br0 (DIR/s0.sock =
# ofport 1, DIR/s1.sock = ofport 2), flows 1<->2. The frontend (virtio_user server=1) starts
# afterwards; OVS reconnects to it by itself.
ovs_start() {
  local d=$1
  ovs_daemon_start "$d" || return 1
  local vs=(timeout 30 ovs-vsctl --db="unix:$d/db.sock" --timeout=25)
  local i
  for i in 0 1; do
    "${vs[@]}" add-port br0 "v$i" -- set Interface "v$i" type=dpdkvhostuserclient \
      options:vhost-server-path="$d/s$i.sock" ofport_request=$((i + 1)) >>"$d/ovs-setup.log" 2>&1 \
      || { log "ovs-vsctl add-port v$i failed"; return 1; }
  done
  local of=(timeout 15 ovs-ofctl)
  "${of[@]}" del-flows br0 >>"$d/ovs-setup.log" 2>&1 &&
    "${of[@]}" add-flow br0 in_port=1,actions=output:2 >>"$d/ovs-setup.log" 2>&1 &&
    "${of[@]}" add-flow br0 in_port=2,actions=output:1 >>"$d/ovs-setup.log" 2>&1 \
    || { log "ovs-ofctl add-flow failed"; return 1; }
  # The PMD thread must sit on BE_PMD with both rx queues.
  timeout 10 ovs-appctl -t "$d/vswitchd.ctl" dpif-netdev/pmd-rxq-show >"$d/pmd-rxq.txt" 2>&1 || true
  grep -q "core_id $BE_PMD" "$d/pmd-rxq.txt" \
    || log "warning: no OVS PMD thread on core $BE_PMD (see pmd-rxq.txt)"
}

ovs_stop() {
  [ -n "$OVS_DIR" ] || return 0
  local d=$OVS_DIR f p
  for f in vswitchd.pid ovsdb.pid; do
    [ -f "$d/$f" ] || continue
    p=$(cat "$d/$f" 2>/dev/null || true)
    [ -n "$p" ] && stop_pid "$p"
  done
  # A daemon killed by `timeout` before it wrote its pidfile: find it by our private db path.
  for p in $(pgrep -f "unix:$d/db.sock" 2>/dev/null || true) $(pgrep -f "punix:$d/db.sock" 2>/dev/null || true); do
    stop_pid "$p"
  done
  clean_prefix "${TAG}ovs"
  unset OVS_RUNDIR OVS_LOGDIR OVS_DBDIR
  OVS_DIR=""
}
