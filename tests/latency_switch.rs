//! tsn-latency through the real switch: a publisher in one namespace, a subscriber in another,
//! the switch between them on net_af_packet ports. ~2 s of frames at 1 ms; asserts that the CSV
//! holds every sequence number once with plausible figures (outcomes only, no timing bound a
//! loaded machine could break).

mod common;

use common::*;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const FRAMES: u64 = 2000;
const RUN: Duration = Duration::from_secs(180);
/// A latency above this is not plausible for two namespaces on one host, however loaded.
const PLAUSIBLE_NS: i64 = 1_000_000_000;

/// The tsn-latency binary. Cargo hands a test only its own package's binaries
/// (CARGO_BIN_EXE_*), so build it into the same target directory and profile as the switch under
/// test: a no-op after `cargo build --workspace` / `cargo test --workspace`, and what makes
/// `cargo test --test latency_switch` alone test current code.
fn latency_bin() -> &'static Path {
    static BIN_PATH: OnceLock<PathBuf> = OnceLock::new();
    BIN_PATH.get_or_init(|| {
        let profile_dir = Path::new(BIN)
            .parent()
            .expect("switch binary has a directory");
        let target_dir = profile_dir
            .parent()
            .expect("profile directory has a parent");
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.args(["build", "-p", "tsn-latency", "--bin", "tsn-latency"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("CARGO_TARGET_DIR", target_dir);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let out =
            run_with_timeout(&mut cmd, Duration::from_secs(900)).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            out.status.success(),
            "building tsn-latency failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bin = profile_dir.join("tsn-latency");
        assert!(bin.exists(), "{} missing after the build", bin.display());
        bin
    })
}

/// `tsn-latency ARGS` inside `host`'s namespace, to completion.
fn in_host(host: &Host, args: &[String]) -> Output {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &host.ns])
        .arg(latency_bin())
        .args(args);
    run_with_timeout(&mut cmd, RUN).unwrap_or_else(|e| panic!("{e}"))
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs the subscriber (`sub_args`) in h2 and, once it listens, the publisher (`pub_args`) in h1;
/// returns both outputs and the CSV rows by column name.
fn run_pair(
    lab: &Lab,
    sub_args: Vec<String>,
    pub_args: Vec<String>,
) -> (Output, Output, Vec<BTreeMap<String, String>>) {
    let csv = lab.dir.join(format!("run{}.csv", std::process::id()));
    let _ = fs::remove_file(&csv);
    let mut sub_args = sub_args;
    sub_args.extend(
        [
            "--count",
            &FRAMES.to_string(),
            "--csv",
            csv.to_str().unwrap(),
            "--json",
            "--idle-timeout",
            "20s",
            "--duration",
            "150s",
        ]
        .map(String::from),
    );
    let h1 = lab.host("h1");
    let h2 = lab.host("h2");
    let (sub, publ) = std::thread::scope(|s| {
        let sub = s.spawn(|| in_host(h2, &sub_args));
        // The CSV exists once the subscriber's socket is bound.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !csv.exists() && !sub.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(csv.exists(), "the subscriber never started");
        let mut pub_args = pub_args;
        pub_args.extend(["--count", &FRAMES.to_string()].map(String::from));
        let publ = in_host(h1, &pub_args);
        (sub.join().unwrap(), publ)
    });
    assert!(publ.status.success(), "publisher failed: {}", text(&publ));
    assert!(sub.status.success(), "subscriber failed: {}", text(&sub));
    let body = fs::read_to_string(&csv).unwrap();
    let mut lines = body.lines().filter(|l| !l.starts_with('#'));
    let header: Vec<String> = lines
        .next()
        .expect("CSV header")
        .split(',')
        .map(String::from)
        .collect();
    let rows = lines
        .map(|l| {
            header
                .iter()
                .cloned()
                .zip(l.split(',').map(String::from))
                .collect()
        })
        .collect();
    (sub, publ, rows)
}

