//! The control side of vhost-user ports: accepting or (re)connecting frontends, serving their
//! messages, reporting broken queues.
use super::ports::VhostCtl;
use std::time::{Duration, Instant};

/// The control side of one vhost-user port: accept or (re)connect, handle pending messages,
/// report broken queues once. `housekeeping` runs the once-a-second parts.
pub(super) fn serve_vhost(name: &str, v: &mut VhostCtl, housekeeping: bool) {
    if !v.dev.is_connected() {
        let stream = match &v.listener {
            Some(l) => l.accept().ok(),
            None if housekeeping
                && v.last_try
                    .is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) =>
            {
                v.last_try = Some(Instant::now());
                std::os::unix::net::UnixStream::connect(&v.path).ok()
            }
            None => None,
        };
        if let Some(s) = stream {
            let _ = s.set_nonblocking(false);
            // A frontend that stops mid-message (or stops reading replies) must not hold the
            // control thread: the read/write fails, which is fatal, and the connection ends.
            let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
            let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
            tracing::info!(port = name, socket = %v.path.display(), "vhost-user frontend connected");
            v.dev.attach(s);
        }
    }
    // Handle what is pending, bounded so one chatty guest cannot starve the rest.
    for _ in 0..256 {
        if !v.dev.is_connected() {
            break;
        }
        match v.dev.poll_message(Duration::ZERO) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                if v.dev.is_connected() {
                    tracing::warn!(port = name, error = %e, "vhost-user request failed");
                } else {
                    tracing::info!(port = name, reason = %e, "vhost-user frontend disconnected");
                    break;
                }
            }
        }
    }
    if housekeeping {
        v.dev.service();
        for (i, logged) in v.broken_logged.iter_mut().enumerate() {
            let broken = v.dev.vring_broken(i as u16);
            if broken && !*logged {
                tracing::error!(
                    port = name,
                    vring = i,
                    "guest violated the virtio ring protocol: queue stopped until the guest resets it"
                );
            }
            *logged = broken;
        }
    }
}
