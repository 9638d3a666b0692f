//! Ethernet device ports: probe by devargs, configure, queues, start/stop, link, MAC, stats.
use super::mbuf::{Burst, BURST};
use super::{ffi, strerror, DpdkError, Mempool};
use std::ffi::{CStr, CString};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Static facts about a port, read once at set-up.
#[derive(Debug, Clone)]
pub struct PortInfo {
    pub driver: String,
    pub max_rx_queues: u16,
    pub max_tx_queues: u16,
    pub tx_offload_capa: u64,
}

/// A DPDK ethdev port owned by the switch.
pub struct EthPort {
    pub id: u16,
    /// The device name DPDK knows it by (vdev name or PCI address).
    pub dev_name: String,
    started: bool,
    /// A vdev this port hot-plugged: detached again when the port is dropped, so that a port
    /// added later can probe the same device name.
    hotplugged: bool,
}

fn port_err(op: &'static str, port: u16, rc: i32) -> DpdkError {
    DpdkError::Port {
        op,
        port,
        reason: strerror(rc),
    }
}

/// `RTE_ETH_TX_OFFLOAD_SEND_ON_TIMESTAMP` (RTE_BIT64(21) in DPDK 22.11's rte_ethdev.h; a macro
/// bindgen does not carry over).
pub const TX_OFFLOAD_SEND_ON_TIMESTAMP: u64 = 1 << 21;

/// Enables IEEE 1588 timestamping on a port, so its clock can be read (`--clock port:NAME`).
pub fn timesync_enable(port: u16) -> Result<(), DpdkError> {
    // SAFETY: plain control call on a started port.
    let rc = unsafe { ffi::rte_eth_timesync_enable(port) };
    if rc != 0 {
        return Err(port_err("timesync enable (IEEE 1588 clock)", port, rc));
    }
    Ok(())
}

/// The port's IEEE 1588 clock in ns, or None if the driver cannot read it.
pub fn timesync_read_ns(port: u16) -> Option<u64> {
    let mut ts = ffi::timespec::default();
    // SAFETY: ts is a valid out-struct.
    let rc = unsafe { ffi::rte_eth_timesync_read_time(port, &mut ts) };
    (rc == 0 && ts.tv_sec >= 0)
        .then(|| (ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64)
}

/// A PCI address `DDDD:BB:DD.F` (or `BB:DD.F`): such devargs are allow-listed at EAL init;
/// anything else is a vdev and is hot-plugged.
pub fn is_pci_address(devargs: &str) -> bool {
    let dev = devargs.split(',').next().unwrap_or("");
    let parts: Vec<&str> = dev.split(':').collect();
    let (bus, devfn) = match parts.as_slice() {
        [_, b, df] | [b, df] => (*b, *df),
        _ => return false,
    };
    let hex = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_hexdigit());
    let (d, f) = devfn.split_once('.').unwrap_or(("", ""));
    hex(bus) && hex(d) && f.len() == 1 && hex(f)
}

impl EthPort {
    /// Makes the device behind `devargs` a port: a vdev is hot-plugged now; a PCI device was
    /// already probed by EAL (allow-list). The device name is the devargs' first field.
    pub fn open(devargs: &str) -> Result<EthPort, DpdkError> {
        let dev_name = devargs.split(',').next().unwrap_or("").to_string();
        let hotplugged = !is_pci_address(devargs);
        if hotplugged {
            let c = CString::new(devargs).map_err(|_| DpdkError::Probe {
                devargs: devargs.into(),
                reason: "contains a NUL byte".into(),
            })?;
            // SAFETY: c is a valid C string for the duration of the call.
            let rc = unsafe { ffi::rte_dev_probe(c.as_ptr()) };
            if rc < 0 {
                return Err(DpdkError::Probe {
                    devargs: devargs.into(),
                    reason: strerror(rc),
                });
            }
        }
        let cname = CString::new(dev_name.as_str()).expect("checked above");
        let mut id = 0u16;
        // SAFETY: cname valid; id is a valid out-pointer.
        let rc = unsafe { ffi::rte_eth_dev_get_port_by_name(cname.as_ptr(), &mut id) };
        if rc != 0 {
            if hotplugged {
                detach_vdev(&cname);
            }
            return Err(DpdkError::NoSuchPort(dev_name));
        }
        Ok(EthPort {
            id,
            dev_name,
            started: false,
            hotplugged,
        })
    }

    pub fn info(&self) -> Result<PortInfo, DpdkError> {
        let mut di = ffi::rte_eth_dev_info::default();
        // SAFETY: di is a valid out-struct.
        let rc = unsafe { ffi::rte_eth_dev_info_get(self.id, &mut di) };
        if rc != 0 {
            return Err(port_err("dev_info_get", self.id, rc));
        }
        let driver = if di.driver_name.is_null() {
            String::new()
        } else {
            // SAFETY: driver_name is a static C string owned by the driver.
            unsafe { CStr::from_ptr(di.driver_name) }
                .to_string_lossy()
                .into_owned()
        };
        Ok(PortInfo {
            driver,
            max_rx_queues: di.max_rx_queues,
            max_tx_queues: di.max_tx_queues,
            tx_offload_capa: di.tx_offload_capa,
        })
    }

