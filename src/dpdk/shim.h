/* The DPDK headers tsn-vswitch binds to, plus tiny helpers for what bindgen cannot reach
 * (macros and per-lcore thread-local variables). Static inline functions are wrapped by
 * bindgen's wrap_static_fns into an extern-callable shim compiled by build.rs. */
#include <rte_config.h>
#include <rte_common.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_launch.h>
#include <rte_dev.h>
#include <rte_mempool.h>
#include <rte_mbuf.h>
#include <rte_ethdev.h>
#include <rte_cycles.h>

/* rte_errno is a per-lcore TLS variable behind a macro: bindgen cannot see it. */
static inline int tsn_rte_errno(void) { return rte_errno; }
