//! The control side of vhost-user ports: accepting or (re)connecting frontends, serving their
//! messages, reporting broken queues.
use super::ports::VhostCtl;
use std::io::ErrorKind;
use std::time::{Duration, Instant};

/// How long a listener is left alone after an accept failed.
pub(super) const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// The control side of one vhost-user port: accept or (re)connect, serve the connection without
/// waiting on it (the device reads what arrived, handles complete messages, writes replies as
/// the socket takes them, enforces its deadlines), report broken queues once. `housekeeping`
/// runs the once-a-second parts.
pub(super) fn serve_vhost(name: &str, v: &mut VhostCtl, housekeeping: bool) {
    if !v.dev.is_connected() {
        let stream = match &v.listener {
            Some(_) if v.accept_paused_until.is_some_and(|t| Instant::now() < t) => None,
            Some(l) => match l.accept() {
                Ok(s) => {
                    v.accept_failing = false;
                    Some(s)
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    v.accept_failing = false;
                    None
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => None,
                Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => None,
                Err(e) => {
                    if !v.accept_failing {
                        tracing::warn!(
                            port = name, socket = %v.path.display(), error = %e,
                            "cannot accept vhost-user frontends: retrying every 100 ms"
                        );
                        v.accept_failing = true;
                    }
                    v.accept_paused_until = Some(Instant::now() + ACCEPT_PAUSE);
                    None
                }
            },
            None if housekeeping
                && v.last_try
                    .is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) =>
            {
                v.last_try = Some(Instant::now());
                vhost::try_connect(&v.path).ok()
            }
            None => None,
        };
        if let Some(s) = stream {
            tracing::info!(port = name, socket = %v.path.display(), "vhost-user frontend connected");
            v.dev.attach(s);
        }
    }
    v.dev.serve(Instant::now(), |ev| match ev {
        vhost::ControlEvent::RequestFailed(e) => {
            tracing::warn!(port = name, error = %e, "vhost-user request failed");
        }
        vhost::ControlEvent::Disconnected(e @ vhost::DeviceError::FdMadeBlocking { .. }) => {
            tracing::warn!(port = name, reason = %e, "vhost-user frontend disconnected");
        }
        vhost::ControlEvent::Disconnected(e) => {
            tracing::info!(port = name, reason = %e, "vhost-user frontend disconnected");
        }
    });
    // A frontend that shrank its memory file under us: the access faulted, the vhost crate's
    // SIGBUS guard swapped zero pages in; the frontend goes, the port waits for the next one.
    if v.dev.take_memory_fault() {
        tracing::error!(
            port = name,
            "guest memory file shrank under the switch (SIGBUS caught): frontend disconnected"
        );
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
