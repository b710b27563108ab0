//! The vGPU's display: MMIO in the display ranges goes to [`Display`], whose interrupt
//! events are latched into the DE pipe / DE port / SDE banks of the interrupt tree; the
//! vblank timer is driven by [`Vgpu::display_tick`]; the guest's framebuffer can be read
//! with [`Vgpu::scanout`].

use crate::display::fb::{read_plane, Frame};
use crate::display::{caps, Display, DisplayConfig, DisplayEvents, FbError, MonitorConfig};
use crate::effects::Effects;
use crate::irq::{self, IrqBank, IrqEvent};
use crate::regs::{byte_mask, RegisterFile};

use super::{Vgpu, VgpuConfig};

/// The display a freshly created vGPU of `config` gets: pipes fused off when headless,
/// otherwise the type's default monitor (see [`caps::default_monitor`]).
pub(super) fn new_display(config: &VgpuConfig, regs: &mut RegisterFile) -> Display {
    let d = Display::new(DisplayConfig {
        enabled: !config.headless,
        monitor: caps::default_monitor(config.allocation.low.size),
        gmbus_edid_pin: None,
    });
    let isr = IrqBank::Sde.base();
    regs.set(isr, regs.get(isr) | d.sde_live_status());
    d
}

impl Vgpu {
    /// Display MMIO read (the offset is in a display range).
    pub(super) fn display_read(&mut self, dw: u32) -> u32 {
        self.state.display.mmio_read(dw)
    }

    /// Display MMIO write with byte enables `be`.
    pub(super) fn display_write(&mut self, dw: u32, value: u32, be: u8, fx: &mut Effects) {
        let m = byte_mask(be);
        let merged = (self.state.display.peek(dw) & !m) | (value & m);
        let ev = self.state.display.mmio_write(dw, merged);
        self.apply_display_events(ev, fx);
    }

    /// Latches display interrupt events; sends an MSI if one is due. Returns whether an
    /// MSI was pushed.
    pub fn apply_display_events(&mut self, ev: DisplayEvents, fx: &mut Effects) -> bool {
        if ev.is_empty() {
            return false;
        }
        let regs = &mut self.state.regs;
        if let Some((mask, value)) = ev.sde_isr {
            let isr = IrqBank::Sde.base();
            regs.set(isr, (regs.get(isr) & !mask) | (value & mask));
        }
        let banks = [
            (IrqBank::DePipeA, ev.pipe_iir[0]),
            (IrqBank::DePipeB, ev.pipe_iir[1]),
            (IrqBank::DePipeC, ev.pipe_iir[2]),
            (IrqBank::DePort, ev.port_iir),
            (IrqBank::Sde, ev.sde_iir),
        ];
        let mut due = false;
        for (bank, bits) in banks {
            for bit in (0..32u8).filter(|b| bits & (1 << b) != 0) {
                due |= irq::raise(regs, IrqEvent { bank, bit });
            }
        }
        due && self.deliver(fx)
    }

    /// Advances the display's vblank timers to `now_ns` (monotonic) and raises the due
    /// vblank / flip-done interrupts. Returns whether an MSI was pushed.
    pub fn display_tick(&mut self, now_ns: u64, fx: &mut Effects) -> bool {
        let ev = self.state.display.tick(now_ns);
        self.apply_display_events(ev, fx)
    }

    /// When [`Vgpu::display_tick`] next has work, if any pipe is running.
    pub fn display_next_deadline_ns(&self) -> Option<u64> {
        self.state.display.next_deadline_ns()
    }

    /// The display model.
    pub fn display(&self) -> &Display {
        &self.state.display
    }

    /// Plugs or unplugs the virtual monitor (hot-plug interrupt).
    pub fn set_monitor_connected(&mut self, connected: bool, fx: &mut Effects) -> bool {
        let ev = self.state.display.set_connected(connected);
        self.apply_display_events(ev, fx)
    }

    /// Replaces the virtual monitor's mode (new EDID, hot-plug interrupt).
    pub fn set_monitor(
        &mut self,
        monitor: MonitorConfig,
        fx: &mut Effects,
    ) -> Result<bool, crate::display::MonitorConfigError> {
        let ev = self.state.display.set_monitor(monitor)?;
        Ok(self.apply_display_events(ev, fx))
    }

