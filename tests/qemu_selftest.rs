//! Checks of the QEMU guest harness without the switch: dpdk-testpmd is the vhost-user backend
//! (io forwarding between its two net_vhost ports), two guests ping each other and exchange UDP
//! through it; the serial command channel, timeouts and restart (reconnect) are exercised too.
//! Runs as root in the normal `cargo test` (one test at a time: each boots two TCG guests).

#[path = "qemu/mod.rs"]
mod qemu;

use qemu::*;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(10);

fn workdir(name: &str) -> PathBuf {
    // tsn-qemu-<pid>-…: removed by a later run when this one is gone (kept when a test fails).
    remove_stale_dirs();
    let d = std::env::temp_dir().join(format!("tsn-qemu-{}-selftest-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn two_guests_through_testpmd_ping_udp_commands_restart() {
    let dir = workdir("pair");
    let (s0, s1) = (dir.join("vhost0.sock"), dir.join("vhost1.sock"));
    let mut tp = Testpmd::start(
        &[s0.clone(), s1.clone()],
        1,
        false,
        &dir.join("testpmd.log"),
    );

    let mut a = Guest::launch("a", &s0, Mode::Connect, &guest_mac(1), "10.77.1.1/24");
    let b = Guest::launch("b", &s1, Mode::Connect, &guest_mac(2), "10.77.1.2/24");
    let ta = a.wait_ready(BOOT_TIMEOUT);
    let tb = b.wait_ready(BOOT_TIMEOUT);
    eprintln!("guests ready after {ta:?} / {tb:?}");

    // The command channel: output, stderr, exit code, output without a final newline.
    assert_eq!(
        a.run("echo out; echo err >&2; exit 3", T),
        (3, "out\nerr".to_string())
    );
    assert_eq!(a.run("printf abc", T), (0, "abc".to_string()));
    assert_eq!(a.run("true", T), (0, String::new()));
    let link = a.run_ok("ip -o addr show dev eth0", T);
    assert!(link.contains("10.77.1.1/24"), "{link}");
    let mac = a.run_ok("cat /sys/class/net/eth0/address", T);
    assert_eq!(mac.trim(), guest_mac(1));
    // A command that overruns its timeout is killed in the guest, and the channel goes on.
    let t0 = Instant::now();
    let (code, _) = a.run("sleep 30", Duration::from_secs(2));
    assert_ne!(code, 0);
    assert!(t0.elapsed() < Duration::from_secs(15), "{:?}", t0.elapsed());
    assert_eq!(a.run("echo still-here", T), (0, "still-here".to_string()));

    // Ping both ways through testpmd.
    let (rx0, tx0) = b.netdev_stats("eth0");
    assert!(a.ping(&b.ip, 3), "a -> b ping failed\n{}", a.diagnostics());
    assert!(b.ping(&a.ip, 2), "b -> a ping failed\n{}", b.diagnostics());
    let (rx1, tx1) = b.netdev_stats("eth0");
    assert!(
        rx1 >= rx0 + 5 && tx1 >= tx0 + 5,
        "b eth0 {rx0}/{tx0} -> {rx1}/{tx1}"
    );

    // UDP a -> b with busybox nc.
    b.spawn("nc.openbsd -u -l 5000", "udp5000");
    std::thread::sleep(Duration::from_millis(500));
    a.udp_send(&b.ip, 5000, "hello-from-a");
    let got = b.wait_output("cat /tmp/udp5000", "hello-from-a", T);
    assert!(got.contains("hello-from-a"), "b received: {got:?}");

    // Reconnect: kill a's QEMU and boot it again on the same socket; testpmd takes it back.
    a.kill();
    assert!(!a.is_running());
    a.restart();
    let t = a.wait_ready(BOOT_TIMEOUT);
    eprintln!("a ready again after {t:?}");
    assert!(
        a.ping(&b.ip, 3),
        "a -> b after restart\n{}",
        a.diagnostics()
    );

    // The backend restarts under running guests: QEMU reconnects (reconnect=1) and the guests
    // carry on without a reboot.
    tp.stop();
    let _tp2 = Testpmd::start(
        &[s0.clone(), s1.clone()],
        1,
        false,
        &dir.join("testpmd2.log"),
    );
    let t0 = Instant::now();
    while !a.ping(&b.ip, 1) {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no ping after the backend restarted\n{}\n{}",
            a.diagnostics(),
            b.diagnostics()
        );
    }
    eprintln!(
        "ping through the restarted backend after {:?}",
        t0.elapsed()
    );
    assert!(a.ping(&b.ip, 3), "a -> b after backend restart");
    assert!(a.is_running());
    assert_eq!(b.console().matches(READY_MARKER).count(), 1, "b rebooted?");
    drop(a);
    drop(b);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn listen_mode_multiqueue_through_testpmd() {
    let dir = workdir("mq");
    let (s0, s1) = (dir.join("vhost0.sock"), dir.join("vhost1.sock"));
    let opts = GuestOpts {
        queues: 2,
        smp: 2,
        ..Default::default()
    };
    // QEMU is the server here: it creates the sockets, testpmd connects (client=1) and retries.
    let mut a = Guest::launch_with(
        "mqa",
        &s0,
        Mode::Listen,
        &guest_mac(3),
        "10.77.2.1/24",
        opts.clone(),
    );
    let b = Guest::launch_with(
        "mqb",
        &s1,
        Mode::Listen,
        &guest_mac(4),
        "10.77.2.2/24",
        opts,
    );
    let _tp = Testpmd::start(&[s0.clone(), s1.clone()], 2, true, &dir.join("testpmd.log"));
    let ta = a.wait_ready(BOOT_TIMEOUT);
    let tb = b.wait_ready(BOOT_TIMEOUT);
    eprintln!("guests ready after {ta:?} / {tb:?}");

    let ch = a.run_ok("ethtool -l eth0", T);
    assert!(ch.contains("Combined:\t2"), "{ch}");
    // Transmit from each vCPU: XPS maps CPU n to queue n, io forwarding keeps the queue index.
    assert!(a.run("taskset 1 ping -c 3 -i 0.2 -W 2 10.77.2.2", T).0 == 0);
    assert!(a.run("taskset 2 ping -c 3 -i 0.2 -W 2 10.77.2.2", T).0 == 0);
    let stats = a.run_ok("ethtool -S eth0", T);
    eprintln!("{stats}");
    let q1 = stats
        .lines()
        .find_map(|l| l.trim().strip_prefix("tx_queue_1_packets: "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    assert!(q1 > 0, "no packets on tx queue 1:\n{stats}");

    // A listening guest restarts: QEMU recreates the socket, testpmd (a client) reconnects.
    a.restart();
    let t = a.wait_ready(BOOT_TIMEOUT);
    eprintln!("mqa ready again after {t:?}");
    assert!(a.ping(&b.ip, 3), "ping after restart\n{}", a.diagnostics());
    drop(a);
    drop(b);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn proc_net_dev_parser() {
    let text = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0\n  eth0:    1234      17    0    0    0     0          0         0     5678      21    0    0    0     0       0          0\n";
    assert_eq!(parse_proc_net_dev(text, "eth0"), Some((17, 21)));
    assert_eq!(parse_proc_net_dev(text, "lo"), Some((0, 0)));
    assert_eq!(parse_proc_net_dev(text, "eth1"), None);
}
