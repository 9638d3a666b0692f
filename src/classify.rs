//! Classification of frames to traffic classes, in two steps as 802.1Q and taprio do it:
//!
//! 1. At ingress, a [`Classifier`] (one per ingress port) decides a [`Tc`]: either a *priority*
//!    (the VLAN PCP, or the port's default priority `prio=N` for untagged frames), or a *class*
//!    chosen directly (the vhost guest's tx queue through `queue-map=Q:C/…`, or a `--tc-rule`).
//! 2. At egress, the port's gate stage turns a priority into a class through the map of the gate
//!    control list running *there* (`map` in taprio terms; [`Tc::resolve`]). A direct class passes
//!    through (clamped to that list's `num_tc`).
//!
//! Why a priority and not a class at ingress: the map belongs to the egress port's list and can
//! change with an admin→oper switch, while the ingress port does not know the egress port's list.
//! Queue and UDP rules name a class, as taprio's `queues C@O` ties queues to classes (a guest
//! running taprio over virtio-net sends class C on tx queue C) and flower's `hw_tc` does.
//!
//! Precedence: UDP rule, then queue map, then the VLAN PCP, then the port's default priority.
//!
//! Syntax (options of `--port NAME[,OPT=VAL...]=KIND:TARGET`, so no commas inside values):
//! - `prio=N`: default priority of untagged frames, 0..=7 (802.1Q's port default priority).
//! - `queue-map=Q:C/Q:C…`: frames from rx queue Q (the vhost guest's tx queue pair index) go to
//!   class C; queues not listed fall through to PCP/default priority. Q in 0..=63, C in 0..=7.
//! - `--tc-rule PORT:udp-dst=N[-M]:class=C` (or `:prio=P`): IPv4/UDP frames received on PORT (`*`
//!   = every port) whose destination port is N (or in N..=M) get class C (priority P). Up to
//!   [`MAX_UDP_RULES`] per port, first match wins. Non-first IP fragments never match.

use crate::wire::{EtherType, EthernetFrame, Ipv4Packet, UdpDatagram, PROTO_UDP};
use gcl::{MAP_LEN, MAX_TC};

/// Rx queues a `queue-map` can name.
pub const MAX_QUEUES: usize = 64;
/// UDP rules per ingress port (scanned linearly per frame: keep it small).
pub const MAX_UDP_RULES: usize = 8;
/// The port options this module understands.
pub const PORT_OPTIONS: &[&str] = &["prio", "queue-map"];

/// Ingress classification result: a priority for the egress list's map, or a class.
/// Packed in a byte: 0..=15 priority, 16..=23 class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tc(u8);

impl Tc {
    /// Number of distinct values (for lookup tables indexed by [`Tc::index`]).
    pub const COUNT: usize = 2 * MAP_LEN;

    /// A priority (masked to 4 bits, as taprio masks `skb->priority`).
    #[inline]
    pub const fn priority(p: u8) -> Tc {
        Tc(p & 0x0f)
    }
    /// A class chosen directly (masked to 3 bits).
    #[inline]
    pub const fn class(c: u8) -> Tc {
        Tc(0x10 | (c & 0x07))
    }
    /// 0..32: priorities first, then classes.
    #[inline]
    pub const fn index(self) -> usize {
        self.0 as usize
    }
    /// The class at an egress port whose list has this map and `num_tc` (≥ 1).
    #[inline]
    pub fn resolve(self, map: &[u8; MAP_LEN], num_tc: u8) -> u8 {
        if self.0 & 0x10 != 0 {
            (self.0 & 0x07).min(num_tc.saturating_sub(1))
        } else {
            map[usize::from(self.0 & 0x0f)]
        }
    }
}

