//! Types shared by the daemon and its device backend ([`crate::mediated::MediatedBackend`]):
//! what creating a device returns, where its windows are, and how it fails.

use std::os::fd::RawFd;

use mediator::partition::{Allocation, FenceRange, GmWindow};

use crate::proto::WindowInfo;

/// Backend failures.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BackendError {
    /// The domain does not exist (or died).
    #[error("domain {0} does not exist")]
    NoSuchDomain(u16),
    /// The domain already has a device.
    #[error("domain {0} already has a vGPU device")]
    Busy(u16),
    /// The host has no room for the vGPU (names the exhausted resource).
    #[error("{0}")]
    NoResources(String),
    /// The guest shows no image (plane disabled, or outside its graphics memory).
    #[error("{0}")]
    NoImage(String),
    /// The backend cannot do this (e.g. start domains on a real Xen).
    #[error("{0}")]
    Unsupported(String),
    /// Anything else, with the reason.
    #[error("{0}")]
    Failed(String),
}

/// Where one vGPU's graphics memory windows and fences are (bytes / fence indices).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Aperture window (bytes).
    pub low: WindowInfo,
    /// Hidden window (bytes).
    pub high: WindowInfo,
    /// First fence.
    pub fence_base: u32,
    /// Fence count.
    pub fence_count: u32,
}

impl From<Allocation> for Placement {
    fn from(a: Allocation) -> Self {
        Placement {
            low: WindowInfo {
                base: a.low.base,
                size: a.low.size,
            },
            high: WindowInfo {
                base: a.high.base,
                size: a.high.size,
            },
            fence_base: a.fences.base,
            fence_count: a.fences.count,
        }
    }
}

impl From<Placement> for Allocation {
    fn from(p: Placement) -> Self {
        Allocation {
            low: GmWindow {
                base: p.low.base,
                size: p.low.size,
            },
            high: GmWindow {
                base: p.high.base,
                size: p.high.size,
            },
            fences: FenceRange {
                base: p.fence_base,
                count: p.fence_count,
            },
        }
    }
}

/// What the backend created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceHandle {
    /// ioreq server id.
    pub server_id: u16,
    /// fd to poll for work.
    pub poll_fd: Option<RawFd>,
    /// Where the mediator's partitioner placed the windows.
    pub placement: Placement,
}
