//! Configuration errors: the switch must exit non-zero, within a bound, with a line on stderr that
//! says `error` and names the bad input. `--help` exits 0 and documents every option.

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;

/// Errors found before DPDK starts should come at once; this bound only catches hangs.
const BOUND: Duration = Duration::from_secs(30);
/// Errors DPDK reports (devargs) need the EAL: more time.
const EAL_BOUND: Duration = Duration::from_secs(90);

/// A valid port that needs no interface (the null PMD), for cases where another input is bad.
const NULL_PORT: &str = "p0=dpdk:net_null0";

/// Run the switch with `args` and assert it fails as described. `needles`: groups of
/// alternatives; one line of stderr must contain `error` (any case) and, for every group, one of
/// its alternatives (any case).
fn expect_error(name: &str, args: &[&str], needles: &[&[&str]], bound: Duration) {
    let dir = std::env::temp_dir().join(format!("tsnt-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ctl = dir.join("ctl.sock");
    let mut cmd = Command::new(BIN);
    cmd.args(args).arg("--ctl").arg(&ctl);
    let out = run_with_timeout(&mut cmd, bound)
        .unwrap_or_else(|e| panic!("[{name}] switch hung on a bad configuration: {e}"));
    let stderr = strip_ansi(&String::from_utf8_lossy(&out.stderr));
    let stdout = strip_ansi(&String::from_utf8_lossy(&out.stdout));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        !out.status.success() && out.status.code().is_some(),
        "[{name}] expected a non-zero exit (not a signal) for {args:?}, got {}\nstderr:\n{stderr}\nstdout:\n{stdout}",
        out.status
    );
    assert!(
        out.status.code() != Some(101) && !stderr.contains("panicked"),
        "[{name}] the switch panicked instead of reporting an error for {args:?}\nstderr:\n{stderr}"
    );
    let found = stderr.lines().any(|line| {
        let l = line.to_lowercase();
        l.contains("error")
            && needles
                .iter()
                .all(|alts| alts.iter().any(|n| l.contains(&n.to_lowercase())))
    });
    assert!(
        found,
        "[{name}] no stderr line with `error` naming {needles:?} for {args:?}\nstderr:\n{stderr}\nstdout:\n{stdout}"
    );
}

#[test]
fn unknown_port_kind() {
    expect_error("kind", &["--port", "a=bogus:x"], &[&["bogus"]], BOUND);
}

#[test]
fn malformed_port_spec_without_kind() {
    expect_error("nokind", &["--port", "zq7"], &[&["zq7"]], BOUND);
}

#[test]
fn malformed_port_spec_without_name() {
    expect_error(
        "noname",
        &["--port", "=dpdk:net_null0"],
        &[&["=dpdk:net_null0", "name"]],
        BOUND,
    );
}

#[test]
fn duplicate_port_name() {
    expect_error(
        "dup",
        &[
            "--port",
            "dupx=dpdk:net_null0",
            "--port",
            "dupx=dpdk:net_null1",
        ],
        &[&["dupx"]],
        BOUND,
    );
}

#[test]
fn bad_core_lists() {
    expect_error(
        "cores-open-range",
        &["--port", NULL_PORT, "--pmd-cores", "1-"],
        &[&["1-"]],
        BOUND,
    );
    expect_error(
        "cores-missing",
        &["--port", NULL_PORT, "--pmd-cores", "99"],
        &[&["99"]],
        BOUND,
    );
    expect_error(
        "cores-garbage",
        &["--port", NULL_PORT, "--pmd-cores", "one"],
        &[&["one"]],
        BOUND,
    );
    expect_error(
        "main-in-pmd",
        &[
            "--port",
            NULL_PORT,
            "--main-core",
            "1",
            "--pmd-cores",
            "0-1",
        ],
        &[&["main"], &["pmd"]],
        BOUND,
    );
    expect_error(
        "main-default-in-pmd",
        &["--port", NULL_PORT, "--pmd-cores", "0"],
        &[&["main"], &["pmd"]],
        BOUND,
    );
    // DPDK's LCORE@CPU form: a bad CPU, an lcore named twice, the main core's lcore id.
    expect_error(
        "lcore-bad-cpu",
        &["--port", NULL_PORT, "--pmd-cores", "1@1,2@x"],
        &[&["1@1,2@x"], &["lcore@cpu"]],
        BOUND,
    );
    expect_error(
        "lcore-twice",
        &["--port", NULL_PORT, "--pmd-cores", "1@1,1@1"],
        &[&["lcore 1 twice"]],
        BOUND,
    );
    expect_error(
        "lcore-main-id",
        &["--port", NULL_PORT, "--pmd-cores", "0@1"],
        &[&["lcore 0"], &["main core's lcore id"]],
        BOUND,
    );
}

#[test]
fn bad_vlan() {
    expect_error(
        "vlan0",
        &["--port", "va,vlan=0=dpdk:net_null0"],
        &[&["vlan"], &["0"]],
        BOUND,
    );
    expect_error(
        "vlan5000",
        &["--port", "va,vlan=5000=dpdk:net_null0"],
        &[&["vlan"], &["5000"]],
        BOUND,
    );
    expect_error(
        "vlanx",
        &["--port", "va,vlan=x=dpdk:net_null0"],
        &[&["vlan"], &["x"]],
        BOUND,
    );
}

#[test]
fn unknown_port_option() {
    expect_error(
        "portopt",
        &["--port", "pa,speed=fast=dpdk:net_null0"],
        &[&["speed"]],
        BOUND,
    );
}

#[test]
fn devargs_rejected_by_dpdk() {
    expect_error(
        "devargs",
        &["--port", "pa=dpdk:net_bogus0"],
        &[&["net_bogus0"]],
        EAL_BOUND,
    );
}

#[test]
fn rxq_affinity_unknown_port() {
    expect_error(
        "aff-port",
        &["--port", NULL_PORT, "--rxq-affinity", "nosuch:0=1"],
        &[&["nosuch"]],
        BOUND,
    );
}

#[test]
fn rxq_affinity_non_pmd_core() {
    // Core 0 is the main core, not a PMD core.
    expect_error(
        "aff-core",
        &[
            "--port",
            NULL_PORT,
            "--pmd-cores",
            "1",
            "--rxq-affinity",
            "p0:0=0",
        ],
        &[&["p0:0=0", "core 0", "core: 0", "core=0", "pmd"]],
        BOUND,
    );
}

#[test]
fn unknown_flag() {
    expect_error(
        "flag",
        &["--port", NULL_PORT, "--frobnicate"],
        &[&["frobnicate"]],
        BOUND,
    );
}

#[test]
fn help_documents_every_option() {
    let out = run_with_timeout(Command::new(BIN).arg("--help"), BOUND)
        .unwrap_or_else(|e| panic!("--help hung: {e}"));
    let text = strip_ansi(&String::from_utf8_lossy(&out.stdout));
    assert!(
        out.status.success(),
        "--help exited {}\nstdout:\n{text}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "--port",
        "--main-core",
        "--pmd-cores",
        "--rxq-affinity",
        "--fdb-size",
        "--fdb-aging",
        "--ctl",
        "--log-level",
        "vlan",
        "rxq",
        "dpdk:",
        "ctl",
    ] {
        assert!(
            text.contains(needle),
            "--help does not mention {needle}:\n{text}"
        );
    }
}