/// Why a classification option or rule was rejected. Each message reads as a sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClassifyError {
    #[error("prio={0} is not a priority (0..=7)")]
    BadPrio(String),
    #[error("queue-map entry '{0}' must be QUEUE:CLASS, e.g. queue-map=0:2/1:0")]
    BadQueueEntry(String),
    #[error("queue-map entry '{entry}': queue {queue} is not a queue number (0..={max})", max = MAX_QUEUES - 1)]
    BadQueue { entry: String, queue: String },
    #[error("queue-map entry '{entry}': class {class} is not a traffic class (0..=7)")]
    BadClass { entry: String, class: String },
    #[error("queue-map={0}: entries are separated by '/', not ',' (e.g. queue-map=0:2/1:0)")]
    CommaInQueueMap(String),
    #[error("queue-map names queue {0} twice")]
    DuplicateQueue(u16),
    #[error("--tc-rule '{0}' must be PORT:udp-dst=N[-M]:class=C or PORT:udp-dst=N[-M]:prio=P")]
    RuleSyntax(String),
    #[error(
        "--tc-rule '{rule}': '{value}' is not a UDP port or range (N or N-M, 0..=65535, N ≤ M)"
    )]
    RulePorts { rule: String, value: String },
    #[error("--tc-rule '{rule}': class {value} is not a traffic class (0..=7)")]
    RuleClass { rule: String, value: String },
    #[error("--tc-rule '{rule}': prio {value} is not a priority (0..=15)")]
    RulePrio { rule: String, value: String },
    #[error("more than {MAX_UDP_RULES} --tc-rule rules apply to one port")]
    TooManyRules,
}

/// Which ingress ports a rule applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortMatch {
    Any,
    Named(String),
}

impl PortMatch {
    pub fn matches(&self, port: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Named(n) => n == port,
        }
    }
}

/// A parsed `--tc-rule`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcRule {
    pub port: PortMatch,
    /// Inclusive UDP destination port range.
    pub dst_lo: u16,
    pub dst_hi: u16,
    pub action: Tc,
}

/// The rule as written on the command line (`PORT:udp-dst=LO[-HI]:class=C|prio=P`).
impl std::fmt::Display for TcRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.port {
            PortMatch::Any => f.write_str("*")?,
            PortMatch::Named(n) => f.write_str(n)?,
        }
        write!(f, ":udp-dst={}", self.dst_lo)?;
        if self.dst_hi != self.dst_lo {
            write!(f, "-{}", self.dst_hi)?;
        }
        match self.action.0 {
            c if c & 0x10 != 0 => write!(f, ":class={}", c & 0x07),
            p => write!(f, ":prio={p}"),
        }
    }
}

impl std::str::FromStr for TcRule {
    type Err = ClassifyError;
    fn from_str(s: &str) -> Result<Self, ClassifyError> {
        let syntax = || ClassifyError::RuleSyntax(s.to_owned());
        let mut parts = s.split(':');
        let (Some(port), Some(m), Some(a), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(syntax());
        };
        if port.is_empty() {
            return Err(syntax());
        }
        let ports = m.strip_prefix("udp-dst=").ok_or_else(syntax)?;
        let bad_ports = || ClassifyError::RulePorts {
            rule: s.to_owned(),
            value: ports.to_owned(),
        };
        let (lo, hi) = ports.split_once('-').unwrap_or((ports, ports));
        let lo: u16 = lo.parse().map_err(|_| bad_ports())?;
        let hi: u16 = hi.parse().map_err(|_| bad_ports())?;
        if lo > hi {
            return Err(bad_ports());
        }
        let action = match a.split_once('=') {
            Some(("class", v)) => Tc::class(
                v.parse::<u8>()
                    .ok()
                    .filter(|c| *c < MAX_TC)
                    .ok_or_else(|| ClassifyError::RuleClass {
                        rule: s.to_owned(),
                        value: v.to_owned(),
                    })?,
            ),
            Some(("prio", v)) => Tc::priority(
                v.parse::<u8>()
                    .ok()
                    .filter(|p| usize::from(*p) < MAP_LEN)
                    .ok_or_else(|| ClassifyError::RulePrio {
                        rule: s.to_owned(),
                        value: v.to_owned(),
                    })?,
            ),
            _ => return Err(syntax()),
        };
        Ok(TcRule {
            port: if port == "*" {
                PortMatch::Any
            } else {
                PortMatch::Named(port.to_owned())
            },
            dst_lo: lo,
            dst_hi: hi,
            action,
        })
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct UdpRule {
    lo: u16,
    hi: u16,
    action: Tc,
}

impl Default for Tc {
    fn default() -> Self {
        Tc::priority(0)
    }
}

/// An ingress port's classification: default priority, queue map, UDP rules. Fixed size, no
/// allocation; [`Classifier::classify`] parses the frame only when the port has UDP rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classifier {
    default_prio: u8,
    /// Per rx queue: `Tc` index + 1, or 0 when the queue is not mapped.
    queue_map: [u8; MAX_QUEUES],
    has_queue_map: bool,
    udp: [UdpRule; MAX_UDP_RULES],
    n_udp: usize,
}

impl Default for Classifier {
    fn default() -> Self {
        Self::new()
    }
}

impl Classifier {
    /// PCP for tagged frames, priority 0 for untagged, no queue map, no rules.
    pub fn new() -> Self {
        Self {
            default_prio: 0,
            queue_map: [0; MAX_QUEUES],
            has_queue_map: false,
            udp: [UdpRule::default(); MAX_UDP_RULES],
            n_udp: 0,
        }
    }

