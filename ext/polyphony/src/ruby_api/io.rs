//! I/O through the backend: a fiber that reads, writes, accepts or waits for readiness submits
//! a kernel operation and lets other fibers run until it completes. These are the primitives
//! of `lib/polyphony/extensions/io.rb` and of the Fiber scheduler; Ruby sees them as
//! `Polyphony.__io_read__` and friends.

use std::os::fd::IntoRawFd;

use magnus::rb_sys::AsRawValue;
use magnus::value::ReprValue;
use magnus::{
    function, prelude::*, Error, RArray, RModule, RString, Ruby, Symbol, TryConvert, Value,
};
use polyphony_runtime::op::{Accept, Attempt, Op, PollAdd, Read, Splice, Write};
use polyphony_runtime::Completion;

use super::backend::{io_error, Awaited, Backend, IdleRead};
use polyphony_runtime::Chain;

pub(crate) fn val(raw: rb_sys::VALUE) -> Value {
    // SAFETY: values handed back by the backend are live objects from Ruby.
    unsafe { magnus::rb_sys::FromRawValue::from_raw(raw) }
}

/// Tries `op` at once (a non-blocking call after a readiness poll): when its descriptor is
/// ready, no fiber switch happens at all (and concurrent writers' bytes are not interleaved
/// inside one `puts`). Otherwise the op goes to the backend and the fiber waits for it.
pub(crate) fn attempt_or_await<O: Op>(fd: i32, op: O) -> Result<Awaited<O::Output>, Error> {
    attempt_or_await_idle(fd, op, IdleRead::No)
}

/// `attempt_or_await`, for an idle read unless `idle` is `No` (see `Backend::await_idle_op`).
pub(crate) fn attempt_or_await_idle<O: Op>(
    fd: i32,
    mut op: O,
    idle: IdleRead,
) -> Result<Awaited<O::Output>, Error> {
    match op.attempt() {
        Attempt::Done(result) => Ok(Awaited::Done(op.complete(Completion { result, flags: 0 }))),
        Attempt::Wait { .. } => Backend::current()?.await_idle_op(fd, op, idle),
    }
}

/// [`attempt_or_await_idle`] for a socket read: one that comes after the fiber has run for a
/// while without a switch gives way to the other fibers first (see `Backend::before_read`).
/// Not for reads in general: a file read while `require` loads a file must not let another
/// fiber see a constant it is autoloading, half defined.
pub(crate) fn attempt_or_await_read<O: Op>(
    fd: i32,
    mut op: O,
    idle: IdleRead,
) -> Result<Awaited<O::Output>, Error> {
    let backend = Backend::current()?;
    if let Some(value) = backend.before_read()? {
        return Ok(Awaited::Interrupted(value));
    }
    match op.attempt() {
        Attempt::Done(result) => Ok(Awaited::Done(op.complete(Completion { result, flags: 0 }))),
        Attempt::Wait { .. } => backend.await_idle_op(fd, op, idle),
    }
}

/// Reads at most `len` bytes from `fd`: a new String (or `buffer`, replaced), nil at EOF.
fn io_read(ruby: &Ruby, fd: i32, len: usize, buffer: Option<RString>) -> Result<Value, Error> {
    let op = Read::new(fd, Vec::with_capacity(len.max(1)), u64::MAX);
    match attempt_or_await(fd, op)? {
        Awaited::Done((Ok(0), _)) => Ok(ruby.qnil().as_value()),
        Awaited::Done((Ok(_), data)) => Ok(string_of(ruby, &data, buffer)),
        Awaited::Done((Err(e), _)) => Err(io_error(&e)),
        Awaited::Interrupted(value) => Ok(val(value)),
    }
}

/// `data` in `buffer` (its content replaced) or in a new String: what a read returns.
pub(crate) fn string_of(ruby: &Ruby, data: &[u8], buffer: Option<RString>) -> Value {
    match buffer {
        Some(buffer) => {
            // SAFETY: `buffer` is a live String; truncating it only shortens it.
            unsafe { rb_sys::rb_str_resize(buffer.as_raw(), 0) };
            buffer.cat(data);
            buffer.as_value()
        }
        None => ruby.str_from_slice(data).as_value(),
    }
}

