//! What every call reports: one status type for the whole ABI, one per-thread message for the
//! last failure, and the boundary that keeps a panic from unwinding into C.

use std::any::Any;
use std::cell::RefCell;
use std::ffi::{c_char, c_int, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// What a call did. 0 is success; the other non-negative values are outcomes that are not
/// failures (more bytes needed, the end of something, a bigger buffer needed); negative values
/// are failures, and `polyphony_last_error()` then says why.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum polyphony_result {
    /// Done.
    Ok = 0,
    /// Not yet: a head is not complete in the bytes given, or an operation has not completed.
    Incomplete = 1,
    /// The end: of the input, between two messages; of a message's body.
    End = 2,
    /// The output does not fit: the size it needs was written, nothing else.
    BufferTooSmall = 3,
    /// A pointer or callback that must not be NULL was NULL.
    NullArgument = -1,
    /// An argument out of its range: an unknown mode or loop kind, an operation id the loop
    /// does not know (or no longer knows: taken, or cancelled).
    InvalidArgument = -2,
    /// The bytes are not a valid HTTP/1 message (the message says what is wrong).
    InvalidMessage = -3,
    /// A message over one of the parser's limits, or with more fields than the slots given.
    TooLarge = -4,
    /// The input ended inside a message (its head, or its body).
    Truncated = -5,
    /// The parser's read callback returned a negative value.
    ReadError = -6,
    /// A call out of order (reading a body before any head, or after a failure).
    InvalidState = -7,
    /// A response head that cannot be sent: its status, a field, or its length.
    InvalidResponse = -8,
    /// The operating system refused; the message has its errno and text.
    SystemError = -9,
    /// What was asked for is not available on this system (io_uring missing or disabled).
    Unsupported = -10,
    /// A bug in the library (a panic, caught before it reached C); the object the call was
    /// given may be left unusable.
    InternalError = -11,
}

impl polyphony_result {
    const ALL: [Self; 15] = [
        Self::Ok,
        Self::Incomplete,
        Self::End,
        Self::BufferTooSmall,
        Self::NullArgument,
        Self::InvalidArgument,
        Self::InvalidMessage,
        Self::TooLarge,
        Self::Truncated,
        Self::ReadError,
        Self::InvalidState,
        Self::InvalidResponse,
        Self::SystemError,
        Self::Unsupported,
        Self::InternalError,
    ];

    fn name(self) -> &'static std::ffi::CStr {
        match self {
            Self::Ok => c"POLYPHONY_RESULT_OK",
            Self::Incomplete => c"POLYPHONY_RESULT_INCOMPLETE",
            Self::End => c"POLYPHONY_RESULT_END",
            Self::BufferTooSmall => c"POLYPHONY_RESULT_BUFFER_TOO_SMALL",
            Self::NullArgument => c"POLYPHONY_RESULT_NULL_ARGUMENT",
            Self::InvalidArgument => c"POLYPHONY_RESULT_INVALID_ARGUMENT",
            Self::InvalidMessage => c"POLYPHONY_RESULT_INVALID_MESSAGE",
            Self::TooLarge => c"POLYPHONY_RESULT_TOO_LARGE",
            Self::Truncated => c"POLYPHONY_RESULT_TRUNCATED",
            Self::ReadError => c"POLYPHONY_RESULT_READ_ERROR",
            Self::InvalidState => c"POLYPHONY_RESULT_INVALID_STATE",
            Self::InvalidResponse => c"POLYPHONY_RESULT_INVALID_RESPONSE",
            Self::SystemError => c"POLYPHONY_RESULT_SYSTEM_ERROR",
            Self::Unsupported => c"POLYPHONY_RESULT_UNSUPPORTED",
            Self::InternalError => c"POLYPHONY_RESULT_INTERNAL_ERROR",
        }
    }
}

/// A failed call: its status and what to tell the caller.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) status: polyphony_result,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(status: polyphony_result, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn null(what: &str) -> Self {
        Self::new(polyphony_result::NullArgument, format!("{what} is NULL"))
    }

    /// An error from the operating system, `doing` what.
    pub(crate) fn system(doing: &str, error: &std::io::Error) -> Self {
        let status = match error.raw_os_error() {
            Some(libc::ENOSYS) => polyphony_result::Unsupported,
            _ => polyphony_result::SystemError,
        };
        Self::new(status, format!("{doing}: {error}"))
    }
}

pub(crate) type Outcome = Result<polyphony_result, Failure>;

