use clap::Parser;
use std::io::IsTerminal;
use tsn_vswitch::cli::{Cli, Cmd};
use tsn_vswitch::{app, ctl};

fn main() {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.run.log_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let result = match cli.cmd {
        Some(Cmd::Ctl(c)) => ctl::request(&c.ctl, &c.command).map(|out| println!("{out}")),
        None => app::build_config(&cli.run).and_then(app::run),
    };
    if let Err(e) = result {
        // One line: the context chain joined, e.g. "port 'a': DPDK rejected devargs ...".
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
