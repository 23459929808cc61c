//! The C ABI of Polyphony's Rust core. `include/polyphony.h` is generated from it by cbindgen.
//!
//! - H1P, the HTTP/1 parser: zero-copy (`parse`: one call per head, pointers into the caller's
//!   bytes) and pull (`pull`: a parser that reads through a callback, one message after
//!   another); response heads (`response`).
//! - The event loop (`event_loop`): io_uring or epoll operations that own their buffers.
//!
//! The conventions (`status`): every function that can fail returns a `polyphony_result`, 0 for
//! success and negative for a failure whose message `polyphony_last_error()` gives; no panic
//! crosses into C; a NULL where a pointer or callback is needed is refused with
//! `POLYPHONY_RESULT_NULL_ARGUMENT`; results come back through out-parameters, written only on
//! success unless a function says otherwise; objects made by `*_new` are freed by their
//! `*_free`, which ignores NULL.

// C names for C types, as the header shows them.
#![allow(non_camel_case_types)]

mod event_loop;
mod parse;
mod pull;
mod response;
mod status;

pub use event_loop::*;
pub use parse::*;
pub use pull::*;
pub use response::*;
pub use status::*;
