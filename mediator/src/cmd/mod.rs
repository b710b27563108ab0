//! Gen9 command streams: header decoding (§6.1), the scanner/auditor (§6.3, §6.6) that
//! copies a ring slice and its batches out of guest memory into a [`ShadowWorkload`].
//!
//! * [`parse`]: pure header → length/kind decoding per engine, never panics;
//! * [`audit`]: register whitelists and the GGTT window rule;
//! * [`scan`]: the copying scanner with the audit rules and structural limits;
//! * [`table`]: the table-driven form of [`parse`] used by the scanner's hot loop;
//! * [`workload`]: the scanned result handed to [`crate::host::HostEngines::submit`].

pub mod audit;
mod fetch;
pub mod parse;
mod rules;
pub mod scan;
pub mod table;
pub mod workload;

pub use scan::{
    BufferId, GmSpace, GmTranslate, RejectCounters, RejectReason, RingSlice, ScanLimits,
    ScanReject, ScanRequest, Scanner,
};
pub use workload::{BatchKey, ShadowBatch, ShadowWorkload, WorkloadContext};

#[cfg(test)]
mod scan_tests;
