//! vGPU tests through the [`IoHandler`] interface, as a backend would drive it.

use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::bus::le_value;
use crate::irq::EngineIrq;
use crate::memory::VecMemory;
use crate::partition::{Partitioner, MIB};
use crate::pvinfo::G2vEvent;

pub(super) const BAR0: u64 = 0xf000_0000;
pub(super) const BAR2: u64 = 0xc000_0000;
const CFG: u64 = (DEFAULT_SBDF as u64) << 32;

fn host() -> HostDescription {
    HostDescription::default()
}

pub(super) fn make() -> (Vgpu, Allocation) {
    let mut p = Partitioner::new(host()).unwrap();
    let _ = p.allocate(64 * MIB, 64 * MIB, 2).unwrap(); // someone else first
    let a = p.allocate(128 * MIB, 512 * MIB, 4).unwrap();
    let mem: Arc<dyn GuestMemory> = Arc::new(VecMemory::new(64 * MIB));
    let v = Vgpu::new(VgpuConfig::new(2, "GVTg_V5_4", a, 4), &host(), mem);
    (v, a)
}

fn cfg_w(v: &mut Vgpu, reg: u64, val: u32, len: usize) -> Effects {
    let mut fx = Effects::new();
    v.write(
        Space::PciConfig,
        CFG | reg,
        &val.to_le_bytes()[..len],
        &mut fx,
    );
    fx
}

fn cfg_r(v: &mut Vgpu, reg: u64, len: usize) -> u64 {
    let mut d = vec![0u8; len];
    v.read(Space::PciConfig, CFG | reg, &mut d, &mut Effects::new());
    le_value(&d)
}

/// Programs the BARs and enables memory decode, as hvmloader does.
pub(super) fn enabled() -> (Vgpu, Allocation) {
    let (mut v, a) = make();
    cfg_w(&mut v, 0x10, BAR0 as u32 | 4, 4);
    cfg_w(&mut v, 0x18, BAR2 as u32 | 0xc, 4);
    let fx = cfg_w(&mut v, 0x04, 0x7, 2);
    assert_eq!(fx.as_slice().len(), 2, "BAR0 and BAR2 trapped");
    (v, a)
}

pub(super) fn rd(v: &mut Vgpu, addr: u64, len: usize) -> u64 {
    let mut d = vec![0u8; len];
    v.read(Space::Mmio, addr, &mut d, &mut Effects::new());
    le_value(&d)
}

pub(super) fn wr(v: &mut Vgpu, addr: u64, val: u64, len: usize) -> Effects {
    let mut fx = Effects::new();
    v.write(Space::Mmio, addr, &val.to_le_bytes()[..len], &mut fx);
    fx
}

#[test]
fn bar_sizing_through_config_accesses() {
    let (mut v, _) = make();
    let want = [
        (0x10, 0xff00_0004u64),
        (0x14, 0xffff_ffff),
        (0x18, 0xe000_000c), // 512 MiB aperture of the default host
        (0x1c, 0xffff_ffff),
        (0x20, 0),
        (0x24, 0),
    ];
    for (reg, expect) in want {
        cfg_w(&mut v, reg, 0xffff_ffff, 4);
        assert_eq!(cfg_r(&mut v, reg, 4), expect, "BAR at {reg:#x}");
    }
    // Another device's config space reads all-ones and is counted.
    let mut d = [0u8; 4];
    v.read(Space::PciConfig, 0x18u64 << 32, &mut d, &mut Effects::new());
    assert_eq!(d, [0xff; 4]);
    assert_eq!(v.counters().pci_other_device, 1);
}

#[test]
fn pvinfo_through_io_handler() {
    let (mut v, a) = enabled();
    let p = BAR0 + 0x7_8000;
    assert_eq!(rd(&mut v, p, 8), 0x4776_5447_7654_4776);
    let lo = rd(&mut v, p, 4);
    let hi = rd(&mut v, p + 4, 4);
    assert_eq!(lo | (hi << 32), 0x4776_5447_7654_4776);
    assert_eq!(rd(&mut v, p + 8, 2), 1, "version_major");
    assert_eq!(rd(&mut v, p + 0xa, 2), 0, "version_minor");
    assert_eq!(rd(&mut v, p + 0xc, 4), 2, "vgt_id");
    assert_eq!(rd(&mut v, p + 0x10, 4) & 0xc, 0xc, "caps bits 2 and 3");
    assert_eq!(rd(&mut v, p + 0x40, 4), a.low.base);
    assert_eq!(rd(&mut v, p + 0x44, 4), a.low.size);
    assert_eq!(rd(&mut v, p + 0x48, 4), a.high.base);
    assert_eq!(rd(&mut v, p + 0x4c, 4), a.high.size);
    assert_eq!(rd(&mut v, p + 0x50, 4), 4);
    assert!(v.state().pv_notified);
    // Read-only fields ignore writes.
    wr(&mut v, p + 0x10, 0, 4);
    assert_eq!(rd(&mut v, p + 0x10, 4), 0xc);
    assert!(v.counters().pvinfo_writes_dropped >= 1);
}

