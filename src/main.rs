use clap::Parser;
use std::io::IsTerminal;
use tsn_vswitch::cli::{Cli, Cmd, GclCmd};
use tsn_vswitch::{app, ctl};

fn main() {
    // A configuration error exits 1 like every other one (clap's own code is 2); help and
    // version print to stdout and exit 0.
    let cli = Cli::try_parse().unwrap_or_else(|e| {
        let _ = e.print();
        std::process::exit(i32::from(e.use_stderr()))
    });
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.run.log_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let result = match cli.cmd {
        Some(Cmd::Gcl(GclCmd::Check {
            file,
            at,
            speed,
            clock,
            interface,
        })) => gcl_check(&file, &at, speed, interface.as_deref(), |id| match &clock {
            Some(c) => c.check_clockid(id).map_err(|e| e.to_string()),
            None => Ok(()),
        }),
        Some(Cmd::Ctl(c)) => ctl::client::run(&c).map(|out| {
            // A closed pipe (`| head`) is not an error worth a panic.
            use std::io::Write;
            let _ = writeln!(std::io::stdout(), "{out}");
        }),
        None => app::build_config(&cli.run).and_then(app::run),
    };
    if let Err(e) = result {
        // One line: the context chain joined, e.g. "port 'a': DPDK rejected devargs ...".
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// `tsn-vswitch gcl check FILE [--at T]... [--speed MBPS] [--clock CLOCK] [--interface NAME]`:
/// the report on stdout; what the switch would refuse (a bad list, a clockid that is not
/// `--clock`, entries too short at `--speed`) as the error, after the report for the last two.
fn gcl_check(
    file: &std::path::Path,
    at: &[u64],
    speed_mbps: Option<u32>,
    interface: Option<&str>,
    check_clock: impl Fn(Option<gcl::ClockId>) -> Result<(), String>,
) -> anyhow::Result<()> {
    let name = file.display();
    let text = tsn_vswitch::config::read_gcl_text(file)
        .map_err(|e| anyhow::anyhow!("{name}: cannot read: {e}"))?;
    let parsed = gcl::parse_for(&text, interface).map_err(|e| anyhow::anyhow!("{name}:{e}"))?;
    print!("{}", gcl::report(&parsed, at));
    let mut refusals = Vec::new();
    if let Err(e) = check_clock(parsed.list.clockid()) {
        refusals.push(format!("{name}: {e}"));
    }
    if let Some(mbps) = speed_mbps {
        let short: Vec<_> =
            tsn_vswitch::tas::short_entries(&parsed.list, u64::from(mbps) * 1_000_000).collect();
        if short.is_empty() {
            println!("every entry fits a minimum frame at {mbps} Mb/s");
        }
        for e in short {
            println!("too short at {mbps} Mb/s: {e}");
            refusals.push(format!("{name}: {e}"));
        }
    }
    match refusals.len() {
        0 => Ok(()),
        1 => Err(anyhow::anyhow!("{}", refusals[0])),
        n => Err(anyhow::anyhow!(
            "{} (and {} more reasons the switch would refuse it, above)",
            refusals[0],
            n - 1
        )),
    }
}
