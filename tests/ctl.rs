//! The control socket through the real switch: its mode and group, its limits on connections
//! and request size (silent, slow and oversize clients cost only themselves), `ctl gcl` reading
//! the file with the client's rights and never echoing its tokens, and the commands `show`,
//! `stats clear` and `fdb flush`. Outcomes only; every wait has a generous bound.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Bound for something that must happen.
const WAIT: Duration = Duration::from_secs(15);
/// How quickly `ctl` must answer while other clients misbehave (it answers in milliseconds when
/// nothing does; this only has to tell "answers" from "stalled until a deadline").
const ANSWER: Duration = Duration::from_secs(3);
/// The unprivileged user and group the client runs as in some tests (Debian's nobody/nogroup).
const NOBODY: &str = "65534";
const NOGROUP: &str = "nogroup";

/// A GCL the switch accepts on a veth (fast link): two classes, gates never all closed.
const GCL: &str = "num_tc 2\nmap 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0\nbase-time 0\n\
                   sched-entry S 03 500000\nsched-entry S 01 500000\n";

struct Ctl {
    ok: bool,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// `tsn-vswitch ctl --ctl SOCK ARGS...`, as root or (`as_nobody`) as nobody:nogroup.
fn ctl(sock: &Path, args: &[&str], as_nobody: bool) -> Ctl {
    let mut cmd = if as_nobody {
        let mut c = Command::new("setpriv");
        c.args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            BIN,
        ]);
        c
    } else {
        Command::new(BIN)
    };
    cmd.arg("ctl").arg("--ctl").arg(sock).args(args);
    let t0 = Instant::now();
    let out: Output = run_with_timeout(&mut cmd, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("ctl {args:?}: {e}"));
    Ctl {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: t0.elapsed(),
    }
}

/// `ctl ARGS` as root, which must succeed; its stdout.
fn ctl_ok(sw: &Switch, args: &[&str]) -> String {
    let r = ctl(&sw.ctl, args, false);
    assert!(r.ok, "ctl {args:?} failed: {}", r.stderr);
    r.stdout
}

/// `ctl ARGS` as root, printing JSON.
fn ctl_json(sw: &Switch, args: &[&str]) -> serde_json::Value {
    let out = ctl_ok(sw, args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("ctl {args:?}: bad JSON ({e}): {out}"))
}

fn two_hosts(test: &str) -> Lab {
    let mut lab = Lab::new(test);
    lab.add_host("h1", 1);
    lab.add_host("h2", 2);
    lab
}

#[test]
fn the_socket_is_owner_only_whatever_the_umask() {
    let lab = two_hosts("ctl_mode");
    // SAFETY: umask only changes this process's (and its children's) file-creation mask.
    let old = unsafe { libc::umask(0) };
    let sw = Switch::start(&lab.dir, lab.port_args(&[("h1", ""), ("h2", "")]));
    // SAFETY: as above, restoring it.
    unsafe { libc::umask(old) };
    let m = std::fs::symlink_metadata(&sw.ctl).unwrap();
    assert!(m.file_type().is_socket());
    assert_eq!(
        m.permissions().mode() & 0o777,
        0o600,
        "started with umask 000, the socket must still be 0600"
    );
    assert_eq!(m.uid(), 0);
    let r = ctl(&sw.ctl, &["stats"], true);
    assert!(
        !r.ok && r.stderr.contains("cannot reach the switch") && r.stderr.contains("denied"),
        "nobody must not reach an owner-only socket: ok={} {}",
        r.ok,
        r.stderr
    );
    drop(sw);

    // A group that does not exist: one clear error, nothing started.
    let out = run_with_timeout(
        Command::new(BIN).args(["--ctl-group", "no-such-group-tsn", "--port", "x=dpdk:y"]),
        Duration::from_secs(30),
    )
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("no group named 'no-such-group-tsn'"),
        "{err}"
    );
}