#[test]
fn ggtt_writes_outside_windows_are_counted_not_applied() {
    let (mut v, a) = enabled();
    let gtt = BAR0 + 0x80_0000;
    // Entry 0 (GM 0) is in the host reserve, not this vGPU's.
    wr(&mut v, gtt, 0x1001, 8);
    assert_eq!(v.counters().ggtt_dropped_outside, 1);
    assert_eq!(rd(&mut v, gtt, 8), 0);
    assert_eq!(v.ggtt().translate(0), None);
    // Inside the low window it is applied.
    let e = gtt + (a.low.base >> 12) * 8;
    wr(&mut v, e, 0x3001, 8);
    assert_eq!(v.counters().ggtt_writes_applied, 1);
    assert_eq!(rd(&mut v, e, 4), 0x3001);
    assert_eq!(v.ggtt().translate(a.low.base + 4), Some(0x3004));
    // A frame beyond guest RAM is not applied.
    wr(&mut v, e + 8, (1 << 32) | 1, 8);
    assert_eq!(v.counters().ggtt_dropped_not_owned, 1);
    // Aperture access reaches guest RAM through the GGTT.
    wr(&mut v, BAR2 + a.low.base + 0x10, 0xdead_beef, 4);
    assert_eq!(v.mem().read_u32(0x3010).unwrap(), 0xdead_beef);
    assert_eq!(rd(&mut v, BAR2 + a.low.base + 0x10, 4), 0xdead_beef);
    assert_eq!(rd(&mut v, BAR2, 4), 0xffff_ffff, "outside the vGPU's slice");
    assert_eq!(v.counters().aperture_unmapped, 1);
}

#[test]
fn interrupts_send_msi_only_when_enabled() {
    let (mut v, _) = enabled();
    wr(&mut v, BAR0 + 0x4_430c, 0x0909_0909, 4);
    wr(&mut v, BAR0 + 0x4_4304, !0x0909_0909u32 as u64, 4);
    wr(&mut v, BAR0 + 0x4_4200, 0x8000_0000, 4);
    let ev = IrqEvent::engine(EngineId::Rcs, EngineIrq::ContextSwitch);
    let mut fx = Effects::new();
    assert!(!v.raise_irq(ev, &mut fx), "MSI disabled");
    assert!(fx.is_empty());
    assert_eq!(v.counters().msi_suppressed, 1);
    cfg_w(&mut v, 0xb0, 0xfee0_1004, 4);
    cfg_w(&mut v, 0xb4, 0x26, 2);
    cfg_w(&mut v, 0xae, 1, 2);
    // Still pending: re-enabling MASTER re-fires.
    wr(&mut v, BAR0 + 0x4_4200, 0, 4);
    let fx = wr(&mut v, BAR0 + 0x4_4200, 0x8000_0000, 4);
    assert_eq!(
        fx.as_slice(),
        &[Effect::InjectMsi {
            addr: 0xfee0_1004,
            data: 0x26
        }]
    );
    assert_eq!(rd(&mut v, BAR0 + 0x4_4308, 4), 1 << 8);
    wr(&mut v, BAR0 + 0x4_4308, 1 << 8, 4);
    assert_eq!(rd(&mut v, BAR0 + 0x4_4200, 4), 0x8000_0000);
}

#[derive(Clone, Copy, Debug)]
enum Step {
    R(u64, usize, u64),
    W(u64, usize, u64),
}

