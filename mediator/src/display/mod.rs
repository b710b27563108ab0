//! The Gen9 display engine as a vGPU guest sees it (`gen9-vgpu.md` §7, §3.6, Appendix A).
//!
//! [`Display`] owns the display MMIO ranges ([`Display::handles`]): a table-driven register
//! file ([`regs`]) with the side effects of §7.6, a vblank timer per pipe driven by the
//! caller's clock ([`Display::tick`]), and a virtual DisplayPort monitor on DDI D (DPCD,
//! AUX, I2C-over-AUX EDID, hot plug; [`dp`], [`edid`]), plus GMBUS ([`gmbus`]). It raises
//! interrupts by returning [`DisplayEvents`]; the vGPU's interrupt tree latches them (DE
//! pipe / DE port / SDE banks, IMR gating, MSI). It knows nothing about the vGPU's other
//! parts, and its state is plain data (serde).
//!
//! [`fb`] decodes the guest's primary plane into an RGBA image through a caller-provided
//! GGTT lookup ([`fb::GttLookup`]) and guest memory; [`png`] writes it out. [`caps`]
//! describes the display each vGPU type offers.

pub mod caps;
pub mod cursor;
pub mod dp;
pub mod edid;
pub mod fb;
mod fb_read;
pub mod gmbus;
pub mod monitor;
pub mod png;
pub mod regfile;
pub mod regs;
mod side;
pub mod vblank;

#[cfg(test)]
mod fb_tests;
#[cfg(test)]
mod scanout_tests;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};
use tracing::{debug, info};

pub use self::caps::{DisplayCaps, PlaneInterface};
pub use self::fb::{FbError, GttLookup, PlaneInfo};
pub use self::monitor::{MonitorConfig, MonitorConfigError};

use self::dp::DpSink;
use self::gmbus::Gmbus;
use self::regfile::RegFile;
use self::regs::*;
use self::vblank::PipeTimer;

/// SDE (south display) IIR / ISR bit for port D hot plug.
pub const SDE_PORT_D_HOTPLUG: u32 = 1 << 23;
/// SDE IIR bit for GMBUS.
pub const SDE_GMBUS: u32 = 1 << 17;
/// AUX channel of port D.
pub const AUX_CH_D: u32 = 3;

/// Interrupt work a display access or tick produced, for the vGPU's interrupt tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisplayEvents {
    /// DE pipe IIR bits to raise for pipes A, B, C (bit 0 vblank, 3 / 4 flip done).
    pub pipe_iir: [u32; NUM_PIPES],
    /// DE port IIR bits to raise (AUX done: A bit 0, B 25, C 26, D 27).
    pub port_iir: u32,
    /// SDE IIR bits to raise (hot plug port D bit 23, GMBUS bit 17).
    pub sde_iir: u32,
    /// New live hot-plug status for SDEISR: `(mask, value)` to merge, if it changed.
    pub sde_isr: Option<(u32, u32)>,
}

impl DisplayEvents {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Adds `other`'s events to these.
    pub fn merge(&mut self, other: DisplayEvents) {
        for (a, b) in self.pipe_iir.iter_mut().zip(other.pipe_iir) {
            *a |= b;
        }
        self.port_iir |= other.port_iir;
        self.sde_iir |= other.sde_iir;
        if other.sde_isr.is_some() {
            self.sde_isr = other.sde_isr;
        }
    }
}

/// How a vGPU's display is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisplayConfig {
    /// Pipes present (SKL_DFSM 0) or fused off (headless, SKL_DFSM 5020_0000).
    pub enabled: bool,
    /// The virtual monitor's preferred mode.
    pub monitor: MonitorConfig,
    /// GMBUS pin on which the EDID is also served (`None`: every GMBUS slave NAKs, §7.5).
    pub gmbus_edid_pin: Option<u8>,
}

impl Default for DisplayConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            monitor: MonitorConfig::default(),
            gmbus_edid_pin: None,
        }
    }
}

/// Per-vGPU display counters (tests and operators read them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisplayCounters {
    /// Emulated vblanks delivered (interrupt events, not frames).
    pub vblanks: u64,
    /// Primary and sprite flips (PLANE_SURF writes).
    pub flips: u64,
    /// AUX transactions run.
    pub aux_transactions: u64,
    /// AUX transactions on channels without a sink (timed out).
    pub aux_timeouts: u64,
    /// GMBUS cycles answered with NAK.
    pub gmbus_naks: u64,
    /// Writes refused (plane scaling) or to read-only registers.
    pub refused_writes: u64,
    /// Hot-plug events raised.
    pub hotplugs: u64,
    /// PIPECONF writes that enabled a pipe.
    pub pipe_enables: u64,
}

