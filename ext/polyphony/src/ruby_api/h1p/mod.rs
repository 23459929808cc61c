//! `H1P`: the HTTP/1 parser (`H1P::Parser`) and the response writers (`H1P.send_response`...)
//! over the `h1p` crate.

mod names;
pub(crate) mod parser;
pub(crate) mod rack;
pub(crate) mod response;

use magnus::value::Lazy;
use magnus::{prelude::*, Error, ExceptionClass, Ruby};

/// `H1P::Error`: every malformed message and every misuse.
pub(crate) static ERROR: Lazy<ExceptionClass> = Lazy::new(|ruby| {
    let h1p = ruby.define_module("H1P").expect("H1P is defined at init");
    h1p.const_get("Error")
        .expect("H1P::Error is defined at init")
});

/// `H1P::TooLarge < H1P::Error`: a limit was exceeded (a server answers 413 or 431).
pub(crate) static TOO_LARGE: Lazy<ExceptionClass> = Lazy::new(|ruby| {
    let h1p = ruby.define_module("H1P").expect("H1P is defined at init");
    h1p.const_get("TooLarge")
        .expect("H1P::TooLarge is defined at init")
});

/// The Ruby exception for a parse error: H1P::TooLarge for a limit, else H1P::Error.
pub(crate) fn parse_error(e: &h1p::Error) -> Error {
    let ruby = Ruby::get().expect("called from Ruby");
    match e {
        h1p::Error::TooLarge { .. } => Error::new(ruby.get_inner(&TOO_LARGE), e.to_string()),
        _ => Error::new(ruby.get_inner(&ERROR), e.to_string()),
    }
}

pub(crate) fn error(message: impl Into<std::borrow::Cow<'static, str>>) -> Error {
    let ruby = Ruby::get().expect("called from Ruby");
    Error::new(ruby.get_inner(&ERROR), message)
}

pub(crate) fn init(ruby: &Ruby) -> Result<(), Error> {
    let h1p = ruby.define_module("H1P")?;
    let base = h1p.define_error("Error", ruby.exception_standard_error())?;
    h1p.define_error("TooLarge", base)?;
    names::init(ruby)?;
    parser::init(ruby, h1p)?;
    response::init(ruby, h1p)
}