/// Writes all of `data` to `fd`; returns the byte count.
fn io_write(ruby: &Ruby, fd: i32, data: RString) -> Result<Value, Error> {
    // SAFETY: copied at once; the op owns its copy until the kernel is done with it.
    let data = unsafe { data.as_slice() }.to_vec();
    let total = data.len();
    match write_all(fd, data)? {
        Awaited::Done(()) => Ok(ruby.integer_from_u64(total as u64).as_value()),
        Awaited::Interrupted(value) => Ok(val(value)),
    }
}

/// Writes all of `data` to `fd` through the backend (at once when the descriptor is ready),
/// op after op for what a short write left.
pub(crate) fn write_all(fd: i32, data: Vec<u8>) -> Result<Awaited<()>, Error> {
    write_all_with(fd, data, |_| {})
}

/// As `write_all`, telling `progress` the bytes of each write the kernel took.
pub(crate) fn write_all_with(
    fd: i32,
    mut data: Vec<u8>,
    mut progress: impl FnMut(usize),
) -> Result<Awaited<()>, Error> {
    while !data.is_empty() {
        match attempt_or_await(fd, Write::new(fd, data, u64::MAX))? {
            Awaited::Done((Ok(n), mut rest)) => {
                progress(n);
                rest.drain(..n.min(rest.len()));
                data = rest;
            }
            Awaited::Done((Err(e), _)) => return Err(io_error(&e)),
            Awaited::Interrupted(value) => return Ok(Awaited::Interrupted(value)),
        }
    }
    Ok(Awaited::Done(()))
}

/// Accepts a connection on the listening `fd`: the new descriptor (non-blocking,
/// close-on-exec), which the caller wraps in a socket object.
fn io_accept(ruby: &Ruby, fd: i32, polled: bool) -> Result<Value, Error> {
    let awaited = if polled {
        accept_when_ready(fd)?
    } else {
        Backend::current()?.await_op(fd, Accept::new(fd))?
    };
    match awaited {
        Awaited::Done(Ok(conn)) => Ok(ruby.integer_from_i64(conn.into_raw_fd().into()).as_value()),
        Awaited::Done(Err(e)) => Err(io_error(&e)),
        Awaited::Interrupted(value) => Ok(val(value)),
    }
}

/// Accepts with a non-blocking call, waiting for readiness in between: no accept is ever in
/// the kernel on the fiber's behalf, so stopping the fiber cannot take with it a connection
/// the kernel had already accepted (a cancelled accept's connection is closed). A server's
/// graceful stop and restart rely on it.
fn accept_when_ready(fd: i32) -> Result<Awaited<std::io::Result<std::os::fd::OwnedFd>>, Error> {
    loop {
        let mut op = Accept::new(fd);
        if let Attempt::Done(result) = op.attempt() {
            return Ok(Awaited::Done(op.complete(Completion { result, flags: 0 })));
        }
        if let Some(value) = await_readable(fd)? {
            return Ok(Awaited::Interrupted(value));
        }
    }
}

/// Waits until the listening `fd` has a connection to accept: None then, or the value the
/// fiber was resumed with instead.
fn await_readable(fd: i32) -> Result<Option<rb_sys::VALUE>, Error> {
    match Backend::current()?.await_op(fd, PollAdd::new(fd, libc::POLLIN as u32))? {
        Awaited::Done(Ok(_)) => Ok(None),
        Awaited::Done(Err(e)) => Err(io_error(&e)),
        Awaited::Interrupted(value) => Ok(Some(value)),
    }
}

/// Waits until `fd` is ready for `events` (IO::READABLE, IO::PRIORITY, IO::WRITABLE: the
/// poll(2) bits); returns the ready events.
fn io_wait(ruby: &Ruby, fd: i32, events: u32) -> Result<Value, Error> {
    let mask = events & 0x7;
    // Ready now: no switch (Ruby asks between the two parts of a `puts`, among others).
    match attempt_or_await(fd, PollAdd::new(fd, mask))? {
        // An error or hang-up makes every wanted event "ready": the next call reports it.
        Awaited::Done(Ok(ready)) if ready & (libc::POLLERR | libc::POLLHUP) as u32 != 0 => {
            Ok(ruby.integer_from_u64(u64::from(mask)).as_value())
        }
        Awaited::Done(Ok(ready)) => Ok(ruby.integer_from_u64(u64::from(ready & mask)).as_value()),
        Awaited::Done(Err(e)) => Err(io_error(&e)),
        Awaited::Interrupted(value) => Ok(val(value)),
    }
}