/// The pipe whose PIPEDSL is at `off`.
fn pipedsl_pipe(off: u32) -> Option<usize> {
    (0..NUM_PIPES).find(|&p| {
        u32::try_from(p)
            .ok()
            .and_then(|p| p.checked_mul(PIPE_STRIDE))
            .and_then(|b| PIPEDSL.checked_add(b))
            == Some(off)
    })
}

/// Rate limit for logs a guest can trigger: the first few, then every power of two.
fn should_log(count: u64) -> bool {
    count <= 4 || count.is_power_of_two()
}

/// The display engine of one vGPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Display {
    config: DisplayConfig,
    regs: RegFile,
    sink: DpSink,
    edid: Vec<u8>,
    connected: bool,
    gmbus: Gmbus,
    timers: [PipeTimer; NUM_PIPES],
    now_ns: u64,
    counters: DisplayCounters,
    /// PIPEDSL reads per pipe (each read moves the scanline on by one line).
    #[serde(default)]
    dsl_reads: [u32; NUM_PIPES],
}

impl Default for Display {
    fn default() -> Self {
        Self::new(DisplayConfig::default())
    }
}

impl Display {
    /// A display in its reset state: everything off, port D connected (§7.5 recommended).
    /// An invalid monitor mode falls back to [`MonitorConfig::default`].
    pub fn new(config: DisplayConfig) -> Self {
        let mut config = config;
        if config.monitor.validate().is_err() {
            config.monitor = MonitorConfig::default();
        }
        let mut d = Self {
            config,
            regs: RegFile::default(),
            sink: DpSink::new(),
            edid: Vec::new(),
            connected: true,
            gmbus: Gmbus::new(config.gmbus_edid_pin),
            timers: [PipeTimer::default(); NUM_PIPES],
            now_ns: 0,
            counters: DisplayCounters::default(),
            dsl_reads: [0; NUM_PIPES],
        };
        d.reset();
        d
    }

    /// Display reset: registers, sink, GMBUS and timers back to their initial state. The
    /// connection state and counters are kept.
    pub fn reset(&mut self) {
        self.regs.clear();
        if !self.config.enabled {
            self.regs.set(SKL_DFSM, DFSM_HEADLESS);
        }
        self.sink = DpSink::new();
        self.gmbus = Gmbus::new(self.config.gmbus_edid_pin);
        self.edid = edid::build(&self.config.monitor)
            .map(|e| e.to_vec())
            .unwrap_or_default();
        for t in &mut self.timers {
            t.stop();
        }
    }

    /// Whether BAR0 offset `offset` belongs to the display (route it here).
    pub fn handles(offset: u32) -> bool {
        in_display_ranges(offset)
    }

    /// The configuration this display was built with.
    pub fn config(&self) -> &DisplayConfig {
        &self.config
    }

    /// Counters.
    pub fn counters(&self) -> &DisplayCounters {
        &self.counters
    }

    /// The EDID the monitor serves.
    pub fn edid(&self) -> &[u8] {
        &self.edid
    }

    /// The DP sink (DPCD) on port D.
    pub fn sink(&self) -> &DpSink {
        &self.sink
    }

    /// SDEISR live hot-plug bits this display asserts (port D bit 23 while connected).
    /// The interrupt tree merges them into SDEISR at reset and on [`DisplayEvents::sde_isr`].
    pub fn sde_live_status(&self) -> u32 {
        if self.connected && self.config.enabled {
            SDE_PORT_D_HOTPLUG
        } else {
            0
        }
    }

    /// A register value without read side effects (for decoding and state dumps).
    pub fn peek(&self, offset: u32) -> u32 {
        let off = offset & !3;
        match off {
            DPLL_STATUS => side::dpll_status(&self.regs),
            _ => self.regs.get(off),
        }
    }

    /// The time of the earliest pending vblank, if any pipe is running.
    pub fn next_deadline_ns(&self) -> Option<u64> {
        self.timers.iter().filter_map(|t| t.next_ns).min()
    }

