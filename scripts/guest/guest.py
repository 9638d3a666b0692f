"""TCG guests on vhost-user sockets, driven over their serial console (init.sh's protocol), and
the best-effort flood from a namespace: shared by scripts/demo.sh and
benches/compare/latency_vm.sh (which put this directory on sys.path; see lib.sh)."""
import os
import re
import subprocess
import threading
import time

BOOT_TIMEOUT = 240
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class Guest:
    """A TCG guest on the vhost-user socket SOCK (QEMU is the client and reconnects), with the
    kernel KERNEL and the initramfs INITRD; console, QEMU log and pidfile go to WORKDIR/NAME.*.
    PREFIX starts the messages of its errors ("demo", "latency-vm")."""

    # no_timer_check: on a loaded host a TCG guest's kernel can miss its IO-APIC timer check and
    # panic ("IO-APIC + timer doesn't work"), seen here; the check is what the option skips.
    def __init__(self, name, ip, mac, sock, kernel, initrd, workdir, prefix="guest"):
        self.name, self.ip, self.seq, self.prefix = name, ip, 0, prefix
        self.text, self.lock = "", threading.Condition()
        self.log = open(f"{workdir}/{name}.console", "wb")
        self.pidfile = f"{workdir}/{name}.qemu.pid"
        args = [
            "qemu-system-x86_64", "-name", f"tsn-{name}", "-accel", "tcg",
            "-machine", "pc,memory-backend=mem",
            "-object", "memory-backend-memfd,id=mem,size=256M,share=on", "-m", "256M",
            "-smp", "1", "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-kernel", kernel, "-initrd", initrd,
            "-append", f"console=ttyS0 quiet loglevel=1 panic=-1 no_timer_check tsn.name={name} tsn.ip={ip}/24 tsn.mac={mac}",
            "-chardev", f"socket,id=c0,path={sock},reconnect=1",
            "-netdev", "vhost-user,id=n0,chardev=c0",
            "-device", f"virtio-net-pci,netdev=n0,mac={mac},vectors=0",
            "-serial", "stdio", "-pidfile", self.pidfile,
        ]
        self.p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=open(f"{workdir}/{name}.qemu.log", "wb"))
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        while True:
            b = self.p.stdout.read1(4096)
            if not b:
                break
            self.log.write(b)
            self.log.flush()
            with self.lock:
                self.text += b.decode("utf-8", "replace")
                self.lock.notify_all()
        with self.lock:
            self.text += "\n<console closed>"
            self.lock.notify_all()

    def wait_for(self, pattern, timeout, start=0):
        end = time.monotonic() + timeout
        with self.lock:
            while True:
                m = re.compile(pattern).search(self.text, start)
                if m:
                    return m
                if "<console closed>" in self.text[start:] or time.monotonic() > end:
                    raise SystemExit(f"{self.prefix}: {self.name}: no `{pattern}` on the console "
                                     f"within {timeout} s")
                self.lock.wait(1)

    def send(self, cmd, timeout):
        """Starts a command; returns (id, console offset) to follow it with wait_for."""
        self.seq += 1
        cid = f"{self.name}-{self.seq}"
        with self.lock:
            start = len(self.text)
        self.p.stdin.write(f"TSNCMD {cid} {int(timeout)} {cmd}\n".encode())
        self.p.stdin.flush()
        return cid, start

    def run(self, cmd, timeout):
        """Runs a command to its end; returns (exit code, output)."""
        cid, start = self.send(cmd, timeout)
        m = self.wait_for(rf"TSN-END {cid} (\d+)", timeout + 30, start)
        b = self.text.find(f"TSN-BEGIN {cid}", start)
        return int(m.group(1)), self.text[b:m.start()].split("\n", 1)[-1]

    def output(self, cid, start, end):
        """What command CID printed, without terminal escapes, given its TSN-END match END."""
        with self.lock:
            chunk = self.text[start:end.start()]
        return ANSI.sub("", chunk[chunk.find("\n") + 1:])

    def stop(self):
        """Kills QEMU and removes its pidfile (so no later clean-up kills a reused pid)."""
        self.p.kill()
        self.p.wait()
        try:
            os.unlink(self.pidfile)
        except FileNotFoundError:
            pass


def boot(guests):
    """Waits until every guest's init is serving its console; returns the seconds it took."""
    t0 = time.monotonic()
    for g in guests:
        g.wait_for(r"TSN-GUEST-READY", BOOT_TIMEOUT)
    return time.monotonic() - t0


def flood(ns, iface, dst_mac, src_mac, seconds, per_ms=10):
    """Best-effort load from namespace NS: 1400-byte frames of a local-experimental EtherType
    (0x88b5) to DST_MAC, PER_MS frames every millisecond, for SECONDS. Returns the Popen."""
    frame = dst_mac.replace(":", "") + src_mac.replace(":", "")
    return subprocess.Popen(["ip", "netns", "exec", ns, "python3", "-c", f"""
import socket, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); s.bind(("{iface}", 0))
f = bytes.fromhex("{frame}") + b"\\x88\\xb5" + bytes(1386)
end = time.monotonic() + {seconds}; n = time.monotonic()
while time.monotonic() < end:
    for _ in range({per_ms}):
        try: s.send(f)
        except OSError: pass
    n += 0.001
    d = n - time.monotonic()
    if d > 0: time.sleep(d)
"""])