/// Moves up to `len` bytes from `fd_in` to `fd_out` in the kernel (one must be a pipe);
/// returns the count, 0 at end of input.
fn io_splice(ruby: &Ruby, fd_in: i32, fd_out: i32, len: u32) -> Result<Value, Error> {
    splice_op(ruby, Splice::new(fd_in, fd_out, len))
}

/// Copies up to `len` bytes from pipe `fd_in` to pipe `fd_out` without consuming them.
fn io_tee(ruby: &Ruby, fd_in: i32, fd_out: i32, len: u32) -> Result<Value, Error> {
    splice_op(ruby, Splice::tee(fd_in, fd_out, len))
}

/// io_uring reports EAGAIN for a splice between non-blocking pipes (Ruby makes its pipes
/// non-blocking) instead of waiting: wait for the side that is not ready, then try again.
fn splice_op(ruby: &Ruby, op: Splice) -> Result<Value, Error> {
    match splice_kernel(op)? {
        Awaited::Done(n) => Ok(ruby.integer_from_u64(n as u64).as_value()),
        Awaited::Interrupted(value) => Ok(val(value)),
    }
}

/// A splice (or tee): tried at once with a non-blocking system call, and when a side is not
/// ready, its readiness is awaited in the backend (io_uring or epoll) before trying again.
/// io_uring cannot wait inside a splice (it answers EAGAIN for non-blocking pipes and
/// sockets), so a splice op in the ring would cost a round trip per pipe-full; this costs
/// one system call per move. Returns the count moved, 0 at end of input.
pub(crate) fn splice_kernel(mut splice: Splice) -> Result<Awaited<usize>, Error> {
    let backend = Backend::current()?;
    loop {
        match splice.attempt() {
            Attempt::Done(n) if n >= 0 => return Ok(Awaited::Done(n as usize)),
            Attempt::Done(errno) => {
                return Err(io_error(&std::io::Error::from_raw_os_error(-errno)))
            }
            Attempt::Wait { fd, events } => match backend.await_op(fd, PollAdd::new(fd, events))? {
                Awaited::Done(Ok(_)) => {}
                Awaited::Done(Err(e)) => return Err(io_error(&e)),
                Awaited::Interrupted(value) => return Ok(Awaited::Interrupted(value)),
            },
        }
    }
}

/// A pipe between two descriptors that are not pipes, as large as the kernel allows an
/// unprivileged process (1 MiB by default): fewer, larger splices.
pub(crate) struct Relay {
    pub(crate) read: i32,
    pub(crate) write: i32,
}

impl Relay {
    pub(crate) fn new() -> Result<Self, Error> {
        let mut fds = [0; 2];
        let flags = libc::O_CLOEXEC | libc::O_NONBLOCK;
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), flags) } != 0 {
            return Err(io_error(&std::io::Error::last_os_error()));
        }
        // SAFETY: a plain fcntl on our new pipe; failure only leaves the default size.
        unsafe { libc::fcntl(fds[1], libc::F_SETPIPE_SZ, 1 << 20) };
        Ok(Relay {
            read: fds[0],
            write: fds[1],
        })
    }

    /// Moves up to `limit` bytes (or everything until EOF) from `src` to `dest` through the
    /// pipe; returns the count.
    pub(crate) fn pump(
        &self,
        src: i32,
        dest: i32,
        limit: Option<u64>,
    ) -> Result<Awaited<u64>, Error> {
        self.pump_with(src, dest, limit, |_| {})
    }

    /// As `pump`, telling `progress` the bytes of each move into `dest`.
    pub(crate) fn pump_with(
        &self,
        src: i32,
        dest: i32,
        limit: Option<u64>,
        mut progress: impl FnMut(usize),
    ) -> Result<Awaited<u64>, Error> {
        let mut total = 0u64;
        loop {
            let want = limit.map_or(1 << 20, |l| (l - total).min(1 << 20)) as u32;
            if want == 0 {
                return Ok(Awaited::Done(total));
            }
            let n = match splice_kernel(Splice::new(src, self.write, want))? {
                Awaited::Done(0) => return Ok(Awaited::Done(total)),
                Awaited::Done(n) => n,
                Awaited::Interrupted(v) => return Ok(Awaited::Interrupted(v)),
            };
            let mut out = 0;
            while out < n {
                let left = (n - out) as u32;
                match splice_kernel(Splice::new(self.read, dest, left))? {
                    Awaited::Done(0) => {
                        return Err(io_error(&std::io::Error::from_raw_os_error(libc::EPIPE)))
                    }
                    Awaited::Done(m) => {
                        progress(m);
                        out += m;
                    }
                    Awaited::Interrupted(v) => return Ok(Awaited::Interrupted(v)),
                }
            }
            total += n as u64;
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // SAFETY: both descriptors are ours (made by pipe2) and closed once.
        unsafe {
            libc::close(self.read);
            libc::close(self.write);
        }
    }
}