    /// Guest MMIO read of the dword at `offset` (low two bits ignored).
    pub fn mmio_read(&mut self, offset: u32) -> u32 {
        let off = offset & !3;
        match off {
            GMBUS2 => self.gmbus.read_gmbus2(),
            GMBUS3 => match self.gmbus.read_gmbus3(&self.edid) {
                Some(v) => v,
                None => self.regs.get(off),
            },
            _ => match pipedsl_pipe(off).and_then(|p| self.scanline(p)) {
                Some(line) => line,
                None => self.peek(off),
            },
        }
    }

    /// PIPEDSL of a running pipe: the line the time since its last vblank gives (in
    /// VTOTAL lines), plus one line per read. i915 treats a DDI pipe's scanline 0 as
    /// "maybe just before vblank" and re-reads it up to 100 times with interrupts off, in
    /// every vblank timestamp; at ~1.4 ms per trapped read a constant 0 livelocks a
    /// nested guest in its vblank handler (issue 8). `None` while the pipe is off (the
    /// stored value, 0, then says the scanline stopped, as i915 expects).
    fn scanline(&mut self, pipe: usize) -> Option<u32> {
        let t = self.timers.get(pipe)?;
        let next = t.next_ns?;
        let period = t.period_ns();
        let b = u32::try_from(pipe).ok()?.checked_mul(PIPE_STRIDE)?;
        let vtotal = u64::from((self.regs.get(VTOTAL.checked_add(b)?) >> 16) & 0x1FFF) + 1;
        let into = period.saturating_sub(next.saturating_sub(self.now_ns));
        let line = into.checked_mul(vtotal)?.checked_div(period)?;
        let reads = self.dsl_reads.get_mut(pipe)?;
        *reads = reads.wrapping_add(1);
        u32::try_from(line.checked_add(u64::from(*reads))? % vtotal).ok()
    }

    /// Guest MMIO write of the dword at `offset` (low two bits ignored).
    pub fn mmio_write(&mut self, offset: u32, value: u32) -> DisplayEvents {
        let off = offset & !3;
        let mut ev = DisplayEvents::default();
        if !Self::handles(off) {
            return ev;
        }
        if let Some(ch) = aux_channel(off) {
            self.aux_write(ch, value, &mut ev);
            return ev;
        }
        match off {
            GMBUS0 | GMBUS1 | GMBUS2 => self.gmbus_write(off, value, &mut ev),
            _ => {
                let (old, new) = self.regs.guest_write(off, value);
                if lookup(off).writable == 0 && value != old {
                    self.counters.refused_writes += 1;
                    if should_log(self.counters.refused_writes) {
                        debug!(offset = off, value, "write to read-only display register");
                    }
                }
                self.after_write(off, old, new, value, &mut ev);
            }
        }
        ev
    }

    /// Advances the vblank timers to `now_ns` (a monotonic clock, e.g. the daemon's): each
    /// enabled pipe whose vblank is due advances PIPE_FRMCOUNT and raises vblank plus any
    /// queued flip-done.
    pub fn tick(&mut self, now_ns: u64) -> DisplayEvents {
        self.now_ns = self.now_ns.max(now_ns);
        let mut ev = DisplayEvents::default();
        for (p, t) in self.timers.iter_mut().enumerate() {
            if let Some(f) = t.advance(self.now_ns) {
                let fc = PIPE_FRMCOUNT + p as u32 * PIPE_STRIDE;
                self.regs.set(fc, self.regs.get(fc).wrapping_add(f.frames));
                if let Some(bits) = ev.pipe_iir.get_mut(p) {
                    *bits |= f.iir;
                }
                self.counters.vblanks += 1;
            }
        }
        ev
    }

    /// Plugs or unplugs the monitor on port D: live status, PCH_PORT_HOTPLUG port D status
    /// (long pulse) and the SDE hot-plug interrupt.
    pub fn set_connected(&mut self, connected: bool) -> DisplayEvents {
        self.connected = connected;
        info!(connected, "virtual monitor on port D hot-plugged");
        self.regs.update(PCH_PORT_HOTPLUG, 0x3_0000, 0x3_0000);
        self.counters.hotplugs += 1;
        DisplayEvents {
            sde_iir: SDE_PORT_D_HOTPLUG,
            sde_isr: Some((SDE_PORT_D_HOTPLUG, self.sde_live_status())),
            ..DisplayEvents::default()
        }
    }

