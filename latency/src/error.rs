//! Why a command failed, as one sentence each.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use thiserror::Error;

use crate::csv::CsvError;

#[derive(Debug, Error)]
pub(crate) enum Error {
    #[error("cannot open a UDP socket on {addr}: {source}")]
    UdpBind { addr: SocketAddr, source: io::Error },
    #[error("cannot reach {addr}: {source}")]
    UdpConnect { addr: SocketAddr, source: io::Error },
    #[error("only IPv4 is supported, not {0}")]
    NotIpv4(SocketAddr),
    #[error("cannot use interface {iface}: {source}")]
    Iface { iface: String, source: io::Error },
    #[error("interface {0} has no IPv4 address: give the raw frames' source with --src")]
    NoSourceIp(String),
    #[error("cannot set SO_PRIORITY {prio}: {source}")]
    Priority { prio: u32, source: io::Error },
    #[error("cannot run SCHED_FIFO at priority {prio}: {source}")]
    Fifo { prio: i32, source: io::Error },
    #[error("cannot pin to CPU {cpu}: {source}")]
    Cpu { cpu: usize, source: io::Error },
    #[error("cannot wait for the next cycle: {0}")]
    Sleep(io::Error),
    #[error("cannot receive: {0}")]
    Recv(io::Error),
    #[error("cannot echo to {to}: {source}")]
    Echo { to: SocketAddr, source: io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Csv(#[from] CsvError),
    #[error("cannot read the font {path}: {source} (install fonts-dejavu-core or give --font)")]
    Font { path: PathBuf, source: io::Error },
    #[error("{0} is not a TrueType font plotters can use")]
    BadFont(PathBuf),
    #[error("cannot draw {path}: {what}")]
    Plot { path: PathBuf, what: String },
    #[error("{0} holds no frame to plot")]
    EmptyRun(PathBuf),
    #[error("cannot install the signal handler: {0}")]
    Signal(io::Error),
}
