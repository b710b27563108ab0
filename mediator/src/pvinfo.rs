//! The PVINFO page (`struct vgt_if`, spec §2) at MMIO 78000–78FFF.
//!
//! The page lives in the vGPU's [`RegisterFile`] (as in GVT); this module writes its
//! reset contents and applies the guest-write acceptance rules:
//! * accepted: `display_ready`, `g2v_notify`, the cursor hot spots, `pdp[0..3]` and the
//!   legacy context-descriptor fields;
//! * a write to `rsv5` (808–817) requests failsafe mode;
//! * anything else is dropped.
//!
//! A `g2v_notify` write is decoded into a [`G2vEvent`] carrying the PDPs the guest wrote
//! first. Reads need no rules beyond "any read sets `pv_notified`", which the vGPU tracks.

use serde::{Deserialize, Serialize};

use crate::regs::RegisterFile;

/// First byte of the page.
pub const PVINFO_BASE: u32 = 0x7_8000;
/// Size of the page.
pub const PVINFO_SIZE: u32 = 0x1000;
/// `magic`: the bytes spell `vGTvGTvG`.
pub const VGT_MAGIC: u64 = 0x4776_5447_7654_4776;
/// `VGT_CAPS_FULL_PPGTT`.
pub const CAP_FULL_PPGTT: u32 = 1 << 2;
/// `VGT_CAPS_HWSP_EMULATION`.
pub const CAP_HWSP_EMULATION: u32 = 1 << 3;
/// `VGT_CAPS_HUGE_GTT`.
pub const CAP_HUGE_GTT: u32 = 1 << 4;
/// Recommended caps (§2): full PPGTT and HWSP emulation, no huge pages.
pub const DEFAULT_CAPS: u32 = CAP_FULL_PPGTT | CAP_HWSP_EMULATION;

/// Page offsets of the fields.
pub mod off {
    /// `magic` (u64).
    pub const MAGIC: u32 = 0x000;
    /// `version_major` (u16) and `version_minor` (u16).
    pub const VERSION: u32 = 0x008;
    /// `vgt_id`.
    pub const VGT_ID: u32 = 0x00c;
    /// `vgt_caps`.
    pub const CAPS: u32 = 0x010;
    /// `avail_rs.mappable_gmadr.base`.
    pub const MAP_BASE: u32 = 0x040;
    /// `avail_rs.mappable_gmadr.size`.
    pub const MAP_SIZE: u32 = 0x044;
    /// `avail_rs.nonmappable_gmadr.base`.
    pub const UNMAP_BASE: u32 = 0x048;
    /// `avail_rs.nonmappable_gmadr.size`.
    pub const UNMAP_SIZE: u32 = 0x04c;
    /// `avail_rs.fence_num`.
    pub const FENCE_NUM: u32 = 0x050;
    /// `display_ready`.
    pub const DISPLAY_READY: u32 = 0x804;
    /// First byte of `rsv5`.
    pub const RSV5: u32 = 0x808;
    /// Last byte of `rsv5`.
    pub const RSV5_END: u32 = 0x817;
    /// `g2v_notify`.
    pub const G2V_NOTIFY: u32 = 0x818;
    /// `cursor_x_hot`.
    pub const CURSOR_X_HOT: u32 = 0x830;
    /// `cursor_y_hot`.
    pub const CURSOR_Y_HOT: u32 = 0x834;
    /// `pdp[0].lo`; `pdp[i].lo` at `PDP + 8·i`, `.hi` 4 bytes later.
    pub const PDP: u32 = 0x838;
    /// `execlist_context_descriptor_lo`.
    pub const CTX_DESC_LO: u32 = 0x858;
    /// `execlist_context_descriptor_hi`.
    pub const CTX_DESC_HI: u32 = 0x85c;
}

/// What the host writes into the page at reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PvinfoParams {
    /// vGPU instance id (≥ 1).
    pub vgt_id: u32,
    /// `vgt_caps`.
    pub caps: u32,
    /// Mappable (low GM) window base and size.
    pub mappable: (u32, u32),
    /// Non-mappable (high GM) window base and size.
    pub nonmappable: (u32, u32),
    /// Usable fence registers.
    pub fence_num: u32,
}

