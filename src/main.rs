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
        Some(Cmd::Gcl(GclCmd::Check { file, at })) => gcl_check(&file, &at),
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

/// `tsn-vswitch gcl check FILE [--at T]...`
fn gcl_check(file: &std::path::Path, at: &[u64]) -> anyhow::Result<()> {
    let text = tsn_vswitch::config::read_gcl_text(file)
        .map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", file.display()))?;
    let report =
        gcl::check_report(&text, at).map_err(|e| anyhow::anyhow!("{}:{e}", file.display()))?;
    print!("{report}");
    Ok(())
}
