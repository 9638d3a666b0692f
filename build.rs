//! Finds the system DPDK (pkg-config, libdpdk >= 22.11), generates narrow bindings with
//! bindgen, and compiles the C shim for DPDK's `static inline` functions (rx/tx burst,
//! mbuf alloc/free, ...), which have no symbol to link against.

use std::env;
use std::path::PathBuf;

const SETUP_HINT: &str =
    "run `sudo scripts/setup.sh` (installs Debian's dpdk-dev, libdpdk-dev, libclang-dev)";

fn main() {
    println!("cargo:rerun-if-changed=src/dpdk/shim.h");
    println!("cargo:rerun-if-changed=build.rs");

    let lib = match pkg_config::Config::new()
        .atleast_version("22.11")
        .probe("libdpdk")
    {
        Ok(lib) => lib,
        Err(e) => {
            let first = e.to_string().lines().next().unwrap_or_default().to_string();
            println!("cargo:warning=DPDK (libdpdk >= 22.11) not found by pkg-config: {SETUP_HINT}");
            panic!("DPDK (libdpdk >= 22.11) not found by pkg-config ({first}): {SETUP_HINT}");
        }
    };

    // pkg-config's probe drops `-include rte_config.h -march=...`; the shim needs every cflag
    // DPDK was built with (rte_memcpy.h needs SSSE3), so take them verbatim.
    let cflags = std::process::Command::new("pkg-config")
        .args(["--cflags", "libdpdk"])
        .output()
        .expect("pkg-config runs");
    let cflags: Vec<String> = String::from_utf8_lossy(&cflags.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect();

    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let header = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap()).join("src/dpdk/shim.h");
    let wrap_path = out.join("dpdk_static_fns");

    let mut b = bindgen::Builder::default()
        .header(header.to_string_lossy())
        .clang_args(&cflags)
        .clang_arg("-DALLOW_EXPERIMENTAL_API")
        .wrap_static_fns(true)
        .wrap_static_fns_path(&wrap_path)
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false)
        .prepend_enum_name(false)
        .no_debug("rte_.*")
        // `xmm_t`-typed by-value arguments would be mis-declared (see dpdk-ffi notes).
        .blocklist_type("rte_xmm")
        .blocklist_type("xmm_t");
    for f in FUNCTIONS {
        b = b.allowlist_function(f);
    }
    for t in TYPES {
        b = b.allowlist_type(t);
    }
    for v in VARS {
        b = b.allowlist_var(v);
    }
    let bindings = b
        .generate()
        .unwrap_or_else(|e| panic!("bindgen failed on DPDK headers ({e}): {SETUP_HINT}"));
    bindings
        .write_to_file(out.join("dpdk_bindings.rs"))
        .expect("write bindings");

    // The generated shim: one extern wrapper per static inline function.
    let mut cc = cc::Build::new();
    cc.file(wrap_path.with_extension("c"))
        .include(header.parent().unwrap())
        .define("ALLOW_EXPERIMENTAL_API", None)
        // The shim sits on the per-burst path: never build it at -O0, even in dev.
        .opt_level(3)
        .warnings(false);
    for f in &cflags {
        cc.flag(f);
    }
    cc.compile("tsn_dpdk_shim");

    for l in &lib.libs {
        println!("cargo:rustc-link-lib=dylib={l}");
    }
    for p in &lib.link_paths {
        println!("cargo:rustc-link-search=native={}", p.display());
    }
}

/// Only what the switch uses: a narrow allowlist keeps bindgen fast and avoids the packed/aligned
/// types that a broad `rte_.*` list trips over.
const FUNCTIONS: &[&str] = &[
    "tsn_rte_errno",
    "rte_strerror",
    "rte_eal_init",
    "rte_eal_cleanup",
    "rte_eal_remote_launch",
    "rte_eal_wait_lcore",
    "rte_eal_mp_wait_lcore",
    "rte_lcore_id",
    "rte_socket_id",
    "rte_get_tsc_hz",
    "rte_rdtsc",
    "rte_dev_probe",
    "rte_dev_remove",
    "rte_eal_hotplug_remove",
    "rte_pktmbuf_pool_create",
    "rte_mempool_free",
    "rte_mempool_avail_count",
    "rte_mempool_in_use_count",
    "rte_pktmbuf_alloc",
    "rte_pktmbuf_alloc_bulk",
    "rte_pktmbuf_free",
    "rte_pktmbuf_free_bulk",
    "rte_pktmbuf_copy",
    "rte_eth_dev_configure",
    "rte_eth_dev_info_get",
    "rte_eth_rx_queue_setup",
    "rte_eth_tx_queue_setup",
    "rte_eth_dev_start",
    "rte_eth_dev_stop",
    "rte_eth_dev_close",
    "rte_eth_dev_socket_id",
    "rte_eth_dev_get_port_by_name",
    "rte_eth_dev_get_name_by_port",
    "rte_eth_dev_is_valid_port",
    "rte_eth_link_get_nowait",
    "rte_eth_macaddr_get",
    "rte_eth_promiscuous_enable",
    "rte_eth_allmulticast_enable",
    "rte_eth_stats_get",
    "rte_eth_xstats_get",
    "rte_eth_xstats_get_names",
    "rte_eth_rx_burst",
    "rte_eth_tx_burst",
    "rte_eth_dev_adjust_nb_rx_tx_desc",
    "rte_eth_timesync_enable",
    "rte_eth_timesync_read_time",
];
const TYPES: &[&str] = &[
    "rte_mbuf",
    "rte_mempool",
    "rte_eth_conf",
    "rte_eth_dev_info",
    "rte_eth_link",
    "rte_eth_stats",
    "rte_eth_xstat",
    "rte_eth_xstat_name",
    "rte_ether_addr",
    "lcore_function_t",
];
const VARS: &[&str] = &[
    "RTE_MAX_LCORE",
    "RTE_MAX_ETHPORTS",
    "RTE_MBUF_DEFAULT_BUF_SIZE",
    "RTE_PKTMBUF_HEADROOM",
    "RTE_MBUF_F_INDIRECT",
    "RTE_MBUF_F_EXTERNAL",
    "RTE_MBUF_PORT_INVALID",
    "RTE_ETH_LINK_UP",
    "RTE_ETH_NAME_MAX_LEN",
    "RTE_ETH_XSTATS_NAME_SIZE",
];
