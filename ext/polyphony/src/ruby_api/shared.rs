//! `Polyphony::SharedCounters`: integers in memory shared with forked children (an anonymous
//! shared mapping, made before the fork), for processes to see each other's load. Each slot is
//! written by one process and read by all; nil stands for an unused slot.

use std::sync::atomic::{AtomicI64, Ordering};

use magnus::{function, method, prelude::*, Error, RModule, Ruby};

/// A slot's value while no process uses it.
const UNUSED: i64 = i64::MIN;

#[magnus::wrap(class = "Polyphony::SharedCounters", free_immediately, size)]
struct SharedCounters {
    slots: *const AtomicI64,
    len: usize,
}

// SAFETY: the mapping is owned by this object and only reached through atomics; moving the
// object to another thread moves nothing the mapping depends on.
unsafe impl Send for SharedCounters {}

impl SharedCounters {
    fn new(ruby: &Ruby, len: usize) -> Result<Self, Error> {
        if len == 0 || len > 65_536 {
            return Err(Error::new(
                ruby.exception_arg_error(),
                "between 1 and 65536 counters",
            ));
        }
        let bytes = len * std::mem::size_of::<AtomicI64>();
        // SAFETY: a fresh anonymous mapping, no address hint; the result is checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(Error::new(
                ruby.exception_runtime_error(),
                format!("mmap: {}", std::io::Error::last_os_error()),
            ));
        }
        let counters = SharedCounters {
            slots: ptr.cast(),
            len,
        };
        for i in 0..len {
            counters.slot(i).store(UNUSED, Ordering::Relaxed);
        }
        Ok(counters)
    }

    fn slot(&self, i: usize) -> &AtomicI64 {
        assert!(i < self.len);
        // SAFETY: `i` is within the mapping, which is page-aligned (so aligned for AtomicI64)
        // and lives as long as `self`.
        unsafe { &*self.slots.add(i) }
    }

    fn index(ruby: &Ruby, rb_self: &Self, i: usize) -> Result<usize, Error> {
        if i < rb_self.len {
            Ok(i)
        } else {
            Err(Error::new(
                ruby.exception_index_error(),
                format!("counter {i} of {}", rb_self.len),
            ))
        }
    }

    /// `counters[i]`: the value, or nil for an unused slot.
    fn get(ruby: &Ruby, rb_self: &Self, i: usize) -> Result<Option<i64>, Error> {
        let value = rb_self
            .slot(Self::index(ruby, rb_self, i)?)
            .load(Ordering::Relaxed);
        Ok((value != UNUSED).then_some(value))
    }

    /// `counters[i] = value` (nil: unused).
    fn set(ruby: &Ruby, rb_self: &Self, i: usize, value: Option<i64>) -> Result<(), Error> {
        let value = value.unwrap_or(UNUSED);
        rb_self
            .slot(Self::index(ruby, rb_self, i)?)
            .store(value, Ordering::Relaxed);
        Ok(())
    }

    /// The smallest value of the used slots other than `i`, or nil when there is none.
    fn min_other(&self, i: usize) -> Option<i64> {
        (0..self.len)
            .filter(|&j| j != i)
            .map(|j| self.slot(j).load(Ordering::Relaxed))
            .filter(|&v| v != UNUSED)
            .min()
    }

    fn size(&self) -> usize {
        self.len
    }
}

impl Drop for SharedCounters {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, of this length, unmapped once (a forked child
        // unmaps its own view only).
        unsafe {
            libc::munmap(
                self.slots as *mut libc::c_void,
                self.len * std::mem::size_of::<AtomicI64>(),
            )
        };
    }
}

pub(crate) fn init(ruby: &Ruby, polyphony: RModule) -> Result<(), Error> {
    let class = polyphony.define_class("SharedCounters", ruby.class_object())?;
    class.define_singleton_method("new", function!(SharedCounters::new, 1))?;
    class.define_method("[]", method!(SharedCounters::get, 1))?;
    class.define_method("[]=", method!(SharedCounters::set, 2))?;
    class.define_method("min_other", method!(SharedCounters::min_other, 1))?;
    class.define_method("size", method!(SharedCounters::size, 0))?;
    Ok(())
}
