mod control;
mod guard;
mod protocol;
mod ring;

use std::os::fd::{AsFd, OwnedFd};

use crate::protocol::{Pod, Request, VirtioFeatures};
use crate::testutil::{Frontend, MockGuest, MockVring};

/// The frontend's part of starting a two-vring device, as QEMU orders it: VERSION_1, the
/// guest's one memory region, then each vring's size, addresses and kick.
fn start_two_vrings(
    fe: &Frontend,
    guest: &MockGuest,
    rings: &[MockVring; 2],
    kicks: &[OwnedFd; 2],
    size: u16,
) {
    fe.set_u64(Request::SetFeatures, VirtioFeatures::VERSION_1.bits())
        .unwrap();
    fe.set_mem_table(&[guest.region()], &[guest.fd()]).unwrap();
    for i in 0..2u32 {
        fe.set_state(Request::SetVringNum, i, u32::from(size))
            .unwrap();
        fe.send(
            Request::SetVringAddr,
            rings[i as usize].addr(guest, i).as_bytes(),
            &[],
        )
        .unwrap();
        fe.set_vring_fd(Request::SetVringKick, i, Some(kicks[i as usize].as_fd()))
            .unwrap();
    }
}