/// Moves everything from `src` to `dest` until EOF through a pipe of its own (neither needs to
/// be a pipe); returns the byte count.
fn io_double_splice(ruby: &Ruby, src: i32, dest: i32) -> Result<Value, Error> {
    match Relay::new()?.pump(src, dest, None)? {
        Awaited::Done(n) => Ok(ruby.integer_from_u64(n).as_value()),
        Awaited::Interrupted(value) => Ok(val(value)),
    }
}

/// Whether `fd` is a pipe (splice needs one on either side).
pub(crate) fn is_pipe(fd: i32) -> bool {
    // SAFETY: `stat` is plain data that fstat fills in.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `stat` is writable.
    unsafe { libc::fstat(fd, &mut stat) == 0 && stat.st_mode & libc::S_IFMT == libc::S_IFIFO }
}

const POLLIN: u32 = libc::POLLIN as u32;

/// Whether Ruby's own read buffer of `io` holds bytes that reading its descriptor would skip.
fn io_pending(io: Value) -> Result<bool, Error> {
    let ruby = Ruby::get().expect("called from Ruby");
    if !crate::helpers::io::is_io(io.as_raw()) {
        return Err(Error::new(ruby.exception_type_error(), "an IO is needed"));
    }
    // SAFETY: `io` is an IO (checked), so an RFile; a NULL fptr is an uninitialized IO.
    Ok(unsafe {
        let fptr = (*(io.as_raw() as *const rb_sys::RFile)).fptr;
        !fptr.is_null() && rb_sys::rb_io_read_pending(fptr) != 0
    })
}

/// Waits for child `pid` to end, letting other fibers run: its pidfd becomes readable when it
/// exits; then it is reaped. Returns the Process::Status (also set as `$?`), or nil when
/// `flags` has WNOHANG and the child still runs. Raises Errno::ECHILD as Process.wait does.
/// Returns false if pidfds are not available (the caller waits another way).
fn process_wait(ruby: &Ruby, pid: i32, flags: i32) -> Result<Value, Error> {
    if flags & libc::WNOHANG == 0 {
        // SAFETY: pidfd_open takes a pid and flags; the result is a new descriptor or -1.
        let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
        if pidfd < 0 {
            let err = std::io::Error::last_os_error();
            return match err.raw_os_error() {
                // Not our child (or already reaped): waitpid says which, as Ruby would.
                Some(libc::ESRCH) => reap(ruby, pid, flags | libc::WNOHANG),
                _ => Ok(ruby.qfalse().as_value()),
            };
        }
        // SAFETY: `pidfd` is a new descriptor that we own from here on.
        let pidfd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(pidfd) };
        let fd = std::os::fd::AsRawFd::as_raw_fd(&pidfd);
        match Backend::current()?.await_op(fd, PollAdd::new(fd, POLLIN))? {
            Awaited::Done(Ok(_)) => {}
            Awaited::Done(Err(e)) => return Err(io_error(&e)),
            Awaited::Interrupted(value) => return Ok(val(value)),
        }
    }
    reap(ruby, pid, flags)
}