/// A decoded guest-to-host notification (§2, `g2v_notify`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum G2vEvent {
    /// Code 2: a 3-level PPGTT with these four page directories was created.
    PpgttL3Create {
        /// `pdp[0..3]`.
        pdps: [u64; 4],
    },
    /// Code 3: that 3-level PPGTT was destroyed.
    PpgttL3Destroy {
        /// `pdp[0..3]`.
        pdps: [u64; 4],
    },
    /// Code 4: a 4-level PPGTT with this PML4 was created (the usual case on Gen9).
    PpgttL4Create {
        /// `pdp[0]`.
        pml4: u64,
    },
    /// Code 5: that 4-level PPGTT was destroyed.
    PpgttL4Destroy {
        /// `pdp[0]`.
        pml4: u64,
    },
    /// Code 6 (legacy, ignored by GVT): execlist context created.
    ExeclistContextCreate {
        /// The descriptor at 858/85C.
        desc: u64,
    },
    /// Code 7 (legacy, ignored by GVT): execlist context destroyed.
    ExeclistContextDestroy {
        /// The descriptor at 858/85C.
        desc: u64,
    },
    /// Code 1 (legacy, ignored) or an unknown code (error log only).
    Other(u32),
}

/// The result of a guest write into the page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PvinfoWrite {
    /// Stored (cursor hot spot, PDP, descriptor).
    Stored,
    /// `display_ready` written with this value (1 = ready).
    DisplayReady(u32),
    /// `g2v_notify` written.
    G2v(G2vEvent),
    /// `rsv5` written: the guest reports insufficient resources; enter failsafe.
    Failsafe,
    /// Not a guest-writable field; dropped.
    Dropped,
}

/// Whether a BAR0 offset lies in the page.
pub fn contains(offset: u32) -> bool {
    (PVINFO_BASE..PVINFO_BASE + PVINFO_SIZE).contains(&offset)
}

/// Writes the reset contents of the page into `regs` (everything else in it becomes 0).
pub fn populate(regs: &mut RegisterFile, p: &PvinfoParams) {
    for o in (0..PVINFO_SIZE).step_by(4) {
        regs.set(PVINFO_BASE + o, 0);
    }
    let set = |regs: &mut RegisterFile, o: u32, v: u32| regs.set(PVINFO_BASE + o, v);
    set(regs, off::MAGIC, VGT_MAGIC as u32);
    set(regs, off::MAGIC + 4, (VGT_MAGIC >> 32) as u32);
    set(regs, off::VERSION, 1); // major 1, minor 0
    set(regs, off::VGT_ID, p.vgt_id);
    set(regs, off::CAPS, p.caps);
    set(regs, off::MAP_BASE, p.mappable.0);
    set(regs, off::MAP_SIZE, p.mappable.1);
    set(regs, off::UNMAP_BASE, p.nonmappable.0);
    set(regs, off::UNMAP_SIZE, p.nonmappable.1);
    set(regs, off::FENCE_NUM, p.fence_num);
    set(regs, off::DISPLAY_READY, 0);
    set(regs, off::CURSOR_X_HOT, u32::MAX);
    set(regs, off::CURSOR_Y_HOT, u32::MAX);
}

fn field(regs: &RegisterFile, o: u32) -> u32 {
    regs.get(PVINFO_BASE + o)
}

fn pair(regs: &RegisterFile, lo: u32) -> u64 {
    u64::from(field(regs, lo)) | (u64::from(field(regs, lo + 4)) << 32)
}

/// The four PDP values the guest last wrote.
pub fn pdps(regs: &RegisterFile) -> [u64; 4] {
    [0u32, 1, 2, 3].map(|i| pair(regs, off::PDP + 8 * i))
}

/// Applies a guest write of `value` (a dword with unwritten bytes already merged from
/// storage) to the dword at BAR0 `offset` inside the page, under the acceptance rules.
/// `byte_enable` bit n = byte n was written (used for the `rsv5` rule).
pub fn write(regs: &mut RegisterFile, offset: u32, value: u32, byte_enable: u8) -> PvinfoWrite {
    let o = offset.wrapping_sub(PVINFO_BASE) & !3;
    let first_byte = (0..4u32)
        .find(|i| byte_enable & (1 << i) != 0)
        .map_or(o, |i| o + i);
    if (off::RSV5..=off::RSV5_END).contains(&first_byte) {
        return PvinfoWrite::Failsafe;
    }
    match o {
        off::DISPLAY_READY => {
            regs.set(offset & !3, value);
            PvinfoWrite::DisplayReady(value)
        }
        off::G2V_NOTIFY => {
            regs.set(offset & !3, value);
            PvinfoWrite::G2v(decode_g2v(regs, value))
        }
        off::CURSOR_X_HOT | off::CURSOR_Y_HOT => {
            regs.set(offset & !3, value);
            PvinfoWrite::Stored
        }
        o if (off::PDP..=off::CTX_DESC_HI).contains(&o) => {
            regs.set(offset & !3, value);
            PvinfoWrite::Stored
        }
        _ => PvinfoWrite::Dropped,
    }
}

