//! A single-slot mailbox carrying a boxed value between two threads without locks.
//!
//! The receiver's poll is one relaxed load while the slot is empty; only when something is there
//! does it swap. A sender replacing an unread value gets the old one back to free on its side.

use std::marker::PhantomData;
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};

pub(crate) struct Slot<T> {
    ptr: AtomicPtr<T>,
    /// Owns a `Box<T>` as far as auto traits and drop check are concerned.
    _owns: PhantomData<Box<T>>,
}

// SAFETY: a slot only moves boxes from one thread to another (like a channel); no `&T` is ever
// handed out through a shared `&Slot`, so `T: Send` suffices, as for `Mutex<T>`.
unsafe impl<T: Send> Sync for Slot<T> {}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Self {
            ptr: AtomicPtr::new(ptr::null_mut()),
            _owns: PhantomData,
        }
    }
}

impl<T> Slot<T> {
    /// Boxes a pointer taken out of the slot.
    fn own(p: *mut T) -> Option<Box<T>> {
        if p.is_null() {
            None
        } else {
            // SAFETY: non-null pointers in the slot come from `Box::into_raw` in `put`/`try_put`,
            // and the swap/CAS that removed it made this thread its only owner.
            Some(unsafe { Box::from_raw(p) })
        }
    }

    /// Puts `v` in the slot; returns what was there and not yet taken.
    pub(crate) fn put(&self, v: Box<T>) -> Option<Box<T>> {
        Self::own(self.ptr.swap(Box::into_raw(v), Ordering::AcqRel))
    }

    /// Puts `v` in the slot only if it is empty.
    pub(crate) fn try_put(&self, v: Box<T>) -> Result<(), Box<T>> {
        let p = Box::into_raw(v);
        match self
            .ptr
            .compare_exchange(ptr::null_mut(), p, Ordering::AcqRel, Ordering::Relaxed)
        {
            Ok(_) => Ok(()),
            // SAFETY: the CAS failed, so `p` never entered the slot and is still ours alone.
            Err(_) => Err(unsafe { Box::from_raw(p) }),
        }
    }

    /// Takes the value, if any. Cheap when empty: one relaxed load.
    #[inline]
    pub(crate) fn take(&self) -> Option<Box<T>> {
        if self.ptr.load(Ordering::Relaxed).is_null() {
            return None;
        }
        Self::own(self.ptr.swap(ptr::null_mut(), Ordering::AcqRel))
    }
}

impl<T> Drop for Slot<T> {
    fn drop(&mut self) {
        drop(self.take());
    }
}

#[cfg(test)]
mod tests {
    use super::Slot;
    use std::sync::Arc;

    #[test]
    fn put_take_replace() {
        let s = Slot::default();
        assert!(s.take().is_none());
        assert!(s.put(Box::new(1)).is_none());
        assert_eq!(s.put(Box::new(2)).map(|b| *b), Some(1));
        assert_eq!(s.try_put(Box::new(3)).map_err(|b| *b), Err(3));
        assert_eq!(s.take().map(|b| *b), Some(2));
        assert!(s.try_put(Box::new(4)).is_ok());
        // Dropped with a value inside: freed (Miri/ASan would flag a leak or double free).
        let d = Slot::default();
        d.put(Box::new(String::from("x")));
    }

    #[test]
    fn every_value_arrives_or_comes_back() {
        let s = Arc::new(Slot::<u64>::default());
        let r = s.clone();
        let reader = std::thread::spawn(move || {
            let mut got = 0u64;
            let mut last = 0;
            while last != 10_000 {
                if let Some(v) = r.take() {
                    assert!(*v > last);
                    last = *v;
                    got += 1;
                }
            }
            got
        });
        let mut back = 0u64;
        for i in 1..=10_000u64 {
            if s.put(Box::new(i)).is_some() {
                back += 1;
            }
        }
        let got = reader.join().unwrap();
        assert_eq!(got + back, 10_000);
    }
}
