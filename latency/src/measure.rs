//! The receiving side's bookkeeping, shared by `sub` and `pub --reflect`: every sample goes
//! through the analyzer into the CSV; a running line every interval; the summary at the end.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::cli::ReportOpts;
use crate::csv::CsvWriter;
use crate::error::Error;
use crate::stats::{us, Analyzer, Params, Sample, Summary};
use crate::wire::{Probe, SeqExtender};

pub(crate) struct Measure {
    an: Analyzer,
    csv: Option<(CsvWriter, PathBuf)>,
    interval: Option<Duration>,
    started: Instant,
    next_line: Option<Instant>,
    json: bool,
    tty: bool,
    pending_cr: bool,
    /// Frames the kernel gave no timestamp for (stamped in userspace instead).
    pub(crate) no_kernel_ts: u64,
    /// Datagrams on the probe port that were no probe (scheduled time implausible).
    ignored: u64,
    ext: SeqExtender,
}

/// A probe scheduled further than this from its arrival is taken for a stray datagram: its
/// bytes are no probe header (a day; any real delay or clock offset is far smaller).
const PLAUSIBLE_NS: i64 = 86_400 * 1_000_000_000;

impl Measure {
    pub(crate) fn new(params: Params, opts: &ReportOpts) -> Result<Measure, Error> {
        let csv = match &opts.csv {
            Some(p) => Some((
                CsvWriter::create(p, &params).map_err(|source| Error::Write {
                    path: p.clone(),
                    source,
                })?,
                p.clone(),
            )),
            None => None,
        };
        let interval = (opts.interval.0 > 0).then(|| opts.interval.to_std());
        let started = Instant::now();
        // Running lines share stdout with the text summary; with --json, stdout is the JSON only.
        let tty = if opts.json {
            std::io::stderr().is_terminal()
        } else {
            std::io::stdout().is_terminal()
        };
        Ok(Measure {
            an: Analyzer::new(params),
            csv,
            interval,
            started,
            next_line: interval.map(|i| started + i),
            json: opts.json,
            tty,
            pending_cr: false,
            no_kernel_ts: 0,
            ignored: 0,
            ext: SeqExtender::default(),
        })
    }

    pub(crate) fn received(&self) -> u64 {
        self.an.received()
    }

    /// Frames the sender announced (`--count`).
    pub(crate) fn expected(&self) -> Option<u64> {
        self.an.params().expected
    }

    /// Takes one probe that arrived at `arrival` (ns TAI). One scheduled implausibly far from
    /// its arrival is counted as a stray datagram instead, before its sequence number can throw
    /// the 32→64-bit extension off.
    pub(crate) fn push(&mut self, p: Probe, arrival: i64) -> Result<(), Error> {
        if (arrival - p.sched).abs() > PLAUSIBLE_NS {
            self.ignored += 1;
            return Ok(());
        }
        let s = Sample {
            seq: self.ext.extend(p.seq as u32),
            sched: p.sched,
            sent: p.sent,
            arrival,
        };
        let row = self.an.push(s);
        if let Some((w, path)) = &mut self.csv {
            w.row(&row).map_err(|source| Error::Write {
                path: path.clone(),
                source,
            })?;
        }
        Ok(())
    }

    /// Prints the running line when due; returns how long until the next one (at most `cap`).
    pub(crate) fn tick(&mut self, cap: Duration) -> Duration {
        let (Some(next), Some(iv)) = (self.next_line, self.interval) else {
            return cap;
        };
        let now = Instant::now();
        if now >= next {
            let i = self.an.take_interval();
            let t = now.duration_since(self.started).as_secs_f64();
            let avg = i.mean().map_or("-".to_string(), us);
            let max = i.latency_max.map_or("-".to_string(), |m| us(m as f64));
            let line = format!(
                "[{t:7.1} s] frames {:>7}  latency avg {avg:>9} us  max {max:>9} us  late {}  lost {} (total {})",
                i.frames, i.misses, i.lost, i.lost_total
            );
            self.print_line(&line);
            let mut n = next + iv;
            while n <= now {
                n += iv;
            }
            self.next_line = Some(n);
        }
        self.next_line
            .map_or(cap, |n| n.saturating_duration_since(now).min(cap))
    }

    fn print_line(&mut self, line: &str) {
        let mut out: Box<dyn Write> = if self.json {
            Box::new(std::io::stderr())
        } else {
            Box::new(std::io::stdout())
        };
        if self.tty {
            let _ = write!(out, "\r\x1b[K{line}");
            self.pending_cr = true;
        } else {
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
    }

    /// Flushes the CSV and prints the summary (text, or JSON with --json).
    pub(crate) fn finish(mut self) -> Result<Summary, Error> {
        if self.pending_cr {
            // Keep the last running line: end it instead of overwriting it.
            if self.json {
                eprintln!();
            } else {
                println!();
            }
        }
        if let Some((w, path)) = self.csv.take() {
            w.finish().map_err(|source| Error::Write { path, source })?;
        }
        let s = self.an.summary();
        if self.no_kernel_ts > 0 {
            eprintln!(
                "warning: {} frames had no kernel timestamp and were stamped after recvmsg",
                self.no_kernel_ts
            );
        }
        if self.ignored > 0 {
            eprintln!(
                "warning: ignored {} datagrams on the probe port whose scheduled time was more than a day from their arrival (not probes?)",
                self.ignored
            );
        }
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&s).expect("summary serialises")
            );
        } else {
            print!("{}", s.render());
        }
        Ok(s)
    }
}