    /// Copies the guest's primary plane out of guest RAM through its GGTT (§7.3).
    pub fn scanout(&self) -> Result<Frame, FbError> {
        let info = self.state.display.primary_plane()?;
        read_plane(&info, &self.state.ggtt, self.mem.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::bus::{le_value, IoHandler, Space};
    use crate::effects::Effect;
    use crate::memory::{GuestMemory, VecMemory};
    use crate::partition::{Allocation, HostDescription, Partitioner, MIB};
    use crate::vgpu::DEFAULT_SBDF;

    const BAR0: u64 = 0xf000_0000;
    const CFG: u64 = (DEFAULT_SBDF as u64) << 32;

    fn vgpu(headless: bool) -> (Vgpu, Allocation) {
        let host = HostDescription::default();
        let a = Partitioner::new(host)
            .unwrap()
            .allocate(128 * MIB, 512 * MIB, 4)
            .unwrap();
        let mem: Arc<dyn GuestMemory> = Arc::new(VecMemory::new(16 * MIB));
        let mut c = VgpuConfig::new(1, "GVTg_V5_4", a, 4);
        c.headless = headless;
        let mut v = Vgpu::new(c, &host, mem);
        for (reg, val, len) in [
            (0x10, BAR0 as u32 | 4, 4),
            (0x04, 0x6, 2),
            (0xb0, 0xfee0_1004, 4),
            (0xb4, 0x26, 2),
            (0xae, 1, 2),
        ] {
            let b = u32::to_le_bytes(val);
            v.write(Space::PciConfig, CFG | reg, &b[..len], &mut Effects::new());
        }
        (v, a)
    }

    fn rd(v: &mut Vgpu, off: u32) -> u32 {
        let mut d = [0u8; 4];
        v.read(
            Space::Mmio,
            BAR0 + u64::from(off),
            &mut d,
            &mut Effects::new(),
        );
        le_value(&d) as u32
    }

    fn wr(v: &mut Vgpu, off: u32, val: u32) -> Effects {
        let mut fx = Effects::new();
        v.write(
            Space::Mmio,
            BAR0 + u64::from(off),
            &val.to_le_bytes(),
            &mut fx,
        );
        fx
    }

    fn msi(fx: &Effects) -> bool {
        fx.as_slice()
            .iter()
            .any(|e| matches!(e, Effect::InjectMsi { data: 0x26, .. }))
    }

    #[test]
    fn vblank_and_aux_interrupts_reach_the_guest_as_msi() {
        let (mut v, _) = vgpu(false);
        assert_eq!(rd(&mut v, 0x5_1000), 0, "pipes present");
        assert_eq!(
            rd(&mut v, 0xc_4000) & (1 << 23),
            1 << 23,
            "port D connected"
        );
        // gen8 postinstall: pipe A vblank and DE port AUX D enabled and unmasked.
        wr(&mut v, 0x4_440c, 1);
        wr(&mut v, 0x4_4404, !1);
        wr(&mut v, 0x4_444c, 1 << 27);
        wr(&mut v, 0x4_4444, !(1 << 27));
        wr(&mut v, 0x4_4200, 0x8000_0000);
        wr(&mut v, 0x7_0008, 1 << 31);
        assert_eq!(rd(&mut v, 0x7_0008), 0xc000_0000);
        let mut fx = Effects::new();
        assert!(!v.display_tick(10_000_000, &mut fx));
        assert_eq!(v.display_next_deadline_ns(), Some(16_666_666));
        assert!(v.display_tick(17_000_000, &mut fx) && msi(&fx));
        assert_eq!(rd(&mut v, 0x4_4408), 1, "DE pipe A IIR vblank");
        assert_eq!(rd(&mut v, 0x4_4200), 0x8001_0000, "MASTER pipe A summary");
        assert_eq!(rd(&mut v, 0x7_0040), 1, "PIPE_FRMCOUNT");
        wr(&mut v, 0x4_4408, 1);
        // AUX D native read of DPCD 0 with interrupt.
        wr(&mut v, 0x6_4314, 0x9000_0000);
        let fx = wr(&mut v, 0x6_4310, (1 << 31) | (1 << 29) | (4 << 20));
        assert!(msi(&fx));
        assert_eq!(rd(&mut v, 0x4_4448), 1 << 27);
        assert_eq!(rd(&mut v, 0x6_4314) >> 16, 0x0012, "ACK, DPCD rev 1.2");
        // Hot unplug: SDEISR follows, SDE IIR latches (unmask SDE bit 23 first).
        wr(&mut v, 0xc_400c, 1 << 23);
        wr(&mut v, 0xc_4004, !(1 << 23));
        let mut fx = Effects::new();
        assert!(v.set_monitor_connected(false, &mut fx));
        assert_eq!(rd(&mut v, 0xc_4000) & (1 << 23), 0);
        assert_eq!(rd(&mut v, 0xc_4008), 1 << 23);
    }

    #[test]
    fn headless_vgpu_fuses_pipes_and_keeps_power_well_echo() {
        let (mut v, _) = vgpu(true);
        assert_eq!(rd(&mut v, 0x5_1000), 0x5020_0000);
        assert_eq!(rd(&mut v, 0xc_4000), 0);
        wr(&mut v, 0x4_5404, 0x8000_0000);
        assert_eq!(rd(&mut v, 0x4_5404), 0xc000_0000);
        assert_eq!(rd(&mut v, 0x4_2000), 0x8e00_0000);
    }

    #[test]
    fn scanout_reads_the_plane_through_the_guest_ggtt() {
        let (mut v, a) = vgpu(false);
        // 64x16 XRGB8888 linear at the start of the low window: 1 page, PTE → frame 0x200.
        let pte = BAR0 + 0x80_0000 + (a.low.base >> 12) * 8;
        v.write(
            Space::Mmio,
            pte,
            &0x20_0001u64.to_le_bytes(),
            &mut Effects::new(),
        );
        v.mem()
            .write(0x20_0000 + 256 * 3 + 4 * 5, &[0x10, 0x20, 0x30, 0])
            .unwrap();
        wr(&mut v, 0x7_0008, 1 << 31);
        wr(&mut v, 0x7_0180, 0xc480_2000);
        wr(&mut v, 0x7_0188, 256 / 64);
        wr(&mut v, 0x7_0190, (15 << 16) | 63);
        wr(&mut v, 0x7_019c, u32::try_from(a.low.base).unwrap());
        let frame = v.scanout().unwrap();
        assert!(frame.report.is_complete());
        assert_eq!(frame.image.pixel(5, 3), Some([0x30, 0x20, 0x10, 0xff]));
        // Point the plane outside the vGPU's windows: nothing maps.
        wr(&mut v, 0x7_019c, 0);
        assert!(matches!(v.scanout(), Err(FbError::NothingMapped { .. })));
    }
}
