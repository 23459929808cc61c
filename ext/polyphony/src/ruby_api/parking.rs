//! `Polyphony::Parking`: connections that wait for their client without a fiber. Each parked
//! connection is a token (any object: Tipi's Connection) and a poll in the kernel for its
//! descriptor; when the client sends something (or closes), the token becomes ready, and
//! `take` hands it to whichever fiber then serves it. The server holds one per listener, and
//! one fiber taking from it.
//!
//! A token parked with a wake-up time (a WebSocket that owes its peer a ping) becomes ready
//! then too, by [`Parking::wake_due`]. Tokens parked with a wake-up time or held (`false`: a
//! WebSocket without pings) are not idle keep-alive connections: `expire` and `evict` leave
//! them alone.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use magnus::rb_sys::{AsRawValue, FromRawValue};
use magnus::typed_data::{DataTypeFunctions, Obj};
use magnus::{gc, method, prelude::*, Error, RArray, RModule, Ruby, TryConvert, Value};
use rb_sys::VALUE;

use super::backend::Backend;
use crate::helpers::fiber;

struct Entry {
    /// The poll's operation id.
    op: u64,
    since: Instant,
    /// When the token is due to be handed out even if its client sends nothing.
    due: Option<Instant>,
    /// Whether `expire` and `evict` may take it (an idle keep-alive connection).
    idle: bool,
}

#[derive(Default)]
struct Inner {
    /// Parked tokens whose poll is in the kernel.
    parked: HashMap<VALUE, Entry>,
    /// Tokens whose client sent something (or left), in that order.
    ready: VecDeque<VALUE>,
    /// The fiber waiting in `take`.
    waiter: Option<VALUE>,
    /// The wake-up times of parked tokens, earliest first. An item whose token is no longer
    /// parked with that time (taken, or parked again) is stale, and skipped when it comes up.
    due: BinaryHeap<Reverse<(Instant, VALUE)>>,
}

#[derive(magnus::TypedData, Default)]
#[magnus(class = "Polyphony::Parking", free_immediately, mark, size)]
pub(crate) struct Parking {
    inner: RefCell<Inner>,
}

impl DataTypeFunctions for Parking {
    fn mark(&self, _marker: &gc::Marker) {
        let inner = self.inner.borrow();
        let parked = inner.parked.keys().copied();
        let held = parked
            .chain(inner.ready.iter().copied())
            .chain(inner.waiter);
        for value in held {
            // SAFETY: called by the GC on values we hold; `rb_gc_mark` pins them, and the
            // tokens are keyed by address.
            unsafe { rb_sys::rb_gc_mark(value) };
        }
    }
}

/// Called by the backend when the poll of `token` in `parking` completes: the token is ready.
/// The fiber waiting in `take`, to be scheduled.
pub(crate) fn woken(parking: VALUE, token: VALUE) -> Option<VALUE> {
    // SAFETY: the backend marks the parking while its poll is in the kernel.
    let parking = Obj::<Parking>::try_convert(unsafe { Value::from_raw(parking) }).ok()?;
    let mut inner = parking.inner.borrow_mut();
    inner.parked.remove(&token)?;
    inner.ready.push_back(token);
    inner.waiter.take()
}

impl Parking {
    /// Parks `token` until descriptor `fd` is readable (or its peer closes). `wake_in`: nil
    /// for an idle keep-alive connection (see `expire`, `evict`), seconds for a token to be
    /// made ready then anyway (see [`Parking::wake_due`]), false for one held until its client
    /// sends.
    fn park(rb_self: Obj<Self>, fd: i32, token: Value, wake_in: Value) -> Result<Obj<Self>, Error> {
        let raw = token.as_raw();
        let now = Instant::now();
        let (due, idle) = if wake_in.is_nil() {
            (None, true)
        } else if wake_in.as_raw() == rb_sys::Qfalse as VALUE {
            (None, false)
        } else {
            let seconds: f64 = TryConvert::try_convert(wake_in)?;
            // (A time too far to say is no wake-up time.)
            let due = Duration::try_from_secs_f64(seconds.max(0.0))
                .ok()
                .and_then(|d| now.checked_add(d));
            (due, false)
        };
        if rb_self.inner.borrow().parked.contains_key(&raw) {
            let ruby = Ruby::get().expect("called from Ruby");
            return Err(Error::new(ruby.exception_arg_error(), "already parked"));
        }
        let op = Backend::current()?.submit_parked(fd, rb_self.as_raw(), raw)?;
        let entry = Entry {
            op,
            since: now,
            due,
            idle,
        };
        let mut inner = rb_self.inner.borrow_mut();
        if let Some(due) = due {
            inner.due.push(Reverse((due, raw)));
        }
        inner.parked.insert(raw, entry);
        Ok(rb_self)
    }

    /// Makes ready the tokens whose wake-up time has come (their polls given up), as if their
    /// clients had sent something; how many. Cheap when none is due: it looks at the earliest.
    fn wake_due(&self) -> Result<usize, Error> {
        let now = Instant::now();
        let (due, waiter) = {
            let mut inner = self.inner.borrow_mut();
            let mut due = Vec::new();
            while let Some(&Reverse((time, token))) = inner.due.peek() {
                if time > now {
                    break;
                }
                inner.due.pop();
                if inner
                    .parked
                    .get(&token)
                    .is_some_and(|e| e.due == Some(time))
                {
                    if let Some(entry) = inner.parked.remove(&token) {
                        inner.ready.push_back(token);
                        due.push(entry.op);
                    }
                }
            }
            let waiter = if due.is_empty() {
                None
            } else {
                inner.waiter.take()
            };
            (due, waiter)
        };
        let backend = Backend::current()?;
        for op in &due {
            backend.cancel_parked(*op);
        }
        if let Some(waiter) = waiter {
            backend.wake(waiter);
        }
        Ok(due.len())
    }