    /// Replaces the monitor (new EDID) and signals a hot plug so the guest re-probes.
    pub fn set_monitor(
        &mut self,
        monitor: MonitorConfig,
    ) -> Result<DisplayEvents, MonitorConfigError> {
        monitor.validate()?;
        self.config.monitor = monitor;
        self.edid = edid::build(&monitor)
            .map(|e| e.to_vec())
            .unwrap_or_default();
        Ok(self.set_connected(true))
    }

    fn aux_write(&mut self, ch: u32, value: u32, ev: &mut DisplayEvents) {
        let sink = (ch == AUX_CH_D && self.connected && self.config.enabled)
            .then_some((&mut self.sink, self.edid.as_slice()));
        let out = dp::aux_ctl_write(&mut self.regs, ch, value, sink);
        if out.transacted {
            self.counters.aux_transactions += 1;
        }
        if out.timed_out {
            self.counters.aux_timeouts += 1;
            if should_log(self.counters.aux_timeouts) {
                debug!(channel = ch, "AUX transaction without a sink timed out");
            }
        }
        ev.port_iir |= out.port_iir;
    }

    fn gmbus_write(&mut self, off: u32, value: u32, ev: &mut DisplayEvents) {
        self.regs.guest_write(off, value);
        let nak = match off {
            GMBUS0 => self.gmbus.write_gmbus0(value),
            GMBUS1 => self.gmbus.write_gmbus1(value, self.regs.get(GMBUS3)),
            _ => {
                self.gmbus.write_gmbus2(value);
                false
            }
        };
        if nak && off == GMBUS1 {
            self.counters.gmbus_naks += 1;
            if should_log(self.counters.gmbus_naks) {
                debug!(value, "GMBUS cycle NAKed: no DDC device");
            }
        }
        if off == GMBUS1 && value & gmbus::SW_RDY != 0 && self.regs.get(GMBUS4) != 0 {
            ev.sde_iir |= SDE_GMBUS;
        }
    }

    fn after_write(&mut self, off: u32, old: u32, new: u32, value: u32, ev: &mut DisplayEvents) {
        let Some((pipe, reg)) = side::per_pipe(off) else {
            side::global(&mut self.regs, off, new);
            return;
        };
        let b = pipe * PIPE_STRIDE;
        let p = pipe as usize;
        if reg == PIPECONF {
            self.pipeconf(pipe, new);
        } else if reg == PS_CTRL || reg == PS_CTRL + 0x100 {
            if side::ps_ctrl(&mut self.regs, off, old, value) {
                self.counters.refused_writes += 1;
                if should_log(self.counters.refused_writes) {
                    debug!(pipe, value, "plane scaling refused");
                }
            }
        } else if let Some(n) = side::plane_surf(reg) {
            let q = b + (n - 1) * PLANE_STRIDE_REGS;
            self.regs.set(PLANE_SURFLIVE + q, new);
            let bit = match n {
                1 => vblank::PLANE1_FLIP_DONE,
                2 => vblank::PLANE2_FLIP_DONE,
                _ => return,
            };
            self.counters.flips += 1;
            if n == 1 {
                let fc = PIPE_FLIPCOUNT + b;
                self.regs.set(fc, self.regs.get(fc).wrapping_add(1));
            }
            let Some(t) = self.timers.get_mut(p) else {
                return;
            };
            if self.regs.get(PLANE_CTL + q) & (1 << 9) != 0 {
                if let Some(bits) = ev.pipe_iir.get_mut(p) {
                    *bits |= bit;
                }
            } else {
                t.pending_flips |= bit;
            }
        }
    }

    fn pipeconf(&mut self, pipe: u32, new: u32) {
        let off = PIPECONF + pipe * PIPE_STRIDE;
        let rate = vblank::refresh_from_regs(&self.regs, pipe)
            .unwrap_or(u64::from(self.config.monitor.refresh) * 1000);
        let Some(t) = self.timers.get_mut(pipe as usize) else {
            return;
        };
        if new & (1 << 31) != 0 {
            self.regs.set(off, new | (1 << 30));
            t.start(self.now_ns, rate);
            self.counters.pipe_enables += 1;
            if should_log(self.counters.pipe_enables) {
                debug!(
                    pipe,
                    refresh_mhz = rate,
                    "pipe enabled, vblank timer running"
                );
            }
        } else {
            self.regs.set(off, new & !(1 << 30));
            t.stop();
        }
    }
}

/// The AUX channel whose CTL register is at `offset`.
fn aux_channel(offset: u32) -> Option<u32> {
    (0..NUM_AUX).find(|&ch| dp::aux_ctl(ch) == offset)
}
