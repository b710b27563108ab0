//! What the daemon reports about a live vGPU: its counters, its ioreq server's counters,
//! the decoded primary plane, and the plane as a PNG screenshot.

use mediator::counters::VgpuCounters;
use mediator::display::fb::read_plane;
use mediator::display::png::encode_png;
use mediator::display::{FbError, PlaneInfo};
use mediator::gvt::VgpuStats;
use mediator::partition::Allocation;
use xen_backend::ServerCounters;

use super::MediatedBackend;
use crate::backend::BackendError;

/// A snapshot of one device.
#[derive(Clone, Debug)]
pub struct DeviceView {
    /// The vGPU's register-model counters.
    pub counters: VgpuCounters,
    /// The mediator's statistics (submissions, completions, rejections, engine time).
    pub stats: Option<VgpuStats>,
    /// The ioreq server's dispatch and map-cache counters.
    pub server: ServerCounters,
    /// The primary plane, or why there is none.
    pub plane: Result<PlaneInfo, FbError>,
}

/// A decoded primary plane as PNG.
#[derive(Clone, Debug)]
pub struct Screenshot {
    /// The plane that was read.
    pub plane: PlaneInfo,
    /// PNG bytes (8-bit RGBA).
    pub png: Vec<u8>,
    /// Every page of the surface was read (missing pixels are transparent black).
    pub complete: bool,
    /// Surface pages that did not map to guest RAM.
    pub pages_unmapped: u64,
}

fn inside(a: &Allocation, base: u64, size: u64) -> bool {
    let Some(end) = base.checked_add(size) else {
        return false;
    };
    [a.low, a.high]
        .iter()
        .any(|w| base >= w.base && w.base.checked_add(w.size).is_some_and(|e| end <= e))
}

impl MediatedBackend {
    /// Counters and plane of `domid`'s vGPU.
    pub fn device_view(&self, domid: u16) -> Option<DeviceView> {
        let dev = self.devices.get(&domid)?;
        let vgpu = self.gvt.vgpu(dev.id)?;
        Some(DeviceView {
            counters: *vgpu.counters(),
            stats: self.gvt.stats(dev.id).ok(),
            server: dev.server.counters(),
            plane: vgpu.display().primary_plane(),
        })
    }

    /// Reads the guest's primary plane out of guest RAM and encodes it as PNG. A
    /// disabled plane, or a surface outside the vGPU's graphics memory windows, is a
    /// one-line [`BackendError::NoImage`].
    pub fn screenshot(&self, domid: u16) -> Result<Screenshot, BackendError> {
        let no_image = |m: String| BackendError::NoImage(format!("domain {domid}: no image: {m}"));
        let dev = self
            .devices
            .get(&domid)
            .ok_or(BackendError::NoSuchDomain(domid))?;
        let vgpu = self
            .gvt
            .vgpu(dev.id)
            .ok_or(BackendError::NoSuchDomain(domid))?;
        let plane = vgpu
            .display()
            .primary_plane()
            .map_err(|e| no_image(e.to_string()))?;
        let a = vgpu.config().allocation;
        if !inside(&a, plane.ggtt_offset, plane.size) {
            return Err(no_image(format!(
                "the plane surface {:#x}+{:#x} lies outside the vGPU's graphics memory \
                 (low {:#x}+{:#x}, high {:#x}+{:#x})",
                plane.ggtt_offset, plane.size, a.low.base, a.low.size, a.high.base, a.high.size
            )));
        }
        let frame = read_plane(&plane, vgpu.ggtt(), vgpu.mem().as_ref())
            .map_err(|e| no_image(e.to_string()))?;
        let png = encode_png(&frame.image)
            .map_err(|e| BackendError::Failed(format!("encoding the screenshot: {e}")))?;
        Ok(Screenshot {
            plane,
            png,
            complete: frame.report.is_complete(),
            pages_unmapped: frame.report.pages_unmapped,
        })
    }
}