    /// Configures `nrxq` rx and `ntxq` tx queues with `nb_desc` descriptors each (adjusted to
    /// the driver's limits) and returns the queue handles. The port is not started.
    pub fn setup(
        &mut self,
        nrxq: u16,
        ntxq: u16,
        nb_desc: u16,
        pool: &Mempool,
    ) -> Result<(Vec<RxQueue>, Vec<TxQueue>), DpdkError> {
        let conf = ffi::rte_eth_conf::default();
        // SAFETY: conf is a valid, zeroed (all defaults) configuration.
        let rc = unsafe { ffi::rte_eth_dev_configure(self.id, nrxq, ntxq, &conf) };
        if rc != 0 {
            return Err(port_err("configure", self.id, rc));
        }
        let (mut nrx, mut ntx) = (nb_desc, nb_desc);
        // SAFETY: valid out-pointers.
        let rc = unsafe { ffi::rte_eth_dev_adjust_nb_rx_tx_desc(self.id, &mut nrx, &mut ntx) };
        if rc != 0 {
            return Err(port_err("adjust descriptors", self.id, rc));
        }
        // SAFETY: plain getter.
        let socket = unsafe { ffi::rte_eth_dev_socket_id(self.id) };
        let socket = if socket < 0 { 0 } else { socket as u32 };
        let mut rxqs = Vec::new();
        for q in 0..nrxq {
            // SAFETY: NULL rxconf = driver defaults; the pool outlives the port (owner's duty).
            let rc = unsafe {
                ffi::rte_eth_rx_queue_setup(
                    self.id,
                    q,
                    nrx,
                    socket,
                    std::ptr::null(),
                    pool.as_ptr(),
                )
            };
            if rc != 0 {
                return Err(port_err("rx queue setup", self.id, rc));
            }
            rxqs.push(RxQueue {
                port: self.id,
                queue: q,
            });
        }
        let mut txqs = Vec::new();
        for q in 0..ntxq {
            // SAFETY: NULL txconf = driver defaults.
            let rc =
                unsafe { ffi::rte_eth_tx_queue_setup(self.id, q, ntx, socket, std::ptr::null()) };
            if rc != 0 {
                return Err(port_err("tx queue setup", self.id, rc));
            }
            txqs.push(TxQueue {
                port: self.id,
                queue: q,
            });
        }
        Ok((rxqs, txqs))
    }

    pub fn start(&mut self) -> Result<(), DpdkError> {
        // SAFETY: the port is configured.
        let rc = unsafe { ffi::rte_eth_dev_start(self.id) };
        if rc != 0 {
            return Err(port_err("start", self.id, rc));
        }
        self.started = true;
        Ok(())
    }

    /// Stops the port (no core may poll it any more).
    pub fn stop(&mut self) {
        if self.started {
            // SAFETY: the port was started; the PMD cores have returned.
            unsafe { ffi::rte_eth_dev_stop(self.id) };
            self.started = false;
        }
    }

    /// A switch port must see every frame: promiscuous and all-multicast.
    pub fn set_promiscuous(&self) -> Result<(), DpdkError> {
        // SAFETY: plain control call on a valid port.
        let rc = unsafe { ffi::rte_eth_promiscuous_enable(self.id) };
        if rc != 0 && rc != -libc::ENOTSUP {
            return Err(port_err("promiscuous enable", self.id, rc));
        }
        // SAFETY: as above.
        unsafe { ffi::rte_eth_allmulticast_enable(self.id) };
        Ok(())
    }

    /// Link state: (up, speed in Mb/s).
    pub fn link(&self) -> (bool, u32) {
        let mut l = ffi::rte_eth_link::default();
        // SAFETY: l is a valid out-struct.
        let rc = unsafe { ffi::rte_eth_link_get_nowait(self.id, &mut l) };
        if rc != 0 {
            return (false, 0);
        }
        (
            u32::from(l.link_status()) == ffi::RTE_ETH_LINK_UP,
            l.link_speed,
        )
    }

    pub fn mac(&self) -> [u8; 6] {
        let mut a = ffi::rte_ether_addr::default();
        // SAFETY: a is a valid out-struct.
        unsafe { ffi::rte_eth_macaddr_get(self.id, &mut a) };
        a.addr_bytes
    }

    /// Extended statistics, by name (off the fast path).
    pub fn xstats(&self) -> Vec<(String, u64)> {
        // SAFETY: a NULL array asks for the count only.
        let n = unsafe { ffi::rte_eth_xstats_get_names(self.id, std::ptr::null_mut(), 0) };
        if n <= 0 {
            return Vec::new();
        }
        let n = n as usize;
        let mut names = vec![ffi::rte_eth_xstat_name::default(); n];
        let mut vals = vec![ffi::rte_eth_xstat::default(); n];
        // SAFETY: both arrays hold n entries.
        let got = unsafe {
            let a = ffi::rte_eth_xstats_get_names(self.id, names.as_mut_ptr(), n as u32);
            let b = ffi::rte_eth_xstats_get(self.id, vals.as_mut_ptr(), n as u32);
            a.min(b)
        };
        if got <= 0 {
            return Vec::new();
        }
        vals.iter()
            .take(got as usize)
            .filter_map(|v| {
                let name = names.get(v.id as usize)?;
                // SAFETY: the name array is NUL-terminated within its fixed size by DPDK.
                let s = unsafe { CStr::from_ptr(name.name.as_ptr()) };
                Some((s.to_string_lossy().into_owned(), v.value))
            })
            .collect()
    }
}

