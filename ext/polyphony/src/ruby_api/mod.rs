//! The Ruby classes, one per file.

mod acme;
mod backend;
mod h1p;
mod http2;
pub(crate) mod io;
mod parking;
mod resp;
mod shared;
mod stock;
pub(crate) mod tls;
mod transport;
mod websocket;

use magnus::{function, prelude::*, Error, Ruby};

/// What loading the library defines: H1P alone, so that `require 'h1p'` changes nothing else
/// in Ruby. `require 'polyphony'` then calls `H1P.__define_polyphony__` (private) for the rest.
pub(crate) fn init(ruby: &Ruby) -> Result<(), Error> {
    let h1p = h1p::init(ruby)?;
    h1p.singleton_class()?
        .define_private_method("__define_polyphony__", function!(define_polyphony, 0))?;
    Ok(())
}

/// Polyphony's classes, module functions and `Object#snooze`; once, however often it is called.
fn define_polyphony(ruby: &Ruby) -> Result<(), Error> {
    static DONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if DONE.swap(true, std::sync::atomic::Ordering::AcqRel) {
        return Ok(());
    }
    let polyphony = ruby.define_module("Polyphony")?;
    backend::init(ruby, polyphony)?;
    io::init(ruby, polyphony)?;
    stock::init(ruby, polyphony)?;
    tls::init(ruby, polyphony)?;
    acme::init(ruby, polyphony)?;
    http2::init(ruby, polyphony)?;
    parking::init(ruby, polyphony)?;
    websocket::init(ruby, polyphony)?;
    shared::init(ruby, polyphony)
}