/// Fails with `NullArgument` naming `what` when `pointer` is NULL.
pub(crate) fn non_null<T>(pointer: *const T, what: &str) -> Result<(), Failure> {
    if pointer.is_null() {
        Err(Failure::null(what))
    } else {
        Ok(())
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

pub(crate) fn set_last_error(message: &str) {
    // A NUL inside the message would cut it short for C: show it instead.
    let message = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    // During the thread's teardown the slot may be gone: then there is nobody to tell.
    let _ = LAST_ERROR.try_with(|e| *e.borrow_mut() = message);
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic")
}

/// Runs an exported function's body: a failure becomes its status (the message kept for
/// `polyphony_last_error`), and a panic becomes `InternalError` instead of unwinding into C.
pub(crate) fn boundary(body: impl FnOnce() -> Outcome) -> polyphony_result {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(status)) => status,
        Ok(Err(failure)) => {
            set_last_error(&failure.message);
            failure.status
        }
        Err(payload) => {
            set_last_error(&format!(
                "internal error (a bug in polyphony; please report it): {}",
                panic_message(&*payload)
            ));
            polyphony_result::InternalError
        }
    }
}

/// The boundary of an exported function that reports nothing (a `free`): a panic is kept as
/// the last error and goes no further.
pub(crate) fn boundary_void(body: impl FnOnce()) {
    boundary(|| {
        body();
        Ok(polyphony_result::Ok)
    });
}

/// The message of the last failure on this thread: the last call that returned a negative
/// `polyphony_result` ("" before any). Calls that succeed leave it as it is, as `errno` is
/// left. The string belongs to the library and stays valid until the next failure on this
/// thread; copy it to keep it.
#[no_mangle]
pub extern "C" fn polyphony_last_error() -> *const c_char {
    let mut message = c"".as_ptr();
    boundary_void(|| {
        if let Ok(pointer) = LAST_ERROR.try_with(|e| e.borrow().as_ptr()) {
            message = pointer;
        }
    });
    message
}

/// The name of a `polyphony_result` as the header spells it (`"POLYPHONY_RESULT_OK"`...), or
/// `"POLYPHONY_RESULT_UNKNOWN"` for a value that is none of them; a static string.
#[no_mangle]
pub extern "C" fn polyphony_result_name(result: c_int) -> *const c_char {
    let mut name = c"POLYPHONY_RESULT_UNKNOWN".as_ptr();
    boundary_void(|| {
        if let Some(known) = polyphony_result::ALL
            .iter()
            .find(|r| **r as c_int == result)
        {
            name = known.name().as_ptr();
        }
    });
    name
}

/// The library's version, `MAJOR.MINOR.PATCH`; a static string.
#[no_mangle]
pub extern "C" fn polyphony_version() -> *const c_char {
    let mut version = c"".as_ptr();
    boundary_void(|| version = concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast());
    version
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    fn last_error() -> String {
        // SAFETY: the library's own NUL-terminated string, read before any other failure.
        unsafe { CStr::from_ptr(polyphony_last_error()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn a_panic_becomes_an_internal_error_with_its_message() {
        let status = boundary(|| panic!("the slab is corrupt"));
        assert_eq!(status, polyphony_result::InternalError);
        assert!(last_error().ends_with("please report it): the slab is corrupt"));
        boundary_void(|| panic!("in a free: {}", 42));
        assert!(last_error().ends_with(": in a free: 42"));
    }

    #[test]
    fn a_failure_keeps_its_message_until_the_next_failure() {
        let status = boundary(|| Err(Failure::null("parser")));
        assert_eq!(status, polyphony_result::NullArgument);
        assert_eq!(
            boundary(|| Ok(polyphony_result::End)),
            polyphony_result::End
        );
        assert_eq!(last_error(), "parser is NULL");
        boundary(|| Err(Failure::new(polyphony_result::ReadError, "a\0b")));
        assert_eq!(last_error(), "a\\0b");
    }

    #[test]
    fn every_result_has_its_header_name() {
        let name = |r: polyphony_result| {
            // SAFETY: static strings.
            unsafe { CStr::from_ptr(polyphony_result_name(r as c_int)) }
                .to_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(name(polyphony_result::Ok), "POLYPHONY_RESULT_OK");
        assert_eq!(
            name(polyphony_result::BufferTooSmall),
            "POLYPHONY_RESULT_BUFFER_TOO_SMALL"
        );
        // SAFETY: a static string.
        let unknown = unsafe { CStr::from_ptr(polyphony_result_name(99)) };
        assert_eq!(unknown.to_str().unwrap(), "POLYPHONY_RESULT_UNKNOWN");
        let header = include_str!("../../../include/polyphony.h");
        for result in polyphony_result::ALL {
            let (name, code) = (name(result), result as c_int);
            assert!(header.contains(&format!("{name} = {code},")), "{name}");
        }
    }
}
