//! The vGPU's fences (§4.5): decoding the guest's fence registers, counting invalid ones
//! when they are written, and the software aperture's detiling through enabled fences
//! (pitfall 5: a software aperture must detile or advertise 0 fences).

use crate::fence::{self, Detiled, Fence};
use crate::memory::PAGE_SIZE;
use crate::mmio::gt::{FENCE_BASE, FENCE_COUNT};

use super::Vgpu;

/// Rate limit for guest-triggered logs: the first few, then every power of two.
fn should_log(count: u64) -> bool {
    count <= 4 || count.is_power_of_two()
}

/// The fence index of register dword `dw`, if it is a fence dword.
pub(super) fn fence_index(dw: u32) -> Option<u32> {
    let rel = dw.checked_sub(FENCE_BASE)?;
    (rel < FENCE_COUNT * 8).then_some(rel / 8)
}

/// Where one piece of an aperture access goes.
enum Piece {
    /// GM address and byte count.
    To(u64, usize),
    /// The piece cannot be served.
    Fail,
}

impl Vgpu {
    /// Fences the guest may use: `fence_num` of them, at most the MMIO map's 32.
    fn fence_limit(&self) -> u32 {
        self.config.allocation.fences.count.min(FENCE_COUNT)
    }

    /// The raw 64-bit value of guest fence `i`.
    fn fence_raw(&self, i: u32) -> u64 {
        let lo = FENCE_BASE + 8 * i;
        u64::from(self.state.regs.get(lo)) | (u64::from(self.state.regs.get(lo + 4)) << 32)
    }

    /// Decodes guest fence `i` against the vGPU's own windows.
    fn fence(&self, i: u32) -> Result<Option<Fence>, fence::FenceError> {
        let a = &self.config.allocation;
        fence::decode(self.fence_raw(i), &[a.low, a.high])
    }

    /// The enabled, valid fences (invalid ones act as disabled).
    pub fn active_fences(&self) -> Vec<Fence> {
        (0..self.fence_limit())
            .filter_map(|i| self.fence(i).ok().flatten())
            .collect()
    }

    /// After a register write touched fence `i`: count it if it is enabled but invalid.
    pub(super) fn fence_written(&mut self, i: u32) {
        if i >= self.fence_limit() {
            return;
        }
        if let Err(e) = self.fence(i) {
            self.state.counters.fence_invalid += 1;
            let n = self.state.counters.fence_invalid;
            if should_log(n) {
                tracing::debug!(vgpu = self.config.id, fence = i, error = %e, count = n,
                    "invalid fence ignored");
            }
        }
    }

    /// Splits the aperture access of `len` bytes at GM `gm` into pieces that each reach
    /// one contiguous GM run inside one page, detiling through `fences` (§4.5). The flag
    /// says whether any piece went through a fence.
    fn aperture_pieces(&mut self, fences: &[Fence], gm: u64, len: usize) -> (Vec<Piece>, bool) {
        let mut out = Vec::new();
        let mut tiled = false;
        let mut done = 0usize;
        while done < len {
            let Some(src) = gm.checked_add(done as u64) else {
                out.push(Piece::Fail);
                break;
            };
            let left = len - done;
            let src_room = PAGE_SIZE - src % PAGE_SIZE;
            let hit = fences
                .iter()
                .find(|f| f.contains(src))
                .map(|f| f.detile(src));
            let (target, run) = match hit {
                None | Some(Detiled::Linear) => (src, src_room),
                Some(Detiled::Tiled { gm: t, run }) => {
                    tiled = true;
                    (t, run.min(src_room))
                }
                Some(Detiled::Outside) => {
                    self.state.counters.aperture_fence_outside += 1;
                    out.push(Piece::Fail);
                    break;
                }
            };
            let dst_room = PAGE_SIZE - target % PAGE_SIZE;
            let n = usize::try_from(run.min(dst_room)).map_or(left, |r| r.min(left));
            out.push(Piece::To(target, n));
            done += n;
        }
        (out, tiled)
    }

    /// BAR2 + `offset` → GM `offset` → (fence detiling) → guest RAM through the GGTT
    /// (§4.5). Only the vGPU's mappable window is backed; detiling stays inside the
    /// fenced range, which [`fence::decode`] keeps inside the vGPU's windows.
    pub(super) fn aperture(&mut self, offset: u64, read: Option<&mut [u8]>, write: Option<&[u8]>) {
        let len = read
            .as_ref()
            .map_or_else(|| write.map_or(0, |w| w.len()), |r| r.len());
        let low = self.config.allocation.low;
        let mut buf = [0u8; 8];
        let mut ok = len <= buf.len() && low.contains_range(offset, len as u64);
        if let (true, Some(w)) = (ok, write) {
            buf[..len].copy_from_slice(w);
        }
        let (pieces, detiled) = if ok {
            let fences = self.active_fences();
            self.aperture_pieces(&fences, offset, len)
        } else {
            (Vec::new(), false)
        };
        let mut done = 0usize;
        for p in pieces {
            let Piece::To(gm, n) = p else {
                ok = false;
                break;
            };
            let Some(slice) = buf.get_mut(done..done + n) else {
                ok = false;
                break;
            };
            ok = match self.state.ggtt.translate(gm) {
                Some(gpa) if read.is_some() => self.mem.read(gpa, slice).is_ok(),
                Some(gpa) => self.mem.write(gpa, slice).is_ok(),
                None => false,
            };
            if !ok {
                break;
            }
            done += n;
        }
        if ok {
            self.state.counters.aperture_accesses += 1;
            if detiled {
                self.state.counters.aperture_detiled += 1;
            }
        } else {
            self.state.counters.aperture_unmapped += 1;
            buf.fill(0xff);
        }
        if let Some(r) = read {
            if let Some(src) = buf.get(..r.len()) {
                r.copy_from_slice(src);
            } else {
                r.fill(0xff);
            }
        }
    }
}
