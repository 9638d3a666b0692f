//! A fixed-capacity FIFO allocated once: pushing into a full ring hands the value back instead
//! of growing, so the PMD core never allocates.

use std::mem::MaybeUninit;

pub(crate) struct Ring<T> {
    /// A power of two of slots, so an index wraps with a mask (no compare and branch). The
    /// `len` slots from `head` (wrapping) hold values; the others are uninitialised. Why not
    /// `Option<T>`: a taken slot would be written back as `None` and every read would test the
    /// tag, on the release loop's path, for what `len` already says.
    slots: Box<[MaybeUninit<T>]>,
    mask: usize,
    /// Values the ring takes: exactly what it was built for, which may be fewer than slots.
    cap: usize,
    head: usize,
    len: usize,
}

impl<T> Ring<T> {
    /// A ring holding exactly `cap` values (at least 1).
    pub(crate) fn new(cap: usize) -> Self {
        let cap = cap.max(1);
        let n = cap.next_power_of_two();
        Self {
            slots: (0..n).map(|_| MaybeUninit::uninit()).collect(),
            mask: n - 1,
            cap,
            head: 0,
            len: 0,
        }
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Appends `v`, or gives it back when full.
    #[inline]
    pub(crate) fn push(&mut self, v: T) -> Result<(), T> {
        if self.len >= self.cap {
            return Err(v);
        }
        // A ring that drained starts over at slot 0: a queue that empties every PMD iteration
        // keeps reusing the same (cache-hot) slots instead of sweeping all of its memory. (Here
        // rather than in `pop`, which runs in the release loop's dependency chain.)
        if self.len == 0 {
            self.head = 0;
        }
        let i = (self.head + self.len) & self.mask;
        // SAFETY: `mask` is `slots.len() - 1` (a power of two), so `i` is in bounds; the slot is
        // outside the `len` values from `head` (len < cap ≤ slots), so it holds nothing to drop.
        unsafe { self.slots.get_unchecked_mut(i) }.write(v);
        self.len += 1;
        Ok(())
    }

    #[inline]
    pub(crate) fn front(&self) -> Option<&T> {
        if self.len == 0 {
            return None;
        }
        // SAFETY: `head` ≤ `mask` (always masked or 0) and, with len > 0, its slot holds a value.
        Some(unsafe { self.slots.get_unchecked(self.head).assume_init_ref() })
    }

    #[inline]
    pub(crate) fn pop(&mut self) -> Option<T> {
        if self.len == 0 {
            return None;
        }
        // SAFETY: as in `front`; the slot leaves the live range below, so it is read only once.
        let v = unsafe { self.slots.get_unchecked(self.head).assume_init_read() };
        self.len -= 1;
        self.head = (self.head + 1) & self.mask;
        Some(v)
    }
}

impl<T> Drop for Ring<T> {
    fn drop(&mut self) {
        while self.pop().is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::Ring;

    #[test]
    fn fifo_wraps_and_refuses_when_full() {
        let mut r = Ring::new(3);
        assert_eq!(r.pop(), None);
        for round in 0..5 {
            assert_eq!(r.push(round * 10), Ok(()));
            assert_eq!(r.push(round * 10 + 1), Ok(()));
            assert_eq!(r.push(round * 10 + 2), Ok(()));
            assert_eq!(r.push(99), Err(99));
            assert_eq!(r.len(), 3);
            assert_eq!(r.front(), Some(&(round * 10)));
            assert_eq!(r.pop(), Some(round * 10));
            assert_eq!(r.push(round * 10 + 3), Ok(()));
            for k in 1..4 {
                assert_eq!(r.pop(), Some(round * 10 + k));
            }
            assert_eq!(r.front(), None);
        }
    }

    #[test]
    fn capacity_is_exact_when_not_a_power_of_two() {
        let mut r = Ring::new(5);
        for round in 0..7 {
            for k in 0..5 {
                assert_eq!(r.push(round * 10 + k), Ok(()));
            }
            assert_eq!(r.push(99), Err(99));
            // Leave two behind so the next round wraps across the unused slots.
            for k in 0..3 {
                assert_eq!(r.pop(), Some(round * 10 + k));
            }
            for k in 3..5 {
                assert_eq!(r.pop(), Some(round * 10 + k));
            }
            assert_eq!(r.pop(), None);
        }
        let mut r = Ring::new(5);
        for v in 0..4 {
            r.push(v).unwrap();
        }
        for v in 0..3 {
            assert_eq!(r.pop(), Some(v));
        }
        for v in 4..8 {
            r.push(v).unwrap(); // wraps: slots 4..7 then 0
        }
        assert_eq!(r.push(8), Err(8));
        for v in 3..8 {
            assert_eq!(r.pop(), Some(v));
        }
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn values_left_in_a_ring_are_dropped_once() {
        use std::rc::Rc;
        let v = Rc::new(());
        let mut r = Ring::new(4);
        for _ in 0..3 {
            r.push(v.clone()).unwrap();
        }
        drop(r.pop());
        for _ in 0..2 {
            r.push(v.clone()).unwrap(); // wraps
        }
        assert!(r.push(v.clone()).is_err()); // given back, dropped here
        assert_eq!(Rc::strong_count(&v), 5);
        drop(r);
        assert_eq!(Rc::strong_count(&v), 1);
    }
}
