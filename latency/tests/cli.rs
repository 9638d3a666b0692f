//! The tsn-latency binary end to end on loopback (no switch, no namespace): publisher →
//! subscriber, publisher → reflector and back, then `report` and `plot` on what they wrote.
//! Outcomes only: every frame accounted for, files that parse and decode.

use std::fs;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tsn-latency");

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tsn-latency-cli-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

/// A free loopback UDP port (bound and released; the tool binds it right after).
fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn describe(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn run(args: &[&str]) -> Output {
    let out = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {}", describe(&out));
    out
}

/// Starts `tsn-latency ARGS` in the background and waits until `ready` exists (or a while).
fn spawn_until(args: &[&str], ready: Option<&Path>) -> std::process::Child {
    let child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    match ready {
        Some(p) => {
            while !p.exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        None => std::thread::sleep(Duration::from_millis(300)),
    }
    child
}

fn wait(child: std::process::Child) -> Output {
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    out
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", describe(o)))
}

#[test]
fn publisher_to_subscriber_then_report_and_plot() {
    let dir = tmpdir("pubsub");
    let csv = dir.join("run.csv");
    let port = free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let sub = spawn_until(
        &[
            "sub",
            "--listen",
            &listen,
            "--count",
            "500",
            "--csv",
            csv.to_str().unwrap(),
            "--json",
            "--idle-timeout",
            "20s",
            "--duration",
            "120s",
            "--window",
            "0,1ms",
        ],
        Some(&csv),
    );
    // A stray datagram on the probe port is no probe: it must not count, nor throw the
    // sequence numbers off.
    let stray = UdpSocket::bind("127.0.0.1:0").unwrap();
    stray.send_to(&[0xde; 40], &listen).unwrap();
    stray.send_to(b"short", &listen).unwrap();
    let publ = run(&[
        "pub",
        "--dst",
        &listen,
        "--count",
        "500",
        "--size",
        "256",
        "--cycle-time",
        "1ms",
    ]);
    assert!(
        String::from_utf8_lossy(&publ.stdout).contains("sent 500 of 500 frames of 256 bytes"),
        "{}",
        describe(&publ)
    );
    let sub = wait(sub);
    assert!(
        String::from_utf8_lossy(&sub.stderr).contains("ignored 1 datagrams"),
        "{}",
        describe(&sub)
    );
    let s = json(&sub);
    assert_eq!(s["mode"], "one-way");
    assert_eq!(
        (s["received"].as_u64(), s["lost"].as_u64()),
        (Some(500), Some(0)),
        "{s}"
    );
    assert_eq!(s["duplicates"], 0);
    assert!(s["latency_ns"]["min"].as_i64().unwrap() > 0, "{s}");
    assert_eq!(s["jitter_ns"]["count"], 499);
    // A 1 ms window over a 1 ms cycle holds every arrival.
    assert_eq!(s["window"]["inside"], 500, "{s}");

    // report recomputes the same summary from the CSV.
    let rep = run(&["report", "--json", csv.to_str().unwrap()]);
    let r = json(&rep);
    assert_eq!(r, s, "report differs from the live summary");
    // Overrides apply: a 0 ns deadline makes every frame late.
    let rep = run(&["report", "--json", "--deadline", "0", csv.to_str().unwrap()]);
    assert_eq!(json(&rep)["deadline_misses"], 500);
    let text = run(&["report", csv.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("received 500 lost 0") && text.contains("p99.9"),
        "{text}"
    );

    let png_dir = dir.join("png");
    let plot = run(&[
        "plot",
        "--out",
        png_dir.to_str().unwrap(),
        &format!("loopback={}", csv.display()),
    ]);
    let listed: Vec<&str> = std::str::from_utf8(&plot.stdout).unwrap().lines().collect();
    assert_eq!(listed.len(), 6, "{listed:?}");
    for p in listed {
        let f = fs::File::open(p).unwrap_or_else(|e| panic!("{p}: {e}"));
        let mut r = png::Decoder::new(f).read_info().unwrap();
        let mut buf = vec![0; r.output_buffer_size()];
        let info = r.next_frame(&mut buf).unwrap();
        assert!(info.width > 0 && info.height > 0, "{p}");
    }
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn reflector_gives_half_round_trips() {
    let dir = tmpdir("reflect");
    let csv = dir.join("rtt.csv");
    let port = free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let refl = spawn_until(
        &[
            "reflect",
            "--listen",
            &listen,
            "--count",
            "300",
            "--duration",
            "120s",
        ],
        None,
    );
    let publ = run(&[
        "pub",
        "--dst",
        &listen,
        "--count",
        "300",
        "--size",
        "16",
        "--reflect",
        "--csv",
        csv.to_str().unwrap(),
        "--json",
    ]);
    let s = json(&publ);
    assert_eq!(s["mode"], "half-rtt", "{s}");
    assert_eq!(
        (s["received"].as_u64(), s["lost"].as_u64()),
        (Some(300), Some(0)),
        "{s}"
    );
    let refl = wait(refl);
    assert!(
        String::from_utf8_lossy(&refl.stdout).contains("echoed 300 frames"),
        "{}",
        describe(&refl)
    );
    // The CSV says how its arrivals were obtained, and report carries that on.
    let head = fs::read_to_string(&csv).unwrap();
    assert!(
        head.starts_with("# tsn-latency csv=1 mode=half-rtt"),
        "{head:.200}"
    );
    let rep = run(&["report", csv.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&rep.stdout).contains("RTT/2"));
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_values_are_refused_with_a_sentence() {
    for (args, want) in [
        (
            vec!["pub", "--dst", "127.0.0.1:9", "--cycle-time", "1 fortnight"],
            "not a duration",
        ),
        (
            vec!["pub", "--dst", "127.0.0.1:9", "--size", "8"],
            "16..=65507",
        ),
        (vec!["pub", "--dst", "[::1]:9", "--count", "1"], "only IPv4"),
        (
            vec!["sub", "--window", "300us,100us"],
            "ends before it starts",
        ),
        (
            vec!["report", "/nonexistent/x.csv"],
            "cannot read /nonexistent/x.csv",
        ),
    ] {
        let out = Command::new(BIN).args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}