#[test]
fn a_ctl_group_opens_the_socket_and_ctl_gcl_reads_the_file_with_the_clients_rights() {
    let mut lab = two_hosts("ctl_group");
    let gcl = lab.dir.join("h2.gcl");
    std::fs::write(&gcl, GCL).unwrap();
    // speed=: af_packet's reported 10 Gb/s is paced by nothing (a GCL refuses it).
    let mut args = lab.port_args(&[("h1", ""), ("h2", "speed=1000")]);
    // Two tx queues on h2 (two af_packet queue pairs), for the `queues 1@0 1@1` list below.
    let h2 = args
        .iter_mut()
        .find(|a| a.starts_with("h2,"))
        .expect("h2's --port");
    h2.push_str(",qpairs=2");
    for a in [
        "--ctl-group",
        NOGROUP,
        "--pmd-cores",
        "1",
        "--gcl",
        &format!("h2={}", gcl.display()),
    ] {
        args.push(a.to_string());
    }
    lab.start_switch_args(args);
    let sw = lab.switch();
    let m = std::fs::symlink_metadata(&sw.ctl).unwrap();
    assert_eq!(m.permissions().mode() & 0o777, 0o660);
    assert_eq!(m.gid(), 65534, "the socket belongs to group {NOGROUP}");
    let r = ctl(&sw.ctl, &["stats"], true);
    assert!(
        r.ok,
        "a member of {NOGROUP} may use the socket: {}",
        r.stderr
    );

    // A file nobody cannot read (root, the switch's user, could): the client's own error, and
    // the switch sees no request at all.
    let secret = lab.dir.join("secret.gcl");
    std::fs::write(&secret, GCL).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o000)).unwrap();
    let requests = |sw: &Switch| {
        ctl_json(sw, &["stats"])["ctl"]["requests"]
            .as_u64()
            .unwrap()
    };
    let before = requests(sw);
    let secret_s = secret.to_string_lossy();
    let r = ctl(&sw.ctl, &["gcl", "h2", &secret_s], true);
    assert!(
        !r.ok
            && r.stderr
                .contains(&format!("cannot read {secret_s}: Permission denied")),
        "ok={} {}",
        r.ok,
        r.stderr
    );
    assert_eq!(
        requests(sw),
        before + 1,
        "only the second stats request reached the switch"
    );
    assert!(
        !sw.log_text().contains("secret.gcl"),
        "the switch saw the path"
    );

    // A file nobody can read: sent as text, installed.
    let good = lab.dir.join("good.gcl");
    std::fs::write(&good, GCL).unwrap();
    std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = ctl(&sw.ctl, &["gcl", "h2", &good.to_string_lossy()], true);
    assert!(r.ok, "{}", r.stderr);
    let reply: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(reply["config_change_time"].as_u64().is_some(), "{reply}");

    // Bad texts: FILE:LINE: reason, never a token of the file.
    for (name, text, want) in [
        ("bad1.gcl", "SECRETWORD 1\n", ":1: unknown keyword"),
        (
            "bad2.gcl",
            "num_tc 2\nmap 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\nsched-entry S 01 TOPSECRET\n",
            ":3: the value after `sched-entry` is not",
        ),
        (
            "bad3.gcl",
            "num_tc 2\nclockid CLOCK_SECRET\n",
            ":2: unknown clockid",
        ),
    ] {
        let f = lab.dir.join(name);
        std::fs::write(&f, text).unwrap();
        let r = ctl(&sw.ctl, &["gcl", "h2", &f.to_string_lossy()], false);
        assert!(
            !r.ok && r.stderr.contains(&format!("{name}{want}")),
            "{name}: want {want:?} in: {}",
            r.stderr
        );
        for secret in ["SECRETWORD", "TOPSECRET", "CLOCK_SECRET"] {
            assert!(!r.stderr.contains(secret), "{name}: echoed: {}", r.stderr);
        }
    }

    // show gcl: the running list and the pending one (the last install), as a table and JSON.
    let table = ctl_ok(sw, &["show", "gcl", "h2"]);
    assert!(
        table.contains("port h2") && table.contains("0x03") && table.contains("500000"),
        "{table}"
    );
    let v = ctl_json(sw, &["--json", "show", "gcl", "h2"]);
    let list = if v["admin"].is_null() {
        &v["oper"]
    } else {
        &v["admin"]
    };
    assert_eq!(list["entries"].as_array().map(Vec::len), Some(2), "{v}");
    assert_eq!(list["entries"][1]["offset_ns"], 500000, "{v}");
    let r = ctl(&sw.ctl, &["show", "gcl", "h1"], false);
    assert!(
        !r.ok && r.stderr.contains("has no gate stage"),
        "{}",
        r.stderr
    );

    // A list written as a tc command line, an hour ahead: pending until its base-time, shown
    // with it as the ConfigChangeTime beside the running list.
    let base = tai_now_ns() + 3_600_000_000_000;
    let taprio = lab.dir.join("h2.sh");
    std::fs::write(
        &taprio,
        format!(
            "tc qdisc replace dev h2 parent root handle 100 taprio \\\n  num_tc 2 map 0 1 \\\n  \
             queues 1@0 1@1 base-time {base} \\\n  sched-entry S 0x2 300000 sched-entry S 1 \
             0xaae60 \\\n  clockid CLOCK_TAI\n"
        ),
    )
    .unwrap();
    // A map naming a queue the port lacks is refused, as taprio refuses it.
    let three = lab.dir.join("three.sh");
    std::fs::write(
        &three,
        "tc qdisc add dev h2 root taprio num_tc 3 map 0 1 2 queues 1@0 1@1 1@2 base-time 0 \
         sched-entry S 7 1000000 clockid CLOCK_TAI\n",
    )
    .unwrap();
    let r = ctl(&sw.ctl, &["gcl", "h2", &three.to_string_lossy()], false);
    assert!(
        !r.ok
            && r.stderr
                .contains("names a tx queue port 'h2' does not have (it has 2"),
        "{}",
        r.stderr
    );
    let r = ctl(&sw.ctl, &["gcl", "h2", &taprio.to_string_lossy()], false);
    assert!(r.ok, "{}", r.stderr);
    let reply: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(reply["config_change_time"], base, "{reply}");
    assert!(
        reply["warnings"][0]
            .as_str()
            .is_some_and(|w| w.contains("map names classes for 2 of the 16 priorities")),
        "{reply}"
    );
    let v = ctl_json(sw, &["--json", "show", "gcl", "h2"]);
    assert_eq!(v["config_change_time"], base, "{v}");
    assert_eq!(v["admin"]["start_ns"], base, "{v}");
    assert_eq!(v["admin"]["entries"][1]["interval_ns"], 700000, "{v}");
    assert_eq!(
        v["admin"]["queues"],
        serde_json::json!([[1, 0], [1, 1]]),
        "{v}"
    );
    assert_eq!(v["admin"]["clockid"], "CLOCK_TAI", "{v}");
    assert_eq!(
        v["oper"]["entries"][0]["gates"], 3,
        "the first list still runs: {v}"
    );
    let table = ctl_ok(sw, &["show", "gcl", "h2"]);
    assert!(
        table.contains("oper: since ")
            && table.contains(&format!("admin (pending): from {base} ns"))
            && table.contains("  queues 1@0 1@1\n")
            && table.contains("700000"),
        "{table}"
    );

    // The same as an 802.1Qcw document: it replaces the pending list.
    let json = lab.dir.join("h2.json");
    std::fs::write(
        &json,
        format!(
            r#"{{"ieee802-dot1q-sched-bridge:gate-parameter-table": {{
  "admin-control-list": {{"gate-control-entry": [
    {{"index": 0, "operation-name": "ieee802-dot1q-sched:set-gate-states", "gate-states-value": 2, "time-interval-value": 250000}},
    {{"index": 1, "operation-name": "ieee802-dot1q-sched:set-gate-states", "gate-states-value": 1, "time-interval-value": 750000}}]}},
  "admin-base-time": {{"seconds": "{}", "nanoseconds": {}}}}}}}
