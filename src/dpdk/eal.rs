//! EAL start-up from our own configuration (never raw EAL args from the user), lcore launch and
//! clean-up. One EAL per process: DPDK refuses a second `rte_eal_init`.
use super::{ffi, last_error, DpdkError};
use std::ffi::{c_void, CString};
use std::sync::atomic::{AtomicBool, Ordering};

static EAL_UP: AtomicBool = AtomicBool::new(false);

/// What the switch asks of EAL.
#[derive(Debug, Clone)]
pub struct EalConfig {
    /// The control/housekeeping core (EAL's main lcore).
    pub main_core: u32,
    /// Busy-polling threads (EAL worker lcores): (lcore id, CPU). Several lcores may share a
    /// CPU (DPDK's `--lcores 1@1,2@1`).
    pub pmd_lcores: Vec<(u32, u32)>,
    /// PCI addresses to allow-list; with none, the PCI bus is not scanned at all.
    pub pci: Vec<String>,
    /// DPDK log level (1 = emergency .. 8 = debug).
    pub log_level: u32,
    /// Megabytes of memory to reserve.
    pub mem_mb: u32,
}

/// Whether hugepages are usable: hugetlbfs mounted and enough free 2 MiB pages for `mem_mb`.
pub fn hugepages_available(mem_mb: u32) -> bool {
    let mounted = std::fs::read_to_string("/proc/mounts")
        .map(|m| {
            m.lines()
                .any(|l| l.split_whitespace().nth(2) == Some("hugetlbfs"))
        })
        .unwrap_or(false);
    let free_kb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let field = |k: &str| {
                m.lines()
                    .find(|l| l.starts_with(k))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse::<u64>().ok())
            };
            Some(field("HugePages_Free:")? * field("Hugepagesize:")?)
        })
        .unwrap_or(0);
    mounted && free_kb >= u64::from(mem_mb) * 1024
}

/// The initialised EAL. Dropping it runs `rte_eal_cleanup`.
pub struct Eal {
    /// True when running without hugepages (slow; said once in the log).
    pub no_huge: bool,
}

impl Eal {
    /// Initialises EAL. `--in-memory` keeps no files behind and lets several DPDK processes
    /// (the switch, testpmd peers) run side by side without `--file-prefix` clashes.
    pub fn init(cfg: &EalConfig) -> Result<Eal, DpdkError> {
        if EAL_UP.swap(true, Ordering::SeqCst) {
            return Err(DpdkError::EalInit(
                "EAL is already initialised in this process".into(),
            ));
        }
        let no_huge = !hugepages_available(cfg.mem_mb);
        // `--lcores ID@CPU,...` names each lcore and pins its thread; the main lcore's id is
        // its CPU. (`-l` would tie every lcore id to a CPU of its own.)
        let mut lcores = vec![format!("{0}@{0}", cfg.main_core)];
        lcores.extend(
            cfg.pmd_lcores
                .iter()
                .filter(|&&(id, _)| id != cfg.main_core)
                .map(|(id, cpu)| format!("{id}@{cpu}")),
        );
        let mut args: Vec<String> = vec![
            "tsn-vswitch".into(),
            "--lcores".into(),
            lcores.join(","),
            "--main-lcore".into(),
            cfg.main_core.to_string(),
            "-m".into(),
            cfg.mem_mb.to_string(),
            format!("--log-level={}", cfg.log_level),
            // Drivers are plugins in Debian's DPDK; telemetry would add a socket per process.
            "--no-telemetry".into(),
        ];
        if no_huge {
            args.push("--no-huge".into());
        } else {
            args.push("--in-memory".into());
        }
        if cfg.pci.is_empty() {
            args.push("--no-pci".into());
        } else {
            for p in &cfg.pci {
                args.push("-a".into());
                args.push(p.clone());
            }
        }
        tracing::debug!(?args, "EAL arguments");
        let cargs: Vec<CString> = args
            .iter()
            .map(|a| CString::new(a.as_str()).expect("no NUL in EAL args"))
            .collect();
        let mut argv: Vec<*mut libc::c_char> = cargs
            .iter()
            .map(|a| a.as_ptr() as *mut libc::c_char)
            .collect();
        // SAFETY: argv points at NUL-terminated strings that outlive the call; EAL may permute
        // the argv array (it is ours) but does not free the strings.
        let rc = unsafe { ffi::rte_eal_init(argv.len() as i32, argv.as_mut_ptr()) };
        if rc < 0 {
            return Err(DpdkError::EalInit(last_error()));
        }
        Ok(Eal { no_huge })
    }

    /// Runs `f` on worker lcore `lcore`. The closure owns what it captures.
    pub fn launch<F>(&self, lcore: u32, f: F) -> Result<(), DpdkError>
    where
        F: FnOnce() -> i32 + Send + 'static,
    {
        unsafe extern "C" fn trampoline(arg: *mut c_void) -> i32 {
            // SAFETY: `arg` is the Box<Box<dyn FnOnce>> leaked by `launch` for exactly one call.
            let f = unsafe { Box::from_raw(arg as *mut Box<dyn FnOnce() -> i32 + Send>) };
            f()
        }
        let boxed: Box<Box<dyn FnOnce() -> i32 + Send>> = Box::new(Box::new(f));
        let arg = Box::into_raw(boxed) as *mut c_void;
        // SAFETY: the trampoline matches lcore_function_t; ownership of `arg` passes to it.
        let rc = unsafe { ffi::rte_eal_remote_launch(Some(trampoline), arg, lcore) };
        if rc != 0 {
            // SAFETY: the launch failed, so the trampoline never ran: reclaim the box.
            drop(unsafe { Box::from_raw(arg as *mut Box<dyn FnOnce() -> i32 + Send>) });
            return Err(DpdkError::Launch {
                lcore,
                reason: super::strerror(rc),
            });
        }
        Ok(())
    }

    /// Waits for every worker lcore to return.
    pub fn wait_all(&self) {
        // SAFETY: called from the main lcore; blocks until the workers are idle.
        unsafe { ffi::rte_eal_mp_wait_lcore() };
    }
}

impl Drop for Eal {
    fn drop(&mut self) {
        // SAFETY: all lcores are idle (wait_all ran) and every port/pool was released first.
        unsafe { ffi::rte_eal_cleanup() };
    }
}
