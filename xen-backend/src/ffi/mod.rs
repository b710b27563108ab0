//! The only module with `unsafe`: views of shared pages, eventfd/poll, and the dlopen'd
//! Xen libraries. Every `unsafe` block carries a `// SAFETY:` comment; everything exported
//! is a safe API.

pub mod ctrl;
pub mod dl;
pub mod eventfd;
pub mod page;
pub mod xen;

use thiserror::Error;

/// Why the Xen libraries or devices cannot be used.
#[derive(Debug, Error)]
pub enum FfiError {
    /// `dlopen` of a versioned soname failed.
    #[error("cannot load {soname}: {reason}")]
    LibraryMissing {
        /// The soname tried.
        soname: &'static str,
        /// `dlerror()` text.
        reason: String,
    },
    /// A symbol is missing from a loaded library.
    #[error("{soname} lacks {symbol}")]
    SymbolMissing {
        /// Library.
        soname: &'static str,
        /// Symbol.
        symbol: &'static str,
    },
    /// `/dev/xen/privcmd` does not exist (not running in a Xen dom0).
    #[error("{0} does not exist (not a Xen dom0?)")]
    NoXenDevice(&'static str),
    /// Opening a handle failed.
    #[error("{call} failed: {cause}")]
    Open {
        /// Which call.
        call: &'static str,
        /// errno.
        cause: std::io::Error,
    },
}
