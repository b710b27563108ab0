//! Gen9 command streams: header decoding (§6.1), the scanner/auditor (§6.3, §6.6) that
//! copies a ring slice and its batches out of guest memory into a [`ShadowWorkload`].
//!
//! * [`parse`]: pure header → length/kind decoding per engine, never panics;
//! * [`scan`]: the copying scanner with GVT's audit rules and structural limits;
//! * [`workload`]: the scanned result handed to [`crate::host::HostEngines::submit`].

pub mod workload;

pub use workload::{BatchKey, ShadowBatch, ShadowWorkload, WorkloadContext};