    /// Applies one `--port` option if it is a classification option ([`PORT_OPTIONS`]); returns
    /// `Ok(false)` if the key is not ours, so the port parser can try its own.
    pub fn apply_port_option(&mut self, key: &str, value: &str) -> Result<bool, ClassifyError> {
        match key {
            "prio" => {
                self.default_prio = value
                    .parse::<u8>()
                    .ok()
                    .filter(|p| *p <= 7)
                    .ok_or_else(|| ClassifyError::BadPrio(value.to_owned()))?;
            }
            "queue-map" => self.set_queue_map(value)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Parses `Q:C/Q:C…` and replaces the queue map.
    pub fn set_queue_map(&mut self, value: &str) -> Result<(), ClassifyError> {
        if value.contains(',') {
            return Err(ClassifyError::CommaInQueueMap(value.to_owned()));
        }
        let mut map = [0u8; MAX_QUEUES];
        for entry in value.split('/') {
            let (q, c) = entry
                .split_once(':')
                .ok_or_else(|| ClassifyError::BadQueueEntry(entry.to_owned()))?;
            let queue = q
                .parse::<u16>()
                .ok()
                .filter(|q| usize::from(*q) < MAX_QUEUES)
                .ok_or_else(|| ClassifyError::BadQueue {
                    entry: entry.to_owned(),
                    queue: q.to_owned(),
                })?;
            let class = c
                .parse::<u8>()
                .ok()
                .filter(|c| *c < MAX_TC)
                .ok_or_else(|| ClassifyError::BadClass {
                    entry: entry.to_owned(),
                    class: c.to_owned(),
                })?;
            let slot = &mut map[usize::from(queue)];
            if *slot != 0 {
                return Err(ClassifyError::DuplicateQueue(queue));
            }
            *slot = Tc::class(class).0 + 1;
        }
        self.queue_map = map;
        self.has_queue_map = true;
        Ok(())
    }

    /// Adds a rule if it applies to `port` (the ingress port's name); rules keep their order.
    pub fn add_rule(&mut self, port: &str, rule: &TcRule) -> Result<(), ClassifyError> {
        if !rule.port.matches(port) {
            return Ok(());
        }
        let slot = self
            .udp
            .get_mut(self.n_udp)
            .ok_or(ClassifyError::TooManyRules)?;
        *slot = UdpRule {
            lo: rule.dst_lo,
            hi: rule.dst_hi,
            action: rule.action,
        };
        self.n_udp += 1;
        Ok(())
    }

    /// Default priority of untagged frames.
    pub fn default_prio(&self) -> u8 {
        self.default_prio
    }

    /// Classifies one frame received on this port. `vlan_pcp`: the PCP of the frame's 802.1Q tag
    /// as parsed at ingress (`None` when it arrived untagged); `rx_queue`: the rx queue it came
    /// from (for vhost ports, the guest's tx queue pair index).
    #[inline]
    pub fn classify(&self, frame: &[u8], vlan_pcp: Option<u8>, rx_queue: u16) -> Tc {
        if self.n_udp != 0 {
            if let Some(tc) = self.udp_match(frame) {
                return tc;
            }
        }
        if self.has_queue_map {
            if let Some(&v) = self.queue_map.get(usize::from(rx_queue)) {
                if v != 0 {
                    return Tc(v - 1);
                }
            }
        }
        Tc::priority(vlan_pcp.unwrap_or(self.default_prio))
    }

    fn udp_match(&self, frame: &[u8]) -> Option<Tc> {
        let eth = EthernetFrame::new_checked(frame).ok()?;
        if eth.ethertype() != EtherType::IPV4 {
            return None;
        }
        let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
        if ip.protocol() != PROTO_UDP || !is_first_fragment(eth.payload()) {
            return None;
        }
        let dst = UdpDatagram::new_checked(ip.payload()).ok()?.dst_port();
        self.udp[..self.n_udp]
            .iter()
            .find(|r| (r.lo..=r.hi).contains(&dst))
            .map(|r| r.action)
    }
}

/// Fragment offset 0 (bytes 6..8 of the IPv4 header; the view checked the header is present):
/// later fragments carry no UDP header.
#[inline]
fn is_first_fragment(ip_header: &[u8]) -> bool {
    match ip_header.get(6..8) {
        Some(&[a, b]) => u16::from_be_bytes([a, b]) & 0x1fff == 0,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp_frame(pcp: Option<u8>, dst_port: u16, frag_off: u16) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
        if let Some(p) = pcp {
            f.extend([0x81, 0x00]);
            f.extend(crate::wire::VlanTag::tci_of(p, 10).to_be_bytes());
        }
        f.extend([0x08, 0x00]);
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&36u16.to_be_bytes());
        ip[6..8].copy_from_slice(&frag_off.to_be_bytes());
        ip[9] = PROTO_UDP;
        f.extend(ip);
        f.extend(5000u16.to_be_bytes());
        f.extend(dst_port.to_be_bytes());
        f.extend(16u16.to_be_bytes());
        f.extend([0u8; 10]);
        f
    }

    const MAP: [u8; 16] = [2, 2, 1, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2];

    #[test]
    fn pcp_through_the_map_and_default_prio() {
        let mut c = Classifier::new();
        let f = udp_frame(Some(3), 53, 0);
        assert_eq!(c.classify(&f, Some(3), 0), Tc::priority(3));
        assert_eq!(c.classify(&f, Some(3), 0).resolve(&MAP, 3), 0);
        assert_eq!(c.classify(&f, Some(2), 0).resolve(&MAP, 3), 1);
        // Untagged: port default priority, 0 unless prio= says otherwise.
        let u = udp_frame(None, 53, 0);
        assert_eq!(c.classify(&u, None, 0), Tc::priority(0));
        assert!(c.apply_port_option("prio", "3").unwrap());
        assert_eq!(c.default_prio(), 3);
        assert_eq!(c.classify(&u, None, 0).resolve(&MAP, 3), 0);
        assert_eq!(c.classify(&u, Some(2), 0).resolve(&MAP, 3), 1);
        assert!(!c.apply_port_option("vlan", "3").unwrap());
        for bad in ["8", "-1", "x", ""] {
            assert_eq!(
                c.apply_port_option("prio", bad).unwrap_err().to_string(),
                format!("prio={bad} is not a priority (0..=7)")
            );
        }
    }

    #[test]
    fn queue_map() {
        let mut c = Classifier::new();
        assert!(c.apply_port_option("queue-map", "0:2/1:0/63:7").unwrap());
        let f = udp_frame(Some(5), 53, 0);
        assert_eq!(c.classify(&f, Some(5), 0), Tc::class(2));
        assert_eq!(c.classify(&f, Some(5), 1), Tc::class(0));
        assert_eq!(c.classify(&f, Some(5), 63).resolve(&MAP, 8), 7);
        // Clamped to the egress list's classes.
        assert_eq!(c.classify(&f, Some(5), 63).resolve(&MAP, 3), 2);
        // Unmapped queues fall through to PCP / default priority.
        assert_eq!(c.classify(&f, Some(5), 2), Tc::priority(5));
        assert_eq!(c.classify(&f, None, 500), Tc::priority(0));
        let err = |v: &str| c.clone().set_queue_map(v).unwrap_err().to_string();
        assert_eq!(
            err("0:2,1:0"),
            "queue-map=0:2,1:0: entries are separated by '/', not ',' (e.g. queue-map=0:2/1:0)"
        );
        assert_eq!(
            err("0-2"),
            "queue-map entry '0-2' must be QUEUE:CLASS, e.g. queue-map=0:2/1:0"
        );
        assert_eq!(
            err("64:1"),
            "queue-map entry '64:1': queue 64 is not a queue number (0..=63)"
        );
        assert_eq!(
            err("1:8"),
            "queue-map entry '1:8': class 8 is not a traffic class (0..=7)"
        );
        assert_eq!(err("1:1/1:2"), "queue-map names queue 1 twice");
        assert_eq!(
            err(""),
            "queue-map entry '' must be QUEUE:CLASS, e.g. queue-map=0:2/1:0"
        );
    }

    #[test]
    fn udp_rules() {
        let r: TcRule = "vm1:udp-dst=7788:class=3".parse().unwrap();
        assert_eq!(
            r,
            TcRule {
                port: PortMatch::Named("vm1".into()),
                dst_lo: 7788,
                dst_hi: 7788,
                action: Tc::class(3)
            }
        );
        let any: TcRule = "*:udp-dst=319-320:prio=7".parse().unwrap();
        assert_eq!(
            (any.port.clone(), any.action),
            (PortMatch::Any, Tc::priority(7))
        );

        let mut c = Classifier::new();
        c.apply_port_option("queue-map", "0:1").unwrap();
        c.add_rule("vm1", &r).unwrap();
        c.add_rule("vm1", &any).unwrap();
        c.add_rule("vm1", &"vm2:udp-dst=53:class=1".parse().unwrap())
            .unwrap(); // not ours: ignored
                       // A rule beats the queue map and the PCP.
        assert_eq!(
            c.classify(&udp_frame(Some(1), 7788, 0), Some(1), 0),
            Tc::class(3)
        );
        assert_eq!(
            c.classify(&udp_frame(None, 320, 0), None, 0),
            Tc::priority(7)
        );
        // No match: queue map, then PCP.
        assert_eq!(c.classify(&udp_frame(None, 53, 0), None, 0), Tc::class(1));
        assert_eq!(
            c.classify(&udp_frame(Some(4), 53, 0), Some(4), 9),
            Tc::priority(4)
        );
        // Later fragments and non-IP frames never match; short frames don't panic.
        assert_eq!(
            c.classify(&udp_frame(None, 7788, 0x00b9), None, 9),
            Tc::priority(0)
        );
        assert_eq!(
            c.classify(&udp_frame(None, 7788, 0x2000), None, 9),
            Tc::class(3)
        );
        let f = udp_frame(None, 7788, 0);
        for n in 0..f.len() {
            let _ = c.classify(&f[..n], None, 9);
        }
        let mut arp = f.clone();
        arp[12..14].copy_from_slice(&EtherType::ARP.to_be_bytes());
        assert_eq!(c.classify(&arp, None, 9), Tc::priority(0));

        for _ in 2..MAX_UDP_RULES {
            c.add_rule("vm1", &r).unwrap();
        }
        assert_eq!(c.add_rule("vm1", &r), Err(ClassifyError::TooManyRules));
    }

    #[test]
    fn rule_errors() {
        let e = |s: &str| s.parse::<TcRule>().unwrap_err().to_string();
        assert_eq!(
            e("vm1:udp-src=1:class=1"),
            "--tc-rule 'vm1:udp-src=1:class=1' must be PORT:udp-dst=N[-M]:class=C or PORT:udp-dst=N[-M]:prio=P"
        );
        assert!(e("vm1:udp-dst=1").contains("must be PORT:"));
        assert!(e(":udp-dst=1:class=1").contains("must be PORT:"));
        assert!(e("vm1:udp-dst=1:class=1:x").contains("must be PORT:"));
        assert_eq!(
            e("vm1:udp-dst=9-1:class=1"),
            "--tc-rule 'vm1:udp-dst=9-1:class=1': '9-1' is not a UDP port or range (N or N-M, 0..=65535, N ≤ M)"
        );
        assert!(e("vm1:udp-dst=70000:class=1").contains("'70000' is not a UDP port"));
        assert_eq!(
            e("vm1:udp-dst=1:class=8"),
            "--tc-rule 'vm1:udp-dst=1:class=8': class 8 is not a traffic class (0..=7)"
        );
        assert_eq!(
            e("vm1:udp-dst=1:prio=16"),
            "--tc-rule 'vm1:udp-dst=1:prio=16': prio 16 is not a priority (0..=15)"
        );
    }

    #[test]
    fn tc_packing() {
        assert_eq!(Tc::priority(17), Tc::priority(1));
        assert_eq!(Tc::class(9).index(), 17);
        assert!(Tc::class(7).index() < Tc::COUNT);
        assert_eq!(Tc::default(), Tc::priority(0));
    }
}