fn decode_g2v(regs: &RegisterFile, code: u32) -> G2vEvent {
    let pdps = pdps(regs);
    let desc = pair(regs, off::CTX_DESC_LO);
    match code {
        2 => G2vEvent::PpgttL3Create { pdps },
        3 => G2vEvent::PpgttL3Destroy { pdps },
        4 => G2vEvent::PpgttL4Create { pml4: pdps[0] },
        5 => G2vEvent::PpgttL4Destroy { pml4: pdps[0] },
        6 => G2vEvent::ExeclistContextCreate { desc },
        7 => G2vEvent::ExeclistContextDestroy { desc },
        other => G2vEvent::Other(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> PvinfoParams {
        PvinfoParams {
            vgt_id: 3,
            caps: DEFAULT_CAPS,
            mappable: (0x0800_0000, 0x0800_0000),
            nonmappable: (0x4000_0000, 0x2000_0000),
            fence_num: 4,
        }
    }

    #[test]
    fn reset_contents() {
        let mut r = RegisterFile::new();
        r.set(PVINFO_BASE + 0x100, 9);
        populate(&mut r, &params());
        let f = |o| r.get(PVINFO_BASE + o);
        assert_eq!(u64::from(f(0)) | (u64::from(f(4)) << 32), VGT_MAGIC);
        assert_eq!(f(off::VERSION), 1);
        assert_eq!(f(off::VGT_ID), 3);
        assert_eq!(f(off::CAPS) & 0xc, 0xc);
        assert_eq!(f(off::MAP_BASE), 0x0800_0000);
        assert_eq!(f(off::UNMAP_SIZE), 0x2000_0000);
        assert_eq!(f(off::FENCE_NUM), 4);
        assert_eq!(f(off::CURSOR_X_HOT), u32::MAX);
        assert_eq!(f(off::CURSOR_Y_HOT), u32::MAX);
        assert_eq!(f(0x100), 0);
    }

    #[test]
    fn acceptance_rules() {
        let mut r = RegisterFile::new();
        populate(&mut r, &params());
        let b = PVINFO_BASE;
        assert_eq!(write(&mut r, b + off::MAGIC, 0, 0xf), PvinfoWrite::Dropped);
        assert_eq!(r.get(b), VGT_MAGIC as u32);
        assert_eq!(write(&mut r, b + off::CAPS, 0, 0xf), PvinfoWrite::Dropped);
        assert_eq!(write(&mut r, b + 0x808, 1, 0xf), PvinfoWrite::Failsafe);
        assert_eq!(write(&mut r, b + 0x814, 1, 0x8), PvinfoWrite::Failsafe);
        assert_eq!(
            write(&mut r, b + off::DISPLAY_READY, 1, 0xf),
            PvinfoWrite::DisplayReady(1)
        );
        assert_eq!(
            write(&mut r, b + off::CURSOR_X_HOT, 5, 0xf),
            PvinfoWrite::Stored
        );
        assert_eq!(r.get(b + off::CURSOR_X_HOT), 5);
        assert_eq!(write(&mut r, b + 0x900, 5, 0xf), PvinfoWrite::Dropped);
    }

    #[test]
    fn g2v_codes_decode_with_pdps() {
        let mut r = RegisterFile::new();
        populate(&mut r, &params());
        let b = PVINFO_BASE;
        write(&mut r, b + off::PDP, 0x0210_6000, 0xf);
        write(&mut r, b + off::PDP + 4, 0x1, 0xf);
        assert_eq!(
            write(&mut r, b + off::G2V_NOTIFY, 4, 0xf),
            PvinfoWrite::G2v(G2vEvent::PpgttL4Create {
                pml4: 0x1_0210_6000
            })
        );
        assert_eq!(
            write(&mut r, b + off::G2V_NOTIFY, 5, 0xf),
            PvinfoWrite::G2v(G2vEvent::PpgttL4Destroy {
                pml4: 0x1_0210_6000
            })
        );
        for i in 0..4u32 {
            write(&mut r, b + off::PDP + 8 * i, 0x1000 * (i + 1), 0xf);
            write(&mut r, b + off::PDP + 8 * i + 4, 0, 0xf);
        }
        assert_eq!(
            write(&mut r, b + off::G2V_NOTIFY, 2, 0xf),
            PvinfoWrite::G2v(G2vEvent::PpgttL3Create {
                pdps: [0x1000, 0x2000, 0x3000, 0x4000]
            })
        );
        write(&mut r, b + off::CTX_DESC_LO, 0x119, 0xf);
        assert_eq!(
            write(&mut r, b + off::G2V_NOTIFY, 6, 0xf),
            PvinfoWrite::G2v(G2vEvent::ExeclistContextCreate { desc: 0x119 })
        );
        assert_eq!(
            write(&mut r, b + off::G2V_NOTIFY, 9, 0xf),
            PvinfoWrite::G2v(G2vEvent::Other(9))
        );
    }
}