fn reap(ruby: &Ruby, pid: i32, flags: i32) -> Result<Value, Error> {
    let mut status = 0;
    let reaped = loop {
        // SAFETY: `status` is writable.
        let reaped = unsafe { libc::waitpid(pid, &mut status, flags) };
        if reaped >= 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            break reaped;
        }
    };
    match reaped {
        0 => Ok(ruby.qnil().as_value()),
        n if n > 0 => {
            // SAFETY: the GVL is held; this sets `$?` from a status waitpid returned.
            Ok(val(unsafe {
                rb_sys::rb_last_status_set(status, n);
                rb_sys::rb_last_status_get()
            }))
        }
        _ => Err(io_error(&std::io::Error::last_os_error())),
    }
}

/// Before `fd` is closed: fibers waiting on it get IOError instead of waiting forever.
/// Returns whether there were any.
fn io_closing(fd: i32) -> bool {
    Backend::existing().is_some_and(|backend| backend.interrupt_waiters(fd))
}

/// Runs `ops` (an Array of `[:write, fd, string]` and `[:splice, fd_in, fd_out, maxlen]`) as
/// one chain: each starts once the one before it succeeded. Returns each op's result: a byte
/// count, or -errno (-ECANCELED for those a failure, or a short count on io_uring, skipped).
fn chain(ruby: &Ruby, ops: RArray) -> Result<Value, Error> {
    let write = ruby.to_symbol("write");
    let splice = ruby.to_symbol("splice");
    let mut chain = Chain::new();
    let mut first_fd = -1;
    let mut kinds = Vec::new();
    for op in ops.into_iter() {
        let op = RArray::try_convert(op)?;
        let kind: Symbol = op.entry(0)?;
        if kind.equal(write)? {
            let fd: i32 = op.entry(1)?;
            let data: RString = op.entry(2)?;
            // SAFETY: copied at once; the op owns its copy.
            chain.push(Write::new(
                fd,
                unsafe { data.as_slice() }.to_vec(),
                u64::MAX,
            ));
            first_fd = if first_fd < 0 { fd } else { first_fd };
            kinds.push(false);
        } else if kind.equal(splice)? {
            let (fd_in, fd_out, len): (i32, i32, u32) = (op.entry(1)?, op.entry(2)?, op.entry(3)?);
            chain.push(Splice::new(fd_in, fd_out, len));
            first_fd = if first_fd < 0 { fd_out } else { first_fd };
            kinds.push(true);
        } else {
            return Err(Error::new(
                ruby.exception_arg_error(),
                format!("unknown chain op {}: use :write or :splice", kind.inspect()),
            ));
        }
    }
    let backend = Backend::current()?;
    let ids = match backend.await_chain(first_fd, chain)? {
        Awaited::Done(ids) => ids,
        Awaited::Interrupted(value) => return Ok(val(value)),
    };
    let results = ruby.ary_new_capa(ids.len());
    for (id, is_splice) in ids.into_iter().zip(kinds) {
        let result = if is_splice {
            backend.take::<Splice>(id).map(|r| r.map(|n| n as i64))
        } else {
            backend.take::<Write>(id).map(|(r, _)| r.map(|n| n as i64))
        };
        let result = match result {
            Some(Ok(n)) => n,
            Some(Err(e)) => -i64::from(e.raw_os_error().unwrap_or(libc::EIO)),
            None => -i64::from(libc::EIO),
        };
        results.push(result)?;
    }
    Ok(results.as_value())
}

/// `Polyphony.__peer_ip__(fd)`: the IP address of a connected socket's peer as text
/// ("127.0.0.1", "::1"), or nil (a Unix socket, not a socket, not connected). One String,
/// where `remote_address.ip_address` makes an Addrinfo, an Array and two and asks
/// getnameinfo(3).
fn peer_ip(ruby: &Ruby, fd: i32) -> Option<RString> {
    // SAFETY: sockaddr_storage is plain data, valid when zeroed.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `storage` and `len` are valid for writes of the size given.
    let rc = unsafe {
        libc::getpeername(
            fd,
            (&mut storage as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return None;
    }
    ip_of(&storage).map(|ip| ruby.str_new(&ip.to_string()))
}

/// The IP address in a socket address, if it is an IPv4 or IPv6 one.
fn ip_of(storage: &libc::sockaddr_storage) -> Option<std::net::IpAddr> {
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(std::net::IpAddr::from(sin.sin_addr.s_addr.to_ne_bytes())) // (network order)
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6 = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            Some(std::net::IpAddr::from(sin6.sin6_addr.s6_addr))
        }
        _ => None,
    }
}