"#,
            base / 1_000_000_000 + 1,
            base % 1_000_000_000
        ),
    )
    .unwrap();
    let r = ctl(&sw.ctl, &["gcl", "h2", &json.to_string_lossy()], false);
    assert!(r.ok, "{}", r.stderr);
    let v = ctl_json(sw, &["--json", "show", "gcl", "h2"]);
    assert_eq!(v["config_change_time"], base + 1_000_000_000, "{v}");
    assert_eq!(v["admin"]["num_tc"], 8, "{v}");
    assert_eq!(v["admin"]["entries"][0]["interval_ns"], 250000, "{v}");

    // A clockid the gates do not run on is refused, and changes nothing.
    let rt = lab.dir.join("rt.sh");
    std::fs::write(
        &rt,
        std::fs::read_to_string(&taprio)
            .unwrap()
            .replace("CLOCK_TAI", "CLOCK_REALTIME"),
    )
    .unwrap();
    let r = ctl(&sw.ctl, &["gcl", "h2", &rt.to_string_lossy()], false);
    assert!(
        !r.ok
            && r.stderr.contains(&format!(
                "{}: the list's clockid CLOCK_REALTIME is not the gates' clock (--clock tai",
                rt.display()
            )),
        "{}",
        r.stderr
    );
    let v = ctl_json(sw, &["--json", "show", "gcl", "h2"]);
    assert_eq!(v["config_change_time"], base + 1_000_000_000, "{v}");
}

/// CLOCK_TAI now, ns: the switch's gates run on it (`--clock tai`, the default).
fn tai_now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    assert_eq!(unsafe { libc::clock_gettime(libc::CLOCK_TAI, &mut ts) }, 0);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Opens `n` connections that send nothing.
fn silent(sock: &Path, n: usize) -> Vec<UnixStream> {
    (0..n)
        .map(|_| UnixStream::connect(sock).expect("connect"))
        .collect()
}

