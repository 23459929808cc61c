//! A parsed head as Ruby values: H1P's headers Hash (`':method'`, `':path'`, lower-cased field
//! names) and field Hashes, built straight from spans of the parser's buffer.

use h1p::pull::Message;
use h1p::{Mode, Version};
use magnus::rb_sys::AsRawValue;
use magnus::value::ReprValue;
use magnus::{prelude::*, Error, RHash, Ruby, Value};
use rb_sys::VALUE;

use super::names::names;
use crate::helpers::fiber::QNIL;

fn str_value(ruby: &Ruby, bytes: &[u8]) -> VALUE {
    ruby.str_from_slice(bytes).as_raw()
}

/// A message's values as new binary Strings, as H1P makes them. (Not as substrings of one copy
/// of the head: Ruby shares a substring's bytes only when it ends where its string ends and
/// copies the others, so each long value was copied twice, and its encoding copied too.)
pub(crate) struct Values<'a> {
    bytes: &'a [u8],
}

impl<'a> Values<'a> {
    pub(crate) fn new(message: &Message<'a>) -> Self {
        Values {
            bytes: message.bytes,
        }
    }

    pub(crate) fn get(&self, span: h1p::Span) -> VALUE {
        let bytes = span.of(self.bytes);
        // SAFETY: the GVL is held; `bytes` is valid for its length, and Ruby copies it.
        unsafe { rb_sys::rb_str_new(bytes.as_ptr().cast(), bytes.len() as _) }
    }
}

/// Fields handled on the stack; a message with more goes through `build_hash_slow`.
const STACK_FIELDS: usize = 64;
const KNOWN_NAMES: usize = h1p::names::KNOWN.len();

/// Builds the headers hash: key/value pairs are gathered in an array on the machine stack
/// (which the GC scans, so the new strings in it are safe) and inserted at once, which sizes
/// the table once. A repeated field's values become an Array, in arrival order.
pub(crate) fn build_hash(ruby: &Ruby, message: &Message<'_>, mode: Mode) -> Result<RHash, Error> {
    let head = message.head;
    let fields = &head.fields;
    if fields.len() > STACK_FIELDS {
        return build_hash_slow(ruby, message, mode);
    }
    let n = names();
    let values = Values::new(message);
    let mut pairs = [QNIL; 2 * (STACK_FIELDS + 4)];
    let mut len = 0;
    let mut push = |pairs: &mut [VALUE], key: VALUE, value: VALUE| {
        pairs[len] = key;
        pairs[len + 1] = value;
        len += 2;
        len - 2
    };
    push(&mut pairs, n.protocol, protocol_value(head.version));
    match mode {
        Mode::Server => {
            push(
                &mut pairs,
                n.method,
                method_value(ruby, message.get(head.method)),
            );
            push(&mut pairs, n.path, values.get(head.target));
        }
        Mode::Client => {
            let status = ruby.integer_from_u64(u64::from(head.status)).as_raw();
            push(&mut pairs, n.status, status);
            push(&mut pairs, n.status_message, values.get(head.reason));
        }
    }
    // Where the pair of each name seen so far sits in `pairs`: known names by their position
    // in `h1p::names::KNOWN` (a bit each in `seen`), others in a list searched by bytes; and
    // whether a pair's value is an Array already (by the pair's index).
    let mut seen: u128 = 0;
    let mut known_slots = [0u16; KNOWN_NAMES];
    let mut others = [(0u16, h1p::Span::default()); STACK_FIELDS];
    let mut other_count = 0;
    let mut arrays = [false; STACK_FIELDS + 4];
    for field in fields.iter() {
        let value = values.get(field.value);
        let earlier = match field.known {
            Some(k) => {
                let bit = 1u128 << k;
                if seen & bit == 0 {
                    seen |= bit;
                    known_slots[usize::from(k)] = push(&mut pairs, n.known(k), value) as u16;
                    continue;
                }
                known_slots[usize::from(k)]
            }
            None => {
                let name = message.get(field.name);
                let earlier = others[..other_count]
                    .iter()
                    .find(|(_, other)| message.get(*other).eq_ignore_ascii_case(name));
                match earlier {
                    Some(&(slot, _)) => slot,
                    None => {
                        let slot = push(&mut pairs, new_header_key(ruby, name), value) as u16;
                        others[other_count] = (slot, field.name);
                        other_count += 1;
                        continue;
                    }
                }
            }
        };
        let slot = usize::from(earlier);
        if arrays[slot / 2] {
            // SAFETY: the slot holds an Array we made; `value` is a live String.
            unsafe { rb_sys::rb_ary_push(pairs[slot + 1], value) };
        } else {
            let both = [pairs[slot + 1], value];
            // SAFETY: both are live objects; the new Array is stored on the stack at once.
            pairs[slot + 1] = unsafe { rb_sys::rb_ary_new_from_values(2, both.as_ptr()) };
            arrays[slot / 2] = true;
        }
    }
    push(
        &mut pairs,
        n.rx,
        ruby.integer_from_u64(head.len as u64).as_raw(),
    );
    let hash = crate::helpers::hash::with_capacity(len / 2);
    // SAFETY: `pairs[..len]` holds live keys and values, in pairs; `hash` is a new Hash.
    unsafe { rb_sys::rb_hash_bulk_insert(len as _, pairs.as_ptr(), hash) };
    // SAFETY: a live Hash, just made.
    let hash: Value = unsafe { magnus::rb_sys::FromRawValue::from_raw(hash) };
    RHash::try_convert(hash)
}