/// `Polyphony.__io_accept_peer__(fd)`: accepts a connection on the listening `fd`, which must
/// be non-blocking (Ruby makes its sockets so), waiting for readiness only when none is
/// pending: `[new fd, the peer's IP as text or nil]`. Like `poly_accept(polled: true)`, no
/// accept is ever in the kernel on the fiber's behalf; unlike it, no poll(2) comes first, and
/// the address comes with the connection (no getpeername(2) for REMOTE_ADDR).
fn io_accept_peer(ruby: &Ruby, fd: i32) -> Result<Value, Error> {
    loop {
        // SAFETY: sockaddr_storage is plain data, valid when zeroed.
        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let flags = libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;
        // SAFETY: `storage` and `len` are valid for writes of the size given; the new
        // descriptor is ours.
        let conn = unsafe {
            libc::accept4(
                fd,
                (&mut storage as *mut libc::sockaddr_storage).cast(),
                &mut len,
                flags,
            )
        };
        if conn >= 0 {
            let ip = ip_of(&storage).map_or_else(
                || ruby.qnil().as_value(),
                |ip| ruby.str_new(&ip.to_string()).as_value(),
            );
            let fd = ruby.integer_from_i64(conn.into()).as_value();
            return Ok(ruby.ary_new_from_values(&[fd, ip]).as_value());
        }
        let error = std::io::Error::last_os_error();
        match error.raw_os_error() {
            Some(libc::EINTR) => {}
            Some(libc::EAGAIN) => {
                if let Some(value) = await_readable(fd)? {
                    return Ok(val(value));
                }
            }
            // A connection that failed before it was taken (reset by its client, or a network
            // error the kernel reports on it): accept(2) says to go on as with EAGAIN.
            Some(code) if ACCEPT_RETRY.contains(&code) => {}
            _ => return Err(io_error(&error)),
        }
    }
}

/// accept4(2)'s errors that belong to one pending connection, not to the listener.
const ACCEPT_RETRY: [i32; 10] = [
    libc::ECONNABORTED,
    libc::EPERM, // (a firewall rule refused this connection)
    libc::EPROTO,
    libc::ENETDOWN,
    libc::ENOPROTOOPT,
    libc::EHOSTDOWN,
    libc::ENONET,
    libc::EHOSTUNREACH,
    libc::EOPNOTSUPP,
    libc::ENETUNREACH,
];

pub(crate) fn init(_ruby: &Ruby, polyphony: RModule) -> Result<(), Error> {
    polyphony.define_singleton_method("__peer_ip__", function!(peer_ip, 1))?;
    polyphony.define_singleton_method("__io_accept_peer__", function!(io_accept_peer, 1))?;
    polyphony.define_singleton_method("__chain__", function!(chain, 1))?;
    polyphony.define_singleton_method("__io_closing__", function!(io_closing, 1))?;
    polyphony.define_singleton_method("__io_double_splice__", function!(io_double_splice, 2))?;
    polyphony.define_singleton_method("__process_wait__", function!(process_wait, 2))?;
    polyphony.define_singleton_method("__io_splice__", function!(io_splice, 3))?;
    polyphony.define_singleton_method("__io_tee__", function!(io_tee, 3))?;
    polyphony.define_singleton_method("__io_pending__", function!(io_pending, 1))?;
    polyphony.define_singleton_method("__io_read__", function!(io_read, 3))?;
    polyphony
        .define_singleton_method("__read_idle__", function!(super::transport::read_idle, 2))?;
    polyphony.define_singleton_method("__io_write__", function!(io_write, 2))?;
    polyphony.define_singleton_method("__io_accept__", function!(io_accept, 2))?;
    polyphony.define_singleton_method("__io_wait__", function!(io_wait, 2))?;
    Ok(())
}