/// The line the switch wrote before closing, if it did within `wait`.
fn closing_line(s: &UnixStream, wait: Duration) -> Option<String> {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut line = String::new();
    match BufReader::new(s).read_line(&mut line) {
        Ok(n) if n > 0 => Some(line),
        _ => None,
    }
}

#[test]
fn silent_slow_and_oversize_clients_cost_only_themselves() {
    let mut lab = two_hosts("ctl_limits");
    let sw = lab.start_switch(&[("h1", ""), ("h2", "")], &[]);

    // 20 silent connections: 16 are held, 4 refused at once with a line.
    let conns = silent(&sw.ctl, 20);
    let opened = Instant::now();
    let refused: Vec<String> = conns
        .iter()
        .filter_map(|c| closing_line(c, Duration::from_millis(100)))
        .collect();
    assert_eq!(refused.len(), 4, "{refused:?}");
    assert!(
        refused
            .iter()
            .all(|l| l.contains("too many control connections")),
        "{refused:?}"
    );
    // While they are held (and idle), ctl still answers, promptly.
    std::thread::sleep(Duration::from_millis(1200).saturating_sub(opened.elapsed()));
    for _ in 0..3 {
        let r = ctl(&sw.ctl, &["stats"], false);
        assert!(
            r.ok && r.took < ANSWER,
            "ctl stats with 16 silent connections open: ok={} after {:?}: {}",
            r.ok,
            r.took,
            r.stderr
        );
    }
    let v = ctl_json(sw, &["stats"]);
    assert!(v["ctl"]["connections_refused"].as_u64() >= Some(4), "{v}");
    assert!(v["ctl"]["connections_evicted"].as_u64() >= Some(1), "{v}");
    // The ones still open are closed at their deadline.
    for c in &conns {
        let mut rest = Vec::new();
        c.set_read_timeout(Some(WAIT)).unwrap();
        let _ = (&*c).read_to_end(&mut rest);
    }
    let v = ctl_json(sw, &["stats"]);
    assert!(v["ctl"]["timeouts"].as_u64() >= Some(1), "{v}");
    assert!(v["ctl"]["open"].as_u64() <= Some(1), "{v}");
    drop(conns);

    // A request sent a byte at a time: others are answered meanwhile, and it is too, once whole.
    let sock = sw.ctl.clone();
    let slow = std::thread::spawn(move || {
        let mut s = UnixStream::connect(&sock).unwrap();
        for b in b"\"fdb\"\n" {
            s.write_all(&[*b]).unwrap();
            std::thread::sleep(Duration::from_millis(500));
        }
        closing_line(&s, WAIT)
    });
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..3 {
        let r = ctl(&sw.ctl, &["stats"], false);
        assert!(
            r.ok && r.took < ANSWER,
            "ctl stats during a slow request: ok={} after {:?}: {}",
            r.ok,
            r.took,
            r.stderr
        );
    }
    let reply = slow.join().unwrap().expect("the slow request is answered");
    assert!(reply.starts_with("{\"ok\":{\"entries\""), "{reply}");

    // A request over the size cap: an error line, the connection closed, nothing else hurt.
    let mut s = UnixStream::connect(&sw.ctl).unwrap();
    let reader = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..64 {
            if s.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    let line = closing_line(&reader, WAIT).expect("a reply to the oversize request");
    assert!(line.contains("request larger than"), "{line}");
    writer.join().unwrap();
    let v = ctl_json(sw, &["stats"]);
    assert_eq!(v["ctl"]["oversize_requests"], 1, "{v}");
}

#[test]
fn show_tables_stats_clear_and_fdb_flush() {
    let mut lab = two_hosts("ctl_show");
    lab.start_switch(&[("h1", ""), ("h2", "")], &["--pmd-cores", "1"]);
    let (h1, h2) = (lab.host("h1"), lab.host("h2"));
    let (ok, out) = h1.ping_until_ok(h2.ip, WAIT);
    assert!(ok, "h1 cannot ping h2 through the switch: {out}");
    assert!(h1.ping(h2.ip, 10).status.success());
    let sw = lab.switch();

    // show ports
    let t = ctl_ok(sw, &["show", "ports"]);
    let lines: Vec<&str> = t.lines().collect();
    assert!(
        lines[0].contains("PORT") && lines[0].contains("RX PACKETS"),
        "{t}"
    );
    for (name, vlan, vdev) in [
        ("h1", "trunk", "net_af_packet0"),
        ("h2", "trunk", "net_af_packet1"),
    ] {
        assert!(
            lines.iter().any(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                w.get(1) == Some(&name)
                    && w.get(2) == Some(&"dpdk")
                    && w.get(3).is_some_and(|t| t.starts_with(vdev))
                    && w.contains(&vlan)
            }),
            "no row for {name}: {t}"
        );
    }
    let v = ctl_json(sw, &["--json", "show", "ports"]);
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["h1", "h2"], "{v}");
    assert!(v[0]["rx_packets"].as_u64() >= Some(10), "{v}");

    // show pmd: core 1 polls both ports' queue 0, and has done work.
    let t = ctl_ok(sw, &["show", "pmd"]);
    assert!(
        t.lines()
            .any(|l| l.trim_start().starts_with("1 ") && l.contains("h1:0") && l.contains("h2:0")),
        "{t}"
    );
    let pmd = |sw: &Switch| ctl_json(sw, &["--json", "show", "pmd"])[0].clone();
    let p = pmd(sw);
    assert_eq!(p["core"], 1, "{p}");
    assert_eq!(
        p["rxqs"],
        serde_json::json!([{"port": "h1", "queue": 0}, {"port": "h2", "queue": 0}]),
        "{p}"
    );
    let busy = p["busy_pct"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&busy), "{p}");
    assert!(p["packets"].as_u64() >= Some(20), "{p}");
    assert!(p["cycles_per_packet"].as_u64() > Some(0), "{p}");

    // show fdb
    let (m1, m2) = (mac_str(&h1.mac), mac_str(&h2.mac));
    let t = ctl_ok(sw, &["show", "fdb"]).to_ascii_lowercase();
    assert!(
        t.lines().any(|l| l.starts_with(&m1) && l.contains(" h1 "))
            && t.lines().any(|l| l.starts_with(&m2) && l.contains(" h2 ")),
        "{t}"
    );
    let v = ctl_json(sw, &["--json", "show", "fdb"]);
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .any(|e| e["mac"] == m2.as_str() && e["vlan"] == 0),
        "{v}"
    );

    // show clock
    let t = ctl_ok(sw, &["show", "clock"]);
    assert!(
        t.lines()
            .any(|l| l.starts_with("reference") && l.ends_with("tai")),
        "{t}"
    );
    let v = ctl_json(sw, &["--json", "show", "clock"]);
    assert_eq!(v["reference"], "tai", "{v}");
    assert!(v["now_ns"].as_u64() > Some(0), "{v}");

    // stats clear: counters restart from zero, then grow again.
    let before = sw.port_stats("h1").rx_packets;
    assert!(before >= 10, "{before}");
    ctl_ok(sw, &["stats", "clear"]);
    let after: u64 = sw.stats().iter().map(|p| p.rx_packets).sum();
    assert!(
        after <= 2,
        "after stats clear the ports counted {after} frames (before: {before})"
    );
    assert!(pmd(sw)["packets"].as_u64() <= Some(2), "{}", pmd(sw));
    assert!(h1.ping(h2.ip, 5).status.success());
    assert!(sw.port_stats("h1").rx_packets >= 5, "{:?}", sw.stats());
    assert!(pmd(sw)["packets"].as_u64() >= Some(10), "{}", pmd(sw));

    // fdb flush PORT, then everything.
    let on = |port: &str| sw.fdb().iter().filter(|e| e.port == port).count();
    assert!(on("h1") >= 1 && on("h2") >= 1, "{:?}", sw.fdb());
    let v = ctl_json(sw, &["fdb", "flush", "h1"]);
    assert!(v["flushed"].as_u64() >= Some(1), "{v}");
    assert_eq!(on("h1"), 0, "{:?}", sw.fdb());
    ctl_ok(sw, &["fdb", "flush"]);
    assert!(sw.fdb().is_empty(), "{:?}", sw.fdb());
    let r = ctl(&sw.ctl, &["fdb", "flush", "nosuch"], false);
    assert!(
        !r.ok && r.stderr.contains("no port named 'nosuch'"),
        "{}",
        r.stderr
    );

    // port add/del: a bad request changes nothing and says why.
    let r = ctl(&sw.ctl, &["port", "add", "x=bogus:y"], false);
    assert!(
        !r.ok && r.stderr.contains("unknown port kind 'bogus'"),
        "{}",
        r.stderr
    );
    let r = ctl(&sw.ctl, &["port", "del", "nosuch"], false);
    assert!(!r.ok && r.stderr.starts_with("error: "), "{}", r.stderr);
    assert_eq!(
        ctl_json(sw, &["--json", "show", "ports"])
            .as_array()
            .map(Vec::len),
        Some(2)
    );
}