/// Probe-time accesses from the recipe's ordered traces (nested-xen-hvm-i915.md,
/// Appendices C/D), with the answers i915 needs (§3.5 / recipe §5 "mode 1").
const PROBE: &[Step] = {
    use Step::*;
    &[
        R(0x7_8000, 8, 0x4776_5447_7654_4776), // #179 PVINFO magic
        R(0x7_8008, 2, 1),                     // #180 version_major
        R(0x7_8010, 4, 0xc),                   // #181 vgt_caps
        R(0x4_2300, 4, 0),                     // #182 FPGA_DBG
        R(0x5_1000, 4, 0x5020_0000),           // #183 SKL_DFSM headless
        R(0xc_6204, 4, 24),                    // #184 PCH_RAWCLK_FREQ
        R(0xa26c, 4, 0),                       // #185 CTC_MODE
        R(0x9120, 4, 0x0280_0000),             // #186 GEN8_FUSE2
        W(0x2098, 4, 0xffff_ffff),             // #187 RCS HWSTAM
        R(0x4094, 4, 0),                       // #191 ring fault
        R(0x2024, 4, 0),                       // #192 PGTBL_ER
        R(0x20b0, 4, 0),                       // #194 RCS EIR
        R(0x20d0, 4, 0),                       // #198 RCS RESET_CTL
        W(0x20d0, 4, 0x1_0001),                // #199 request reset
        R(0x20d0, 4, 0x3),                     // ready-to-reset
        W(0x220d0, 4, 0x1_0001),               // BCS
        R(0x220d0, 4, 0x3),
        W(0x941c, 4, 0x1),      // #227 GDRST full
        R(0x941c, 4, 0),        // #228 done
        W(0x20d0, 4, 0x1_0000), // #231 release
        R(0x20d0, 4, 0),
        R(0x12_0010, 4, 0),     // #235 EDRAM cap
        W(0x40e0, 4, 0x3_0907), // #237 PAT lo
        R(0x40e0, 4, 0x3_0907),
        R(0x7_8050, 4, 4),  // #239 fence_num
        W(0x10_0000, 4, 0), // #240 fence 0
        R(0x10_0000, 4, 0),
        W(0x10_0020, 4, 0x1234), // fence 4: beyond fence_num
        R(0x10_0020, 4, 0),
        W(0x4_5404, 4, 0x8000_0000), // #280 PWR_WELL_CTL2 request
        R(0x4_5404, 4, 0xc000_0000), // state follows (recipe §6)
        R(0x4_2000, 4, 0x8e00_0000), // #284 SKL_FUSE_STATUS
        W(0x4_4200, 4, 0),           // #325 MASTER_IRQ
        R(0x4_4200, 4, 0),
        W(0x4_4304, 4, 0xffff_ffff), // #327 GT0 IMR
        R(0x4_4304, 4, 0xffff_ffff),
        W(0x4_430c, 4, 0),           // GT0 IER
        W(0x4_4308, 4, 0xffff_ffff), // GT0 IIR
        R(0x4_4308, 4, 0),           // must read 0
        W(0xc_4008, 4, 0xffff_ffff), // SDE IIR
        R(0xc_4008, 4, 0),
        W(0x13_8128, 4, 0), // pcode DDCC read
        W(0x13_8124, 4, 0x8000_001a),
        R(0x13_8124, 4, 0),          // READY and error clear
        W(0x7_8838, 4, 0x0210_6000), // G2V PPGTT L4 create
        W(0x7_883c, 4, 0),
        W(0x7_8818, 4, 4),
        W(0x23a0, 4, 0xffff_0505), // CONTEXT_STATUS_PTR reset
        R(0x23a0, 4, 0x505),
        W(0x229c, 4, 0x8000_8000), // #722 RING_MODE execlists
        R(0x229c, 4, 0x8000),
        W(0x209c, 4, 0x0100_0000), // #723 MI_MODE clear STOP_RING
        R(0x209c, 4, 0x200),
        W(0x2080, 4, 0x4fff_e000), // #724 HWS_PGA
        R(0x2080, 4, 0x4fff_e000),
        W(0x20b4, 4, 0xffff_ffff), // EMR
        W(0x20b0, 4, 0xffff_ffff), // EIR
        R(0x20b8, 4, 0),           // ESR
        R(0x20b0, 4, 0),           // no "EIR stuck"
        W(0x2230, 4, 0),           // #730 ELSP ×4
        W(0x2230, 4, 0),
        W(0x2230, 4, 0x20),
        W(0x2230, 4, 0x4ffe_651d),
        W(0x941c, 4, 0x20), // #993 GuC domain reset
        R(0x941c, 4, 0),
        R(0xc000, 4, 1),            // MIA in reset
        R(0xc000, 4, 0),            // cleared by the read
        W(0x1209c, 4, 0x0100_0100), // #1006 VCS0 STOP_RING
        R(0x1209c, 4, 0x300),       // stop + idle
        W(0xa188, 4, 0x1_0001),     // forcewake GT
        R(0x13_0044, 4, 1),         // ack
        W(0x10_1008, 4, 1),         // GFX_FLSH_CNTL
        W(0x7_8804, 4, 1),          // display_ready
    ]
};

