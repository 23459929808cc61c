//! The shared library's SONAME: `libpolyphony.so.0`, the name `rake capi` installs it under
//! (with `libpolyphony.so` beside it for the linker), so that programs linked against it find
//! it again, and a later compatible release can replace it.
fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libpolyphony.so.0");
}
