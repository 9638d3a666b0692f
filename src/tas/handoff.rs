//! The lock-free single-producer single-consumer ring that carries frames for a gated port from
//! a PMD core that received them to the core that owns the port's gate stage (one ring per
//! (source core, gated port)).
//!
//! Why a ring of our own rather than DPDK's `rte_ring`: it holds the frame with its traffic
//! class (classified on the ingress core, where the ingress port's classifier is), it needs no
//! FFI call per frame, and an SPSC ring needs nothing of `rte_ring`'s multi-producer machinery.
//! Allocated once; a push or a pop is a few loads and one release store, never a lock, a
//! syscall or an allocation. A full ring gives the value back (the caller drops and counts it).
//!
//! Each side keeps its own index and a cached copy of the other's, and reads the other's
//! atomic only when the cache says full (producer) or empty (consumer): in steady state the
//! two cores exchange one cache line per consumer poll, not one per frame.

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// An index on a cache line of its own, so the producer's stores do not evict the consumer's.
#[repr(align(64))]
struct Index(AtomicUsize);

struct Inner<T> {
    /// A power of two of slots; free-running indices are masked into it.
    slots: Box<[UnsafeCell<MaybeUninit<T>>]>,
    mask: usize,
    /// Next slot the consumer reads (written by the consumer only).
    head: Index,
    /// Next slot the producer writes (written by the producer only).
    tail: Index,
}

// SAFETY: slots in [head, tail) are touched only by the consumer, the others only by the
// producer; ownership of a slot passes with the release store of `tail` (to the consumer) or
// `head` (back to the producer), read with acquire on the other side. Values move between
// threads, so `T: Send` is needed and enough.
unsafe impl<T: Send> Sync for Inner<T> {}
// SAFETY: as above: the values only move.
unsafe impl<T: Send> Send for Inner<T> {}

impl<T> Drop for Inner<T> {
    fn drop(&mut self) {
        // Both ends are gone: what is still in [head, tail) is ours to drop.
        let tail = *self.tail.0.get_mut();
        let mut head = *self.head.0.get_mut();
        while head != tail {
            // SAFETY: slots in [head, tail) hold values written by the producer and not read.
            unsafe { self.slots[head & self.mask].get_mut().assume_init_drop() };
            head = head.wrapping_add(1);
        }
    }
}

/// The producer end (the core that received the frames).
pub struct Producer<T> {
    inner: Arc<Inner<T>>,
    tail: usize,
    /// The consumer's `head` as last read: slots before it are free.
    head_seen: usize,
}

/// The consumer end (the core that owns the gate).
pub struct Consumer<T> {
    inner: Arc<Inner<T>>,
    head: usize,
    /// The producer's `tail` as last read: slots before it hold values.
    tail_seen: usize,
}

/// A ring of at least `cap` values (rounded up to a power of two), its two ends.
pub fn ring<T: Send>(cap: usize) -> (Producer<T>, Consumer<T>) {
    let n = cap.max(2).next_power_of_two();
    let inner = Arc::new(Inner {
        slots: (0..n)
            .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
            .collect(),
        mask: n - 1,
        head: Index(AtomicUsize::new(0)),
        tail: Index(AtomicUsize::new(0)),
    });
    (
        Producer {
            inner: inner.clone(),
            tail: 0,
            head_seen: 0,
        },
        Consumer {
            inner,
            head: 0,
            tail_seen: 0,
        },
    )
}

impl<T> Producer<T> {
    /// Appends `v`, or gives it back when the ring is full. The consumer sees it at once.
    #[inline]
    pub fn push(&mut self, v: T) -> Result<(), T> {
        let cap = self.inner.mask + 1;
        if self.tail.wrapping_sub(self.head_seen) >= cap {
            self.head_seen = self.inner.head.0.load(Ordering::Acquire);
            if self.tail.wrapping_sub(self.head_seen) >= cap {
                return Err(v);
            }
        }
        let slot = &self.inner.slots[self.tail & self.inner.mask];
        // SAFETY: the slot is outside [head, tail) (checked above against a head at least as
        // old as the real one), so the consumer does not touch it and it holds no value.
        unsafe { (*slot.get()).write(v) };
        self.tail = self.tail.wrapping_add(1);
        self.inner.tail.0.store(self.tail, Ordering::Release);
        Ok(())
    }
}