fn protocol_value(version: Version) -> VALUE {
    let n = names();
    match version {
        Version::Http10 => n.http10,
        Version::Http11 => n.http11,
        Version::Http1 => n.http1,
    }
}

/// The method, upper-cased (H1P's behaviour), interned when common.
pub(crate) fn method_value(ruby: &Ruby, method: &[u8]) -> VALUE {
    let mut upper = [0u8; 16];
    if method.len() > upper.len() {
        return str_value(ruby, &method.to_ascii_uppercase());
    }
    let upper = &mut upper[..method.len()];
    upper.copy_from_slice(method);
    upper.make_ascii_uppercase();
    names()
        .method(upper)
        .unwrap_or_else(|| str_value(ruby, upper))
}

/// A new String for a name that is not interned: lower-cased.
fn new_header_key(ruby: &Ruby, name: &[u8]) -> VALUE {
    // Field names are tokens: ASCII.
    let lower = name.to_ascii_lowercase();
    ruby.str_new(std::str::from_utf8(&lower).unwrap_or_default())
        .as_raw()
}

/// The general case (more fields than fit on the stack): one `aset` per field.
fn build_hash_slow(ruby: &Ruby, message: &Message<'_>, mode: Mode) -> Result<RHash, Error> {
    let n = names();
    let head = message.head;
    let values = Values::new(message);
    let hash = ruby.hash_new();
    let h = hash.as_raw();
    let aset = |key: VALUE, value: VALUE| {
        // SAFETY: `h` is a live Hash we just made; keys and values are live objects.
        unsafe { rb_sys::rb_hash_aset(h, key, value) };
    };
    let protocol = match head.version {
        Version::Http10 => n.http10,
        Version::Http11 => n.http11,
        Version::Http1 => n.http1,
    };
    match mode {
        Mode::Server => {
            aset(n.method, method_value(ruby, message.get(head.method)));
            aset(n.path, values.get(head.target));
            aset(n.protocol, protocol);
        }
        Mode::Client => {
            aset(n.protocol, protocol);
            aset(
                n.status,
                ruby.integer_from_u64(u64::from(head.status)).as_raw(),
            );
            aset(n.status_message, values.get(head.reason));
        }
    }
    let fields = &head.fields;
    for (i, field) in fields.iter().enumerate() {
        let name = message.get(field.name);
        let value = values.get(field.value);
        let key = field
            .known
            .map_or_else(|| new_header_key(ruby, name), |k| n.known(k));
        let repeated = fields[..i]
            .iter()
            .any(|earlier| message.get(earlier.name).eq_ignore_ascii_case(name));
        if repeated {
            // SAFETY: as above.
            let existing = unsafe { rb_sys::rb_hash_aref(h, key) };
            // SAFETY: `existing` came from the hash.
            let existing: Value = unsafe { magnus::rb_sys::FromRawValue::from_raw(existing) };
            if let Some(array) = magnus::RArray::from_value(existing) {
                // SAFETY: `value` is a live String.
                array.push(unsafe { <Value as magnus::rb_sys::FromRawValue>::from_raw(value) })?;
                continue;
            }
            // SAFETY: both are live objects.
            let pair = unsafe {
                ruby.ary_new_from_values(&[
                    existing,
                    <Value as magnus::rb_sys::FromRawValue>::from_raw(value),
                ])
            };
            aset(key, pair.as_raw());
        } else {
            aset(key, value);
        }
    }
    aset(n.rx, ruby.integer_from_u64(head.len as u64).as_raw());
    Ok(hash)
}

/// `{name => value or [values]}` of fields whose names are lower-case already.
pub(crate) fn fields_hash<'a>(
    ruby: &Ruby,
    fields: impl Iterator<Item = (&'a [u8], &'a [u8])>,
) -> Result<RHash, Error> {
    let hash = ruby.hash_new();
    add_fields(ruby, hash, fields)?;
    Ok(hash)
}

/// Adds fields to `hash` as [`fields_hash`] makes them.
pub(crate) fn add_fields<'a>(
    ruby: &Ruby,
    hash: RHash,
    fields: impl Iterator<Item = (&'a [u8], &'a [u8])>,
) -> Result<(), Error> {
    for (name, value) in fields {
        // Names are tokens, so ASCII: UTF-8 keys, as H1P's headers have.
        let key = std::str::from_utf8(name)
            .map_or_else(|_| ruby.str_from_slice(name), |n| ruby.str_new(n));
        let value = ruby.str_from_slice(value);
        match hash.get(key) {
            None => hash.aset(key, value)?,
            Some(earlier) => match magnus::RArray::from_value(earlier) {
                Some(all) => all.push(value)?,
                None => hash.aset(key, ruby.ary_new_from_values(&[earlier, value.as_value()]))?,
            },
        }
    }
    Ok(())
}