#[test]
fn replays_probe_expectations_from_recipe_traces() {
    let (mut v, _) = enabled();
    for (i, step) in PROBE.iter().enumerate() {
        match *step {
            Step::R(off, len, want) => {
                assert_eq!(rd(&mut v, BAR0 + off, len), want, "step {i}: R {off:#x}");
            }
            Step::W(off, len, val) => {
                wr(&mut v, BAR0 + off, val, len);
            }
        }
    }
    let events = v.take_events();
    let expect = [
        VgpuEvent::Reset {
            full: true,
            engines: [true; 4],
        },
        VgpuEvent::G2v(G2vEvent::PpgttL4Create { pml4: 0x0210_6000 }),
        VgpuEvent::ExeclistEnable {
            engine: EngineId::Rcs,
            enabled: true,
        },
        VgpuEvent::HwsPga {
            engine: EngineId::Rcs,
            gm: 0x4fff_e000,
        },
        VgpuEvent::ElspSubmit {
            engine: EngineId::Rcs,
            descs: [0x20_4ffe_651d, 0],
        },
        VgpuEvent::GgttFlush,
        VgpuEvent::DisplayReady(1),
    ];
    assert_eq!(events, expect);
    assert!(v.execlists_enabled(EngineId::Rcs));
    assert!(!v.state().failsafe);
    assert_eq!(v.counters().fence_out_of_range, 2);
}

#[test]
fn reset_and_state_round_trip() {
    let (mut v, _) = enabled();
    wr(&mut v, BAR0 + 0x1234, 0x55, 4);
    assert_eq!(v.counters().untracked_writes, 1);
    let s = serde_json::to_string(v.state()).unwrap();
    let restored: VgpuState = serde_json::from_str(&s).unwrap();
    let mut w = Vgpu::from_state(v.config().clone(), &host(), v.mem().clone(), restored);
    assert_eq!(
        rd(&mut w, BAR0 + 0x1234, 4),
        0x55,
        "routes follow restored BARs"
    );
    let mut fx = Effects::new();
    w.reset(&mut fx);
    assert_eq!(fx.as_slice().len(), 2, "both BARs untrapped");
    assert_eq!(
        rd(&mut w, BAR0 + 0x1234, 4),
        0xffff_ffff,
        "no longer decoded"
    );
    assert_eq!(w.take_events(), vec![VgpuEvent::DeviceReset]);
}

#[test]
fn rsv5_write_enters_failsafe() {
    let (mut v, _) = enabled();
    wr(&mut v, BAR0 + 0x7_8808, 1, 4);
    assert!(v.state().failsafe);
    assert_eq!(v.counters().failsafe_entries, 1);
    for _ in 0..4 {
        wr(&mut v, BAR0 + 0x2230, 0, 4);
    }
    assert_eq!(v.counters().elsp_submissions, 1);
    assert!(!v
        .take_events()
        .iter()
        .any(|e| matches!(e, VgpuEvent::ElspSubmit { .. })));
}

#[test]
fn odd_sizes_and_offsets_are_answered() {
    let (mut v, _) = enabled();
    let mut d = [0u8; 3];
    v.read(Space::Mmio, BAR0 + 0x7_8000, &mut d, &mut Effects::new());
    assert_eq!(d, [0xff; 3]);
    assert_eq!(
        rd(&mut v, BAR0 + 0x7_8002, 4),
        0xffff_ffff,
        "straddles a dword"
    );
    assert_eq!(rd(&mut v, BAR0 + 0x7_8001, 1), 0x47);
    assert_eq!(rd(&mut v, BAR0 + 0x30_0000, 4), 0, "unused BAR0 range");
    assert_eq!(
        rd(&mut v, BAR0 + 0x80_0002, 2),
        0xffff,
        "GGTT needs 4/8 aligned"
    );
    assert!(v.counters().unsupported_accesses >= 2);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn io_handler_never_panics(
        ops in proptest::collection::vec(
            (0u8..3, any::<bool>(), 0u64..0x1100_0000, 0usize..=16, any::<u64>()),
            1..64,
        )
    ) {
        let (mut v, _) = enabled();
        for (space, is_write, off, len, val) in ops {
            let (space, addr) = match space {
                0 => (Space::Mmio, BAR0.wrapping_add(off | 1)),
                1 => (Space::PciConfig, CFG | (off & 0x1fff)),
                _ => (Space::Mmio, BAR2.wrapping_add(off)),
            };
            let mut fx = Effects::new();
            let mut buf = vec![0u8; len];
            for (i, b) in buf.iter_mut().enumerate() {
                *b = (val >> ((i % 8) * 8)) as u8;
            }
            if is_write {
                v.write(space, addr, &buf, &mut fx);
            } else {
                v.read(space, addr, &mut buf, &mut fx);
            }
        }
    }
}
