//! The per-frame CSV: one line per received frame in arrival order, after a `#` line carrying the
//! run's parameters so `report` and `plot` recompute everything with the same arithmetic.
//!
//! ```text
//! # tsn-latency csv=1 mode=one-way deadline_ns=400000 cycle_ns=1000000 base_ns=0 expected=2000
//! seq,sched_ns,sent_ns,arrival_ns,latency_ns,datapath_ns,jitter_ns,phase_ns,dup,reordered,miss
//! 0,1700000000000000000,1700000000000002100,1700000000000012000,12000,9900,,12000,0,0,0
//! ```
//! Times are ns on CLOCK_TAI; an empty jitter or phase means none (first, reordered or duplicate
//! frame; no cycle). In `half-rtt` mode the arrival is the estimate send + RTT/2.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::stats::{Mode, Params, Row, Sample};
use crate::units::{Nanos, Window};

pub(crate) const HEADER: &str =
    "seq,sched_ns,sent_ns,arrival_ns,latency_ns,datapath_ns,jitter_ns,phase_ns,dup,reordered,miss";

#[derive(Debug, Error)]
pub(crate) enum CsvError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path}:{line}: {what}")]
    Bad {
        path: PathBuf,
        line: usize,
        what: String,
    },
    #[error("{0} is not a tsn-latency CSV (no `seq,sched_ns,...` header line)")]
    NoHeader(PathBuf),
}

/// Writes rows as they come.
pub(crate) struct CsvWriter {
    out: BufWriter<File>,
}

fn opt(v: Option<i64>) -> String {
    v.map(|x| x.to_string()).unwrap_or_default()
}

impl CsvWriter {
    pub(crate) fn create(path: &Path, p: &Params) -> io::Result<CsvWriter> {
        let mut out = BufWriter::new(File::create(path)?);
        write!(
            out,
            "# tsn-latency csv=1 mode={} deadline_ns={} cycle_ns={} base_ns={}",
            p.mode.as_str(),
            p.deadline,
            p.cycle,
            p.base
        )?;
        if let Some(w) = p.window {
            write!(out, " window_ns={},{}", w.start.0, w.end.0)?;
        }
        if let Some(n) = p.expected {
            write!(out, " expected={n}")?;
        }
        writeln!(out)?;
        writeln!(out, "{HEADER}")?;
        Ok(CsvWriter { out })
    }

    pub(crate) fn row(&mut self, r: &Row) -> io::Result<()> {
        writeln!(
            self.out,
            "{},{},{},{},{},{},{},{},{},{},{}",
            r.s.seq,
            r.s.sched,
            r.s.sent,
            r.s.arrival,
            r.latency,
            r.datapath,
            opt(r.jitter),
            opt(r.phase),
            u8::from(r.dup),
            u8::from(r.reordered),
            u8::from(r.miss)
        )
    }

    pub(crate) fn finish(mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// A CSV read back: the parameters of its run and the raw samples in arrival order.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) params: Params,
    pub(crate) samples: Vec<Sample>,
}

fn parse_meta(line: &str, p: &mut Params) -> Result<(), String> {
    for kv in line.split_whitespace().skip(2) {
        let Some((k, v)) = kv.split_once('=') else {
            continue;
        };
        let int = |v: &str| v.parse::<i64>().map_err(|_| format!("bad {k}: {v}"));
        match k {
            "mode" => p.mode = Mode::parse(v).ok_or(format!("unknown mode {v}"))?,
            "deadline_ns" => p.deadline = int(v)?,
            "cycle_ns" => p.cycle = int(v)?,
            "base_ns" => p.base = int(v)?,
            "expected" => p.expected = Some(v.parse().map_err(|_| format!("bad expected: {v}"))?),
            "window_ns" => {
                let (a, b) = v.split_once(',').ok_or(format!("bad window: {v}"))?;
                let n = |x: &str| {
                    x.parse::<u64>()
                        .map(Nanos)
                        .map_err(|_| format!("bad window: {v}"))
                };
                p.window = Some(Window {
                    start: n(a)?,
                    end: n(b)?,
                });
            }
            _ => {} // newer keys are ignored
        }
    }
    Ok(())
}

/// Reads a CSV written by [`CsvWriter`].
pub(crate) fn read(path: &Path) -> Result<Run, CsvError> {
    let read_err = |source| CsvError::Read {
        path: path.to_path_buf(),
        source,
    };
    let f = File::open(path).map_err(read_err)?;
    let mut params = Params::default();
    let mut samples = Vec::new();
    let mut header = false;
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let line = line.map_err(read_err)?;
        let bad = |what: String| CsvError::Bad {
            path: path.to_path_buf(),
            line: i + 1,
            what,
        };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with("# tsn-latency") {
            parse_meta(line, &mut params).map_err(bad)?;
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if !header {
            if line.starts_with("seq,") {
                header = true;
                continue;
            }
            return Err(CsvError::NoHeader(path.to_path_buf()));
        }
        let f: Vec<&str> = line.split(',').collect();
        if f.len() < 4 {
            return Err(bad(format!("{} fields, expected at least 4", f.len())));
        }
        let num = |j: usize| {
            f[j].parse::<i64>()
                .map_err(|_| bad(format!("field {} is not a number: `{}`", j + 1, f[j])))
        };
        samples.push(Sample {
            seq: f[0]
                .parse()
                .map_err(|_| bad(format!("bad sequence number `{}`", f[0])))?,
            sched: num(1)?,
            sent: num(2)?,
            arrival: num(3)?,
        });
    }
    if !header {
        return Err(CsvError::NoHeader(path.to_path_buf()));
    }
    Ok(Run { params, samples })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Analyzer;

    #[test]
    fn write_read_round_trip() {
        let dir = std::env::temp_dir().join(format!("tsn-latency-csv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("run.csv");
        let params = Params {
            mode: Mode::HalfRtt,
            deadline: 123_000,
            cycle: 500_000,
            base: 7,
            window: Some(Window {
                start: Nanos(1),
                end: Nanos(2),
            }),
            expected: Some(3),
        };
        let mut a = Analyzer::new(params);
        let mut w = CsvWriter::create(&path, &params).unwrap();
        let samples = [
            Sample {
                seq: 0,
                sched: 100,
                sent: 110,
                arrival: 150,
            },
            Sample {
                seq: 2,
                sched: 300,
                sent: 305,
                arrival: 390,
            },
            Sample {
                seq: 2,
                sched: 300,
                sent: 305,
                arrival: 391,
            },
        ];
        for s in samples {
            w.row(&a.push(s)).unwrap();
        }
        w.finish().unwrap();
        let run = read(&path).unwrap();
        assert_eq!(run.params, params);
        assert_eq!(run.samples, samples);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\n0,100,110,150,50,40,,"), "{text}");
        assert!(text.contains("\n2,300,305,391,91,86,,"), "{text}");
        assert!(
            text.trim_end().ends_with(",1,0,0"),
            "duplicate flagged: {text}"
        );
        std::fs::write(&path, "hello\n").unwrap();
        assert!(matches!(read(&path), Err(CsvError::NoHeader(_))));
        std::fs::write(&path, format!("{HEADER}\n1,2,x,4\n")).unwrap();
        let e = read(&path).unwrap_err().to_string();
        assert!(e.contains(":2: field 3"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