impl<T> Consumer<T> {
    /// Takes the oldest value, if any.
    #[inline]
    pub fn pop(&mut self) -> Option<T> {
        if self.head == self.tail_seen {
            self.tail_seen = self.inner.tail.0.load(Ordering::Acquire);
            if self.head == self.tail_seen {
                return None;
            }
        }
        let slot = &self.inner.slots[self.head & self.inner.mask];
        // SAFETY: the slot is in [head, tail): the producer wrote it before its release store
        // of `tail`, which our acquire load saw, and does not touch it until `head` passes it.
        let v = unsafe { (*slot.get()).assume_init_read() };
        self.head = self.head.wrapping_add(1);
        self.inner.head.0.store(self.head, Ordering::Release);
        Some(v)
    }

    /// How many values the ring holds at most: a drain bounded by it ends even while the
    /// producer keeps pushing.
    pub fn capacity(&self) -> usize {
        self.inner.mask + 1
    }
}

#[cfg(test)]
mod tests {
    use super::ring;
    use std::sync::Arc;

    #[test]
    fn fifo_refuses_when_full_and_wraps() {
        let (mut tx, mut rx) = ring::<u32>(4);
        assert_eq!(rx.capacity(), 4);
        assert_eq!(rx.pop(), None);
        for round in 0..10u32 {
            for k in 0..4 {
                assert_eq!(tx.push(round * 10 + k), Ok(()));
            }
            assert_eq!(tx.push(99), Err(99));
            assert_eq!(rx.pop(), Some(round * 10));
            assert_eq!(tx.push(round * 10 + 4), Ok(()));
            for k in 1..5 {
                assert_eq!(rx.pop(), Some(round * 10 + k));
            }
            assert_eq!(rx.pop(), None);
        }
    }

    #[test]
    fn values_left_in_the_ring_are_dropped_once() {
        let v = Arc::new(());
        {
            let (mut tx, mut rx) = ring::<Arc<()>>(4);
            for _ in 0..3 {
                assert!(tx.push(v.clone()).is_ok());
            }
            drop(rx.pop());
            assert!(tx.push(v.clone()).is_ok());
            assert_eq!(Arc::strong_count(&v), 4);
            drop(tx);
            assert_eq!(
                Arc::strong_count(&v),
                4,
                "the consumer still holds the ring"
            );
        }
        assert_eq!(Arc::strong_count(&v), 1);
    }

    /// Two threads: every value arrives once, in order, or was refused (ring full).
    #[test]
    fn every_value_arrives_in_order_or_is_refused() {
        const N: u64 = 200_000;
        let (mut tx, mut rx) = ring::<Box<u64>>(64);
        let consumer = std::thread::spawn(move || {
            let mut last = None;
            let mut got = 0u64;
            loop {
                match rx.pop() {
                    Some(v) if *v == u64::MAX => return got,
                    Some(v) => {
                        assert!(last.is_none_or(|l| *v > l), "{v} after {last:?}");
                        last = Some(*v);
                        got += 1;
                    }
                    None => std::hint::spin_loop(),
                }
            }
        });
        let mut refused = 0u64;
        for i in 0..N {
            if tx.push(Box::new(i)).is_err() {
                refused += 1;
            }
        }
        let mut end = Box::new(u64::MAX);
        while let Err(v) = tx.push(end) {
            end = v;
            std::hint::spin_loop();
        }
        let got = consumer.join().unwrap();
        assert_eq!(got + refused, N);
        assert!(got > 0);
    }
}
