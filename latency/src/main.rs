//! tsn-latency: end-to-end latency and jitter of a periodic flow through a TSN switch, measured
//! as the TSN papers do (latency = reception − scheduled transmission; jitter(i) = t_i −
//! (t_(i−1) + T)), with software timestamps that work on veth and virtio-net. See `--help`.

mod cli;
mod clock;
mod csv;
mod error;
mod measure;
mod net;
mod plot;
mod publisher;
mod reflector;
mod stats;
mod subscriber;
mod units;
mod wire;

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::Parser;

use cli::{Cli, Cmd, ReportArgs};
use error::Error;
use stats::Analyzer;

fn report(a: &ReportArgs) -> Result<(), Error> {
    for path in &a.csv {
        let run = csv::read(path)?;
        let mut p = run.params;
        if let Some(d) = a.deadline {
            p.deadline = d.as_i64();
        }
        if let Some(c) = a.cycle_time {
            p.cycle = c.as_i64();
        }
        if let Some(b) = a.base_time {
            p.base = b.as_i64();
        }
        if a.window.is_some() {
            p.window = a.window;
        }
        let mut an = Analyzer::new(p);
        for s in run.samples {
            an.push(s);
        }
        let s = an.summary();
        if a.json {
            println!("{}", serde_json::to_string(&s).expect("summary serialises"));
        } else {
            println!("== {}", path.display());
            print!("{}", s.render());
        }
    }
    Ok(())
}

fn stop_flag() -> Result<Arc<AtomicBool>, Error> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).map_err(Error::Signal)?;
    }
    Ok(stop)
}

fn run(cli: Cli) -> Result<(), Error> {
    match cli.cmd {
        Cmd::Pub(a) => publisher::run(&a, &stop_flag()?),
        Cmd::Sub(a) => subscriber::run(&a, &*stop_flag()?).map(drop),
        Cmd::Reflect(a) => reflector::run(&a, &*stop_flag()?).map(drop),
        Cmd::Report(a) => report(&a),
        Cmd::Plot(a) => {
            for p in plot::run(&a)? {
                println!("{}", p.display());
            }
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
