//! Everything Xen: the ioreq ABI, the dispatch loop, foreign memory and its map cache,
//! event channels, XenStore, the real libxen* layer and the simulated Xen.
//!
//! Only the `ffi` module may contain `unsafe`; everything else is safe Rust over it.

pub mod ffi;
pub mod xenstore;
