//! The MMIO side of a vGPU: region routing, the register path with side-effect dispatch,
//! the GGTT window and the aperture.

use crate::bus::{fill_unclaimed, le_value, set_le_value};
use crate::effects::Effects;
use crate::ggtt_ram::SyncScope;
use crate::irq;
use crate::mmio::gt::{FENCE_BASE, GDRST_FULL, GDRST_GUC, GUC_STATUS};
use crate::mmio::EngineId;
use crate::pvinfo::{self, PvinfoWrite};
use crate::regs::RegKind;

use super::{engine_index, ElspLatch, FailsafeReason, Region, Vgpu, VgpuEvent};

/// Splits a register access into (dword offset, byte shift, byte count) pieces: sizes
/// 1/2/4 inside one dword, or 8 at a dword-aligned offset. `None` if unsupported.
fn dword_pieces(offset: u64, len: usize) -> Option<Vec<(u32, u32, usize)>> {
    let off = u32::try_from(offset).ok()?;
    let within = off % 4;
    match len {
        1 | 2 | 4 if within as usize + len <= 4 => Some(vec![(off & !3, within * 8, len)]),
        8 if within == 0 => Some(vec![(off, 0, 4), (off.checked_add(4)?, 0, 4)]),
        _ => None,
    }
}

fn byte_enable(shift: u32, len: usize) -> u8 {
    let bits = ((1u16 << len) - 1) as u8;
    bits << (shift / 8)
}

impl Vgpu {
    pub(super) fn mmio_read(&mut self, addr: u64, data: &mut [u8]) {
        let Ok(r) = self.routes.resolve(addr, data.len()) else {
            self.state.counters.unsupported_accesses += 1;
            fill_unclaimed(data);
            return;
        };
        self.state.counters.mmio_reads += 1;
        match r.key {
            Region::Registers => self.reg_read(r.offset, data),
            Region::Unused => {
                self.state.counters.bar0_unused_accesses += 1;
                data.fill(0);
            }
            Region::GgttWindow => {
                self.state.counters.ggtt_reads += 1;
                if !self.state.ggtt.read(r.offset, data) {
                    self.state.counters.ggtt_dropped_bad_access += 1;
                }
            }
            Region::Aperture => self.aperture(r.offset, Some(data), None),
        }
    }

    pub(super) fn mmio_write(&mut self, addr: u64, data: &[u8], fx: &mut Effects) {
        let Ok(r) = self.routes.resolve(addr, data.len()) else {
            self.state.counters.unsupported_accesses += 1;
            return;
        };
        self.state.counters.mmio_writes += 1;
        match r.key {
            Region::Registers => self.reg_write(r.offset, data, fx),
            Region::Unused => self.state.counters.bar0_unused_accesses += 1,
            Region::GgttWindow => {
                let w = self.state.ggtt.write(r.offset, data, self.mem.as_ref());
                super::ram_path::count_ggtt_write(&mut self.state.counters, w);
            }
            Region::Aperture => self.aperture(r.offset, None, Some(data)),
        }
    }

    fn reg_read(&mut self, offset: u64, data: &mut [u8]) {
        let Some(pieces) = dword_pieces(offset, data.len()) else {
            self.state.counters.unsupported_accesses += 1;
            fill_unclaimed(data);
            return;
        };
        let mut value = 0u64;
        let mut pos = 0u32;
        for (dw, shift, len) in pieces {
            let v = u64::from(self.reg_read_dword(dw) >> shift);
            let mask = if len == 4 {
                0xffff_ffff
            } else {
                (1u64 << (len * 8)) - 1
            };
            value |= (v & mask) << pos;
            pos += 32;
        }
        set_le_value(data, value);
    }

    fn reg_read_dword(&mut self, dw: u32) -> u32 {
        if pvinfo::contains(dw) {
            self.state.pv_notified = true;
            self.state.counters.pvinfo_reads += 1;
            return self.state.regs.get(dw);
        }
        if crate::display::Display::handles(dw) {
            return self.display_read(dw);
        }
        if !self.fence_usable(dw) {
            self.state.counters.fence_out_of_range += 1;
            return 0;
        }
        let r = self.state.regs.read(&self.table, dw);
        if !r.tracked {
            self.state.counters.untracked_reads += 1;
        }
        if let RegKind::Timestamp { high } = r.kind {
            return self.timestamp_dword(high);
        }
        r.value
    }

    /// Fence dwords beyond `fence_num` are not usable; everything else is.
    fn fence_usable(&self, dw: u32) -> bool {
        let Some(rel) = dw.checked_sub(FENCE_BASE) else {
            return true;
        };
        rel >= 32 * 8 || rel / 8 < self.config.allocation.fences.count
    }

    fn reg_write(&mut self, offset: u64, data: &[u8], fx: &mut Effects) {
        let Some(pieces) = dword_pieces(offset, data.len()) else {
            self.state.counters.unsupported_accesses += 1;
            return;
        };
        let value = le_value(data);
        let mut fences: Vec<u32> = pieces
            .iter()
            .filter_map(|p| super::fence_path::fence_index(p.0))
            .collect();
        fences.dedup();
        for (i, (dw, shift, len)) in pieces.into_iter().enumerate() {
            let v = u32::try_from((value >> (32 * i)) & 0xffff_ffff).unwrap_or(0);
            self.reg_write_dword(dw, v << shift, byte_enable(shift, len), fx);
        }
        // Validated after the whole access, so a 64-bit write is judged as one value.
        for i in fences {
            self.fence_written(i);
        }
    }

