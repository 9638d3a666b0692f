//! A fixed-capacity FIFO allocated once: pushing into a full ring hands the value back instead
//! of growing, so the PMD core never allocates.

pub(crate) struct Ring<T> {
    slots: Box<[Option<T>]>,
    head: usize,
    len: usize,
}

impl<T> Ring<T> {
    /// A ring of exactly `cap` slots (at least 1).
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            slots: (0..cap.max(1)).map(|_| None).collect(),
            head: 0,
            len: 0,
        }
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[inline]
    fn wrap(&self, i: usize) -> usize {
        if i >= self.slots.len() {
            i - self.slots.len()
        } else {
            i
        }
    }

    /// Appends `v`, or gives it back when full.
    #[inline]
    pub(crate) fn push(&mut self, v: T) -> Result<(), T> {
        if self.len == self.slots.len() {
            return Err(v);
        }
        let i = self.wrap(self.head + self.len);
        self.slots[i] = Some(v);
        self.len += 1;
        Ok(())
    }

    #[inline]
    pub(crate) fn front(&self) -> Option<&T> {
        self.slots[self.head].as_ref()
    }

    #[inline]
    pub(crate) fn pop(&mut self) -> Option<T> {
        let v = self.slots[self.head].take()?;
        self.len -= 1;
        // An emptied ring starts over at slot 0: a queue that drains every PMD iteration keeps
        // reusing the same (cache-hot) slots instead of sweeping all of its memory.
        self.head = if self.len == 0 {
            0
        } else {
            self.wrap(self.head + 1)
        };
        Some(v)
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
}
