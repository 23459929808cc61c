//! H1P's exception classes, shared by the parser and the writers: `H1P::Error`,
//! `H1P::TooLarge` (which limit, and its value) and `H1P::InvalidResponse`.

use magnus::value::{Lazy, LazyId};
use magnus::{method, prelude::*, Error, ExceptionClass, RObject, Ruby, TryConvert, Value};

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

/// `H1P::InvalidResponse < H1P::Error`: a response (an app's) that cannot be sent as it is.
pub(crate) static INVALID_RESPONSE: Lazy<ExceptionClass> = Lazy::new(|ruby| {
    let h1p = ruby.define_module("H1P").expect("H1P is defined at init");
    h1p.const_get("InvalidResponse")
        .expect("H1P::InvalidResponse is defined at init")
});

static LIMIT: LazyId = LazyId::new("@limit");
static MAX: LazyId = LazyId::new("@max");

/// The Ruby exception for a parse error: H1P::TooLarge for a limit (its `limit` a Symbol that
/// names it, its `max` the value), else H1P::Error.
pub(crate) fn parse_error(e: &h1p::Error) -> Error {
    let ruby = Ruby::get().expect("called from Ruby");
    let h1p::Error::TooLarge { limit, max } = e else {
        return Error::new(ruby.get_inner(&ERROR), e.to_string());
    };
    let exception = ruby
        .get_inner(&TOO_LARGE)
        .new_instance((ruby.str_new(&e.to_string()),))
        .and_then(|exception| {
            let object = RObject::try_convert(exception.as_value())?;
            // (H1P::TooLarge is this module's class: these are its own instance variables.)
            object.ivar_set(*LIMIT, ruby.to_symbol(limit_name(*limit)))?;
            object.ivar_set(*MAX, *max)?;
            Ok(exception)
        });
    match exception {
        Ok(exception) => Error::from(exception),
        Err(error) => error,
    }
}

/// A limit's name as `H1P::TooLarge#limit` gives it: the `H1P::Parser.new` keyword without
/// its `max_`.
fn limit_name(limit: h1p::Limit) -> &'static str {
    match limit {
        h1p::Limit::Method => "method",
        h1p::Limit::Target => "target",
        h1p::Limit::StatusMessage => "status_message",
        h1p::Limit::HeaderName => "header_name",
        h1p::Limit::HeaderValue => "header_value",
        h1p::Limit::HeaderCount => "headers",
        h1p::Limit::Body => "body",
        h1p::Limit::ChunkLine => "chunk_line",
        h1p::Limit::Head => "head",
    }
}

/// `H1P::TooLarge#limit`: the limit a message exceeded, as a Symbol (`:target`,
/// `:header_value`, `:head`, `:body`...).
fn too_large_limit(rb_self: RObject) -> Result<Value, Error> {
    rb_self.ivar_get(*LIMIT)
}

/// `H1P::TooLarge#max`: that limit's value.
fn too_large_max(rb_self: RObject) -> Result<Value, Error> {
    rb_self.ivar_get(*MAX)
}

pub(crate) fn error(message: impl Into<std::borrow::Cow<'static, str>>) -> Error {
    let ruby = Ruby::get().expect("called from Ruby");
    Error::new(ruby.get_inner(&ERROR), message)
}

/// Defines the classes under `h1p`.
pub(crate) fn init(ruby: &Ruby, h1p: magnus::RModule) -> Result<(), Error> {
    let base = h1p.define_error("Error", ruby.exception_standard_error())?;
    let too_large = h1p.define_error("TooLarge", base)?;
    too_large.define_method("limit", method!(too_large_limit, 0))?;
    too_large.define_method("max", method!(too_large_max, 0))?;
    h1p.define_error("InvalidResponse", base)?;
    let _ = ruby.get_inner(&INVALID_RESPONSE);
    Ok(())
}