impl Drop for EthPort {
    /// Stop, close and (for a hot-plugged vdev) detach: the owner drops a port only once no
    /// core polls or transmits on it any more.
    fn drop(&mut self) {
        self.stop();
        // SAFETY: the port is stopped and no queue handle is in use any more.
        unsafe { ffi::rte_eth_dev_close(self.id) };
        if self.hotplugged {
            if let Ok(name) = CString::new(self.dev_name.as_str()) {
                detach_vdev(&name);
            }
        }
    }
}

/// Removes a hot-plugged vdev from EAL (its driver releases what it holds: sockets, memory).
fn detach_vdev(name: &CStr) {
    // SAFETY: both are valid C strings for the duration of the call; the device's port, if
    // any, is closed and unused.
    let rc = unsafe { ffi::rte_eal_hotplug_remove(c"vdev".as_ptr(), name.as_ptr()) };
    if rc < 0 {
        tracing::warn!(device = %name.to_string_lossy(), reason = %strerror(rc), "detaching a vdev failed");
    }
}

/// One rx queue of a port. Not `Clone`: exactly one PMD core owns it, which is what makes the
/// lock-free `rte_eth_rx_burst` call safe.
pub struct RxQueue {
    pub port: u16,
    pub queue: u16,
}

impl RxQueue {
    /// Receives up to a burst into `b` (which must be empty); returns how many arrived.
    #[inline]
    pub fn rx_burst(&mut self, b: &mut Burst) -> usize {
        let (ptrs, len) = b.raw_parts();
        debug_assert_eq!(*len, 0);
        // SAFETY: we own this queue exclusively; ptrs has room for BURST pointers.
        let n = unsafe {
            ffi::rte_eth_rx_burst(self.port, self.queue, ptrs.as_mut_ptr(), BURST as u16)
        } as usize;
        *len = n;
        n
    }
}

/// One tx queue of a port, possibly shared by several PMD cores: when a port has fewer tx
/// queues than there are PMD cores, cores share a queue under this spin lock (as OVS-DPDK does);
/// otherwise the lock is never taken.
pub struct TxQueue {
    pub port: u16,
    pub queue: u16,
}

/// A PMD core's handle on a port's tx queues: its own, and the others for frames a gate control
/// list's `queues` map sends to a queue of their class.
#[derive(Clone)]
pub struct TxHandle {
    qs: Arc<[Arc<(TxQueue, AtomicBool)>]>,
    mine: usize,
    shared: bool,
}

impl TxHandle {
    /// `qs` must not be empty; `mine` is taken modulo its length.
    pub fn new(qs: Arc<[Arc<(TxQueue, AtomicBool)>]>, mine: usize, shared: bool) -> TxHandle {
        assert!(!qs.is_empty(), "a port has at least one tx queue");
        let mine = mine % qs.len();
        TxHandle { qs, mine, shared }
    }

    /// Sends what it can of `b` on tx queue `queue` (this core's own if the port has no such
    /// queue: [`crate::tas::DEFAULT_TXQ`]); whatever the driver did not take stays in `b`.
    #[inline]
    pub fn tx_burst_on(&self, queue: u16, b: &mut Burst) -> usize {
        let i = usize::from(queue);
        let i = if i < self.qs.len() { i } else { self.mine };
        let Some(q) = self.qs.get(i) else { return 0 };
        let (port, queue) = (q.0.port, q.0.queue);
        let lock = &q.1;
        // Only the core owning a gated port's stage transmits to that port (other cores hand
        // it their frames), so a class's queue, though another core's, is not in use
        // elsewhere; a queue shared by cores is locked by each.
        let locked = self.shared;
        if locked {
            while lock
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                std::hint::spin_loop();
            }
        }
        let (ptrs, len) = b.raw_parts();
        // SAFETY: this core has exclusive use of the queue (unshared, or the lock is held);
        // the driver takes ownership of the first `n` mbufs.
        let n =
            unsafe { ffi::rte_eth_tx_burst(port, queue, ptrs.as_mut_ptr(), *len as u16) } as usize;
        if locked {
            lock.store(false, Ordering::Release);
        }
        b.consume_front(n);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::is_pci_address;
    #[test]
    fn pci_addresses() {
        assert!(is_pci_address("0000:03:00.0"));
        assert!(is_pci_address("03:00.0"));
        assert!(is_pci_address("0000:03:00.0,txq_inline=0"));
        assert!(!is_pci_address("net_af_packet0,iface=veth0"));
        assert!(!is_pci_address("net_tap0"));
        assert!(!is_pci_address("0000:03:00"));
    }
}