    /// The next ready token, waiting for one.
    fn take(&self) -> Result<Value, Error> {
        let backend = Backend::current()?;
        loop {
            let mut inner = self.inner.borrow_mut();
            if let Some(token) = inner.ready.pop_front() {
                // SAFETY: a token we held (marked) until now; the caller holds it from here.
                return Ok(unsafe { Value::from_raw(token) });
            }
            if inner.waiter.is_some_and(|w| w != fiber::current()) {
                let ruby = Ruby::get().expect("called from Ruby");
                return Err(Error::new(
                    ruby.exception_runtime_error(),
                    "another fiber is taking from this parking",
                ));
            }
            inner.waiter = Some(fiber::current());
            drop(inner);
            let resumed = backend.suspend_current();
            let mut inner = self.inner.borrow_mut();
            if inner.waiter == Some(fiber::current()) {
                inner.waiter = None;
            }
            drop(inner);
            resumed?;
        }
    }

    /// Takes `token` out (its poll given up); whether it was there.
    fn unpark(&self, token: Value) -> Result<bool, Error> {
        let raw = token.as_raw();
        let mut inner = self.inner.borrow_mut();
        if let Some(entry) = inner.parked.remove(&raw) {
            drop(inner);
            Backend::current()?.cancel_parked(entry.op);
            return Ok(true);
        }
        let before = inner.ready.len();
        inner.ready.retain(|t| *t != raw);
        Ok(inner.ready.len() < before)
    }

    /// Takes out the idle keep-alive tokens parked for at least `seconds` (their polls given
    /// up).
    fn expire(ruby: &Ruby, rb_self: &Self, seconds: f64) -> Result<RArray, Error> {
        let age = Duration::try_from_secs_f64(seconds.max(0.0)).unwrap_or(Duration::MAX);
        let now = Instant::now();
        let expired: Vec<(VALUE, u64)> = {
            let mut inner = rb_self.inner.borrow_mut();
            let old: Vec<(VALUE, u64)> = inner
                .parked
                .iter()
                .filter(|(_, e)| e.idle && now.duration_since(e.since) >= age)
                .map(|(t, e)| (*t, e.op))
                .collect();
            for (token, _) in &old {
                inner.parked.remove(token);
            }
            old
        };
        let backend = Backend::current()?;
        let tokens = ruby.ary_new_capa(expired.len());
        for (token, op) in expired {
            backend.cancel_parked(op);
            // SAFETY: a token we held until now; the array holds it from here.
            tokens.push(unsafe { Value::from_raw(token) })?;
        }
        Ok(tokens)
    }

    /// Takes out the idle keep-alive token parked longest (its poll given up); nil when none
    /// is parked.
    fn evict(&self) -> Result<Option<Value>, Error> {
        let oldest = {
            let mut inner = self.inner.borrow_mut();
            let oldest = inner
                .parked
                .iter()
                .filter(|(_, e)| e.idle)
                .min_by_key(|(_, e)| e.since)
                .map(|(t, e)| (*t, e.op));
            if let Some((token, _)) = oldest {
                inner.parked.remove(&token);
            }
            oldest
        };
        let Some((token, op)) = oldest else {
            return Ok(None);
        };
        Backend::current()?.cancel_parked(op);
        // SAFETY: a token we held until now; the caller holds it from here.
        Ok(Some(unsafe { Value::from_raw(token) }))
    }

    /// Every token, parked or ready (not taken out).
    fn tokens(ruby: &Ruby, rb_self: &Self) -> Result<RArray, Error> {
        let inner = rb_self.inner.borrow();
        let tokens = ruby.ary_new_capa(inner.parked.len() + inner.ready.len());
        for token in inner.parked.keys().chain(inner.ready.iter()) {
            // SAFETY: held (marked) by this parking.
            tokens.push(unsafe { Value::from_raw(*token) })?;
        }
        Ok(tokens)
    }

    fn size(&self) -> usize {
        let inner = self.inner.borrow();
        inner.parked.len() + inner.ready.len()
    }
}

pub(crate) fn init(ruby: &Ruby, polyphony: RModule) -> Result<(), Error> {
    let class = polyphony.define_class("Parking", ruby.class_object())?;
    class.define_alloc_func::<Parking>();
    class.define_method("park", method!(Parking::park, 3))?;
    class.define_method("wake_due", method!(Parking::wake_due, 0))?;
    class.define_method("take", method!(Parking::take, 0))?;
    class.define_method("unpark", method!(Parking::unpark, 1))?;
    class.define_method("expire", method!(Parking::expire, 1))?;
    class.define_method("evict", method!(Parking::evict, 0))?;
    class.define_method("tokens", method!(Parking::tokens, 0))?;
    class.define_method("size", method!(Parking::size, 0))?;
    Ok(())
}
