//! The comparison's placement tooling (`benches/compare/line_rtt.c`, `placement.py`): the
//! probe builds and measures a round trip between the two CPUs in both modes, and the report
//! sorts runs by the readings taken within their measured seconds.
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tsn-placement-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn build_probe(dir: &Path) -> PathBuf {
    let bin = dir.join("line_rtt");
    let out = Command::new("cc")
        .args(["-O2", "-pthread", "-o"])
        .arg(&bin)
        .arg(repo().join("benches/compare/line_rtt.c"))
        .output()
        .expect("cc runs");
    assert!(
        out.status.success(),
        "cc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    bin
}

/// Two CPUs this test may run on (`Cpus_allowed_list`), if it has two.
fn two_cpus() -> Option<(String, String)> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?;
    let mut cpus = Vec::new();
    for part in list.trim().split(',') {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        let (lo, hi): (u32, u32) = (lo.parse().ok()?, hi.parse().ok()?);
        cpus.extend(lo..=hi);
    }
    match cpus.as_slice() {
        [first, .., last] => Some((last.to_string(), first.to_string())),
        _ => None,
    }
}

#[test]
fn line_rtt_measures_a_round_trip_once_and_while_watching() {
    let dir = scratch("probe");
    let bin = build_probe(&dir);
    let refused = Command::new(&bin).args(["0", "0", "50"]).output().unwrap();
    assert_eq!(
        refused.status.code(),
        Some(2),
        "one CPU for both sides is refused"
    );
    let Some((a, b)) = two_cpus() else {
        eprintln!("one CPU allowed: no round trip to measure");
        return;
    };
    let out = Command::new(&bin).args([&a, &b, "50"]).output().unwrap();
    assert!(out.status.success());
    let ns: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    // Tens of ns to a few µs; up to a scheduler slice if the two vCPUs share a host CPU.
    assert!(ns > 0.0 && ns < 50e6, "round trip {ns} ns");

    let bad = Command::new(&bin)
        .args([&a, &b, "watch", "5"])
        .output()
        .unwrap();
    assert_eq!(
        bad.status.code(),
        Some(2),
        "a period under 100 ms is refused"
    );

    let out_file = dir.join("watch");
    let mut child = Command::new(&bin)
        .args([&a, &b, "watch", "100"])
        .stdout(fs::File::create(&out_file).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Generous: readings come 10 a second; wait for three, up to 30 s on a loaded machine.
    let mut lines = Vec::new();
    for _ in 0..300 {
        std::thread::sleep(Duration::from_millis(100));
        lines = fs::read_to_string(&out_file)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        if lines.len() >= 3 {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(lines.len() >= 3, "readings: {lines:?}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    for l in &lines[..3] {
        let f: Vec<f64> = l.split_whitespace().map(|x| x.parse().unwrap()).collect();
        assert_eq!(f.len(), 4, "time, round trip, two clocks: {l}");
        assert!((now - f[0]).abs() < 120.0, "wall time: {l}");
        assert!(f[1] > 0.0, "round trip: {l}");
        if cfg!(target_arch = "x86_64") {
            assert!(f[2] > 0.0, "CPU A's clock: {l}");
        }
    }
    let _ = fs::remove_dir_all(&dir);
}

/// A run of the synthetic comparison: directory name, pps, measured window (start, end) and
/// the watch's readings (time, round trip ns).
type Run = (&'static str, u64, (f64, f64), &'static [(f64, u32)]);

/// A run directory as run.sh leaves it: pps, measure-window, line-rtt-watch.
fn run(dir: &Path, pps: u64, window: (f64, f64), readings: &[(f64, u32)]) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join("pps"), format!("{pps}\n")).unwrap();
    fs::write(
        dir.join("measure-window"),
        format!("{}\n{}\n", window.0, window.1),
    )
    .unwrap();
    let w: String = readings
        .iter()
        .map(|(t, ns)| format!("{t:.3} {ns} 3600 3600\n"))
        .collect();
    fs::write(dir.join("line-rtt-watch"), w).unwrap();
}

/// placement.py's report on work directory `w` (row 64-1-8, backends A and C).
fn report(w: &Path) -> String {
    let out = Command::new("python3")
        .arg(repo().join("benches/compare/placement.py"))
        .arg(w)
        .arg("A=testpmd-vhost,C=tsn-vswitch")
        .arg("64-1-8|64 B 1 qp")
        .output()
        .expect("python3 runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn placement_report_compares_runs_within_one_placement() {
    let w = scratch("report");
    let row = w.join("64-1-8");
    // A: near throughout (10 Mpps) and changed while measured (7); C: near throughout (12),
    // far throughout (5), and near while measured but far before (start-up), which must count
    // as near (11). (run, pps, measured window, readings: time and round trip)
    #[rustfmt::skip]
    let runs: [Run; 5] = [
        ("r1A", 10_000_000, (100.0, 105.0), &[(99.5, 55), (102.0, 56), (105.0, 54)]),
        ("r1C", 12_000_000, (200.0, 205.0), &[(201.0, 52), (204.0, 53)]),
        ("r2C", 5_000_000, (300.0, 305.0), &[(301.0, 320), (304.0, 330)]),
        ("r3C", 11_000_000, (400.0, 405.0), &[(396.0, 400), (402.0, 58)]),
        ("r2A", 7_000_000, (500.0, 505.0), &[(501.0, 50), (503.0, 310)]),
    ];
    for (name, pps, window, readings) in runs {
        run(&row.join(name), pps, window, readings);
    }
    let text = report(&w);
    let line = |p: &str| {
        text.lines()
            .find(|l| l.starts_with("64 B 1 qp") && l.split_whitespace().nth(4) == Some(p))
            .unwrap_or_else(|| panic!("no {p} line in:\n{text}"))
            .to_owned()
    };
    let near = line("near");
    assert!(near.contains("10.00 Mpps (1)"), "{near}");
    assert!(near.contains("11.50 Mpps (2)"), "{near}");
    assert!(near.trim_end().ends_with("1.15"), "C/A near: {near}");
    let far = line("far");
    assert!(
        far.contains("5.00 Mpps (1)") && far.trim_end().ends_with("n/a"),
        "{far}"
    );
    let changed = line("changed");
    assert!(changed.contains("7.00 Mpps (1)"), "{changed}");
    assert!(
        text.contains("<= 75 ns"),
        "cut at 1.5x the fastest (50): {text}"
    );

    // No reading twice the fastest: one placement, nothing sorted (a malformed line, as a
    // watch killed mid-write leaves, is skipped).
    fs::remove_dir_all(row.join("r2C")).unwrap();
    fs::remove_dir_all(row.join("r2A")).unwrap();
    fs::remove_dir_all(row.join("r3C")).unwrap();
    let cut_short = row.join("r1C/line-rtt-watch");
    let mut text_w = fs::read_to_string(&cut_short).unwrap();
    text_w.push_str("204.5 6");
    fs::write(&cut_short, text_w).unwrap();
    let text = report(&w);
    assert!(
        text.contains("one placement throughout") && text.contains("52-56 ns"),
        "{text}"
    );
    let _ = fs::remove_dir_all(&w);
}