    fn reg_write_dword(&mut self, dw: u32, value: u32, be: u8, fx: &mut Effects) {
        if pvinfo::contains(dw) {
            let merged = {
                let m = crate::regs::byte_mask(be);
                (self.state.regs.get(dw) & !m) | (value & m)
            };
            self.pvinfo_write(dw, merged, be);
            return;
        }
        if crate::display::Display::handles(dw) {
            self.display_write(dw, value, be, fx);
            return;
        }
        if !self.fence_usable(dw) {
            self.state.counters.fence_out_of_range += 1;
            if !self.state.pv_notified {
                self.enter_failsafe(FailsafeReason::FenceBeforePvinfo);
            }
            return;
        }
        let out = self.state.regs.write(&self.table, dw, value, be);
        if !out.tracked {
            self.state.counters.untracked_writes += 1;
        }
        match out.kind {
            RegKind::Irq if irq::after_write(&mut self.state.regs) => {
                self.deliver(fx);
            }
            RegKind::Gdrst => self.gdrst(out.value),
            RegKind::RingMode(e) => {
                let enabled = out.new & (1 << 15) != 0;
                let idx = engine_index(e);
                if enabled != self.state.execlists_enabled[idx] {
                    self.state.execlists_enabled[idx] = enabled;
                    if enabled && !self.state.pv_notified {
                        self.enter_failsafe(FailsafeReason::ExeclistsBeforePvinfo);
                    }
                    if !self.state.failsafe {
                        self.push_event(VgpuEvent::ExeclistEnable { engine: e, enabled });
                    }
                }
            }
            RegKind::Elsp(e) => self.elsp_write(e, out.value),
            RegKind::HwsPga(e) => self.push_event(VgpuEvent::HwsPga {
                engine: e,
                gm: out.new,
            }),
            RegKind::GgttFlush => {
                self.sync_ggtt(SyncScope::All);
                self.push_event(VgpuEvent::GgttFlush);
            }
            RegKind::Display => self.push_event(VgpuEvent::DisplayWrite {
                offset: dw,
                value: out.new,
            }),
            _ => {}
        }
    }

    fn pvinfo_write(&mut self, dw: u32, merged: u32, be: u8) {
        match pvinfo::write(&mut self.state.regs, dw, merged, be) {
            PvinfoWrite::Stored => {}
            PvinfoWrite::DisplayReady(v) => self.push_event(VgpuEvent::DisplayReady(v)),
            PvinfoWrite::G2v(ev) => {
                self.state.counters.g2v_notifications += 1;
                self.push_event(VgpuEvent::G2v(ev));
            }
            PvinfoWrite::Failsafe => {
                self.state.counters.pvinfo_writes_dropped += 1;
                self.enter_failsafe(FailsafeReason::InsufficientResource);
            }
            PvinfoWrite::Dropped => self.state.counters.pvinfo_writes_dropped += 1,
        }
    }

    fn enter_failsafe(&mut self, why: FailsafeReason) {
        if !self.state.failsafe {
            self.state.failsafe = true;
            self.state.counters.failsafe_entries += 1;
            tracing::warn!(vgpu = self.config.id, ?why, "vGPU entered failsafe mode");
            self.push_event(VgpuEvent::Failsafe(why));
        }
    }

    /// ELSP four-write protocol (§5.3): write k goes to slot 3 − k.
    fn elsp_write(&mut self, e: EngineId, value: u32) {
        let latch = &mut self.state.elsp[engine_index(e)];
        let slot = 3 - usize::from(latch.index & 3);
        latch.slots[slot] = value;
        latch.index = (latch.index + 1) & 3;
        if latch.index != 0 {
            return;
        }
        let s = latch.slots;
        let descs = [
            u64::from(s[0]) | (u64::from(s[1]) << 32),
            u64::from(s[2]) | (u64::from(s[3]) << 32),
        ];
        self.state.counters.elsp_submissions += 1;
        self.sync_ggtt(SyncScope::Windows);
        if !self.state.failsafe {
            self.push_event(VgpuEvent::ElspSubmit { engine: e, descs });
        }
    }

    /// GEN6_GDRST write (§3.5, §3.9). An engine reset restores the engine's register
    /// block, ELSP latch and execlist mode; a full reset also restores all MMIO below
    /// MASTER_IRQ (44200) from the reset values, as GVT restores it from its snapshot.
    /// Interrupt, display, fence and PVINFO registers and the GGTT are untouched.
    fn gdrst(&mut self, value: u32) {
        self.state.counters.resets_requested += 1;
        let full = value & GDRST_FULL != 0;
        if full {
            self.state.regs.reset(&self.table, 0..irq::MASTER_IRQ);
        }
        let mut engines = [false; 4];
        for e in EngineId::ALL {
            if full || value & e.gdrst_bit() != 0 {
                let i = engine_index(e);
                engines[i] = true;
                self.state.elsp[i] = ElspLatch::default();
                self.state.execlists_enabled[i] = false;
                self.state
                    .regs
                    .reset(&self.table, e.base()..e.base() + 0x1000);
            }
        }
        if value & GDRST_GUC != 0 {
            let v = self.state.regs.get(GUC_STATUS);
            self.state.regs.set(GUC_STATUS, v | 1);
        }
        if full || engines.iter().any(|&b| b) {
            self.push_event(VgpuEvent::Reset { full, engines });
        }
    }
}
