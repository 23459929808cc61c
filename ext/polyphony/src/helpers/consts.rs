//! Ruby constants every part of the binding looks up the same way.

use magnus::{prelude::*, RModule, Ruby};

/// `Polyphony::<module>::<name>`, defined at init (an exception class, a class).
pub(crate) fn polyphony_const<T: magnus::TryConvert>(ruby: &Ruby, module: &str, name: &str) -> T {
    ruby.define_module("Polyphony")
        .and_then(|p| p.const_get::<_, RModule>(module))
        .and_then(|m| m.const_get(name))
        .unwrap_or_else(|_| panic!("Polyphony::{module}::{name} is defined at init"))
}