/// Every sequence number once, no duplicate, latency positive and plausible, datapath (arrival −
/// actual send) positive and no more than the latency (arrival − scheduled send).
fn assert_complete(rows: &[BTreeMap<String, String>], sub: &Output) {
    let num = |r: &BTreeMap<String, String>, k: &str| -> i64 {
        r[k].parse()
            .unwrap_or_else(|_| panic!("column {k} of {r:?}"))
    };
    let mut seqs: Vec<i64> = rows.iter().map(|r| num(r, "seq")).collect();
    seqs.sort_unstable();
    let want: Vec<i64> = (0..FRAMES as i64).collect();
    assert_eq!(seqs.len(), rows.len());
    assert!(
        seqs == want,
        "the CSV does not hold every sequence number once: {} rows, first missing {:?}",
        rows.len(),
        want.iter().find(|q| seqs.binary_search(q).is_err())
    );
    for r in rows {
        let (lat, dp) = (num(r, "latency_ns"), num(r, "datapath_ns"));
        assert!(lat > 0 && lat < PLAUSIBLE_NS, "implausible latency: {r:?}");
        assert!(
            dp > 0 && dp <= lat,
            "datapath must lie in (0, latency]: {r:?}"
        );
        assert_eq!(lat, num(r, "arrival_ns") - num(r, "sched_ns"), "{r:?}");
        assert_eq!(r["dup"], "0", "{r:?}");
    }
    // Every arrival carried the kernel's receive timestamp (none stamped after recvmsg).
    assert!(
        !String::from_utf8_lossy(&sub.stderr).contains("no kernel timestamp"),
        "{}",
        text(sub)
    );
    let summary: serde_json::Value = serde_json::from_slice(&sub.stdout)
        .unwrap_or_else(|e| panic!("summary JSON: {e}\n{}", text(sub)));
    assert_eq!(summary["received"], FRAMES, "{summary}");
    assert_eq!(summary["lost"], 0, "{summary}");
    assert_eq!(summary["duplicates"], 0, "{summary}");
    assert_eq!(summary["latency_ns"]["count"], FRAMES, "{summary}");
}

#[test]
fn udp_probes_through_the_switch() {
    let mut lab = Lab::new("lat-udp");
    lab.add_host("h1", 1);
    lab.add_host("h2", 2);
    lab.start_switch(&[("h1", ""), ("h2", "")], &[]);
    // ARP and MAC learning first: the measured flow starts on a settled path.
    udp_exchange(lab.host("h1"), lab.host("h2"), Duration::from_secs(30)).unwrap();
    let dst = format!("{}:7788", lab.host("h2").ip);
    let tx_before = lab.switch().port_stats("h2").tx_packets;
    let (sub, publ, rows) = run_pair(
        &lab,
        vec!["sub".into(), "--listen".into(), dst.clone()],
        ["pub", "--dst", &dst, "--size", "64", "--priority", "5"]
            .map(String::from)
            .to_vec(),
    );
    assert_complete(&rows, &sub);
    assert!(
        String::from_utf8_lossy(&publ.stdout)
            .contains(&format!("sent {FRAMES} of {FRAMES} frames")),
        "{}",
        text(&publ)
    );
    // Every probe went through the switch's h2 port.
    let sent = lab.switch().port_stats("h2").tx_packets - tx_before;
    assert!(
        sent >= FRAMES,
        "the switch sent {sent} frames to h2, fewer than {FRAMES}"
    );
}

#[test]
fn raw_tagged_probes_keep_their_pcp_through_the_switch() {
    let mut lab = Lab::new("lat-raw");
    lab.add_host("h1", 1);
    lab.add_host("h2", 2);
    lab.start_switch(&[("h1", ""), ("h2", "")], &[]);
    let h2 = lab.host("h2");
    let watch = h2.raw();
    // 16-byte payloads (the smallest), 802.1Q VID 10 PCP 5, built by the tool: the kernel here
    // has no VLAN devices, so both ends use packet sockets.
    let (sub, _publ, rows) = run_pair(
        &lab,
        ["sub", "--iface", &h2.ifname, "--listen", "0.0.0.0:7790"]
            .map(String::from)
            .to_vec(),
        [
            "pub",
            "--iface",
            &lab.host("h1").ifname,
            "--dst-mac",
            &mac_str(&h2.mac),
            "--dst",
            &format!("{}:7790", h2.ip),
            "--vlan",
            "10",
            "--pcp",
            "5",
            "--size",
            "16",
        ]
        .map(String::from)
        .to_vec(),
    );
    assert_complete(&rows, &sub);
    // The frames reached h2 tagged as sent (the watcher's socket buffer holds only the first few
    // hundred: enough to see their tags).
    let mut tags = BTreeMap::new();
    while let Ok(Some(f)) = watch.recv(Duration::from_millis(200)) {
        if !f.outgoing() && f.dst() == h2.mac {
            *tags.entry(format!("{:?}", f.vlan())).or_insert(0u64) += 1;
        }
    }
    let want = format!("{:?}", Some(VlanTag::new(10, 5)));
    assert!(
        tags.len() == 1 && tags.contains_key(&want),
        "h2 saw frames tagged otherwise than {want}: {tags:?}"
    );
}
