//! One Gen9 vGPU device instance.
//!
//! A [`Vgpu`] answers every guest access routed to it through [`IoHandler`]:
//! * [`Space::PciConfig`] for its own SBDF (others read all-ones, writes ignored);
//! * [`Space::Mmio`] inside the BARs the guest programmed, routed by an internal
//!   [`Bus<Region>`] that follows the config space: BAR0 [0, 2 MiB) registers, BAR0
//!   [2 MiB, 8 MiB) unused (reads 0, writes dropped), BAR0 [8 MiB, 16 MiB) the GGTT PTE
//!   window, BAR2 the aperture (through the guest GGTT to guest RAM).
//!
//! Anything else (other spaces, unclaimed addresses, sizes other than 1/2/4/8, accesses
//! straddling regions) reads all-ones, is ignored on write, and is counted. No guest
//! value can make it panic.
//!
//! The device state is the plain-data [`VgpuState`] (serde), so it can be saved and
//! restored. Work for other subsystems is queued as [`VgpuEvent`]s.

mod clock_regs;
mod display_path;
mod events;
mod fence_path;
mod mmio_path;
mod ram_path;

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use events::{FailsafeReason, VgpuEvent, MAX_QUEUED_EVENTS};

use crate::bus::{AccessRules, Bus, GuestRange, IoHandler, Space};
use crate::counters::VgpuCounters;
use crate::effects::{Effect, Effects};
use crate::ggtt::{Ggtt, GGTT_BAR_OFFSET, GGTT_WINDOW_SIZE};
use crate::ggtt_ram::{GgttBacking, RamGgtt};
use crate::irq::{self, IrqEvent};
use crate::memory::GuestMemory;
use crate::mmio::{self, EngineId, MmioParams};
use crate::partition::{Allocation, HostDescription};
use crate::pci::{BarId, PciConfig};
use crate::pvinfo::{self, PvinfoParams};
use crate::regs::{RegTable, RegisterFile, MMIO_SIZE};

/// PCI SBDF 0000:00:02.0, where i915 expects the iGPU.
pub const DEFAULT_SBDF: u32 = 0x10;

/// Static description of one vGPU.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VgpuConfig {
    /// Instance id, ≥ 1 (PVINFO `vgt_id`).
    pub id: u32,
    /// vGPU type name (e.g. `GVTg_V5_4`).
    pub type_name: String,
    /// Windows and fences from the partitioner.
    pub allocation: Allocation,
    /// PCI device id.
    pub device_id: u16,
    /// PCI segment/bus/device/function (`seg << 16 | bus << 8 | dev << 3 | fn`).
    pub sbdf: u32,
    /// PVINFO `vgt_caps`.
    pub caps: u32,
    /// Report all pipes fused off (headless probe).
    pub headless: bool,
    /// Scheduler weight.
    pub weight: u32,
    /// How the GGTT PTE window is backed ([`crate::ggtt_ram`]): trapped (default) or
    /// guest RAM (HVM guests running i915).
    #[serde(default)]
    pub ggtt_backing: GgttBacking,
}

impl VgpuConfig {
    /// A config with the default device id, SBDF 00:02.0, caps 0x0C and headless.
    pub fn new(id: u32, type_name: &str, allocation: Allocation, weight: u32) -> Self {
        Self {
            id,
            type_name: type_name.to_string(),
            allocation,
            device_id: crate::pci::DEFAULT_DEVICE_ID,
            sbdf: DEFAULT_SBDF,
            caps: pvinfo::DEFAULT_CAPS,
            headless: true,
            weight,
            ggtt_backing: GgttBacking::Trapped,
        }
    }

    fn pvinfo(&self) -> PvinfoParams {
        let w = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        let a = &self.allocation;
        PvinfoParams {
            vgt_id: self.id,
            caps: self.caps,
            mappable: (w(a.low.base), w(a.low.size)),
            nonmappable: (w(a.high.base), w(a.high.size)),
            fence_num: a.fences.count,
        }
    }
}

/// The ELSP four-write latch of one engine (§5.3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElspLatch {
    /// Dwords in slot order (slot = 3 − write index).
    pub slots: [u32; 4],
    /// Next write index, 0..=3.
    pub index: u8,
}

/// Everything that changes while a vGPU runs. Plain data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VgpuState {
    /// PCI config space.
    pub pci: PciConfig,
    /// The 2 MiB vreg array (registers, interrupt tree, PVINFO page).
    pub regs: RegisterFile,
    /// Guest GGTT.
    pub ggtt: Ggtt,
    /// ELSP latches, indexed like [`EngineId::ALL`].
    pub elsp: [ElspLatch; 4],
    /// RING_MODE RUN_LIST_ENABLE per engine, indexed like [`EngineId::ALL`].
    pub execlists_enabled: [bool; 4],
    /// The guest has read PVINFO (it knows it is a vGPU).
    pub pv_notified: bool,
    /// Failsafe mode (§2): execlist events are no longer produced.
    pub failsafe: bool,
    /// Counters.
    pub counters: VgpuCounters,
    /// Events not yet taken.
    pub events: VecDeque<VgpuEvent>,
    /// The display engine (display MMIO ranges, vblank timers, virtual monitor).
    pub display: crate::display::Display,
}

/// What an internal route leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Region {
    Registers,
    Unused,
    GgttWindow,
    Aperture,
}

/// One vGPU device instance.
pub struct Vgpu {
    config: VgpuConfig,
    aperture_size: u64,
    table: RegTable,
    mem: Arc<dyn GuestMemory>,
    state: VgpuState,
    routes: Bus<Region>,
    /// The RAM-backed PTE window, while populated (RAM mode only).
    ram_ggtt: Option<RamGgtt>,
    /// Origin of RING_TIMESTAMP.
    epoch: std::time::Instant,
}

impl fmt::Debug for Vgpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vgpu")
            .field("config", &self.config)
            .field("counters", &self.state.counters)
            .finish_non_exhaustive()
    }
}

pub(crate) fn engine_index(e: EngineId) -> usize {
    e.index()
}

impl Vgpu {
    /// A vGPU in its reset state, with guest RAM `mem`.
    pub fn new(config: VgpuConfig, host: &HostDescription, mem: Arc<dyn GuestMemory>) -> Self {
        let table = mmio::gen9_table(&MmioParams {
            headless: config.headless,
        });
        let state = Self::fresh_state(&config, host.aperture_size, &table);
        Self {
            aperture_size: host.aperture_size,
            table,
            mem,
            state,
            routes: Bus::new(),
            ram_ggtt: None,
            epoch: std::time::Instant::now(),
            config,
        }
    }

    /// A vGPU restored from saved state (routes follow the saved config space).
    pub fn from_state(
        config: VgpuConfig,
        host: &HostDescription,
        mem: Arc<dyn GuestMemory>,
        state: VgpuState,
    ) -> Self {
        let mut v = Self::new(config, host, mem);
        v.state = state;
        v.rebuild_routes();
        v.restore_ram_ggtt();
        v
    }

    fn fresh_state(config: &VgpuConfig, aperture: u64, table: &RegTable) -> VgpuState {
        let mut regs = RegisterFile::with_reset(table);
        pvinfo::populate(&mut regs, &config.pvinfo());
        let display = display_path::new_display(config, &mut regs);
        VgpuState {
            pci: PciConfig::new(config.device_id, aperture),
            regs,
            ggtt: Ggtt::new(config.allocation.low, config.allocation.high),
            elsp: [ElspLatch::default(); 4],
            execlists_enabled: [false; 4],
            pv_notified: false,
            failsafe: false,
            counters: VgpuCounters::default(),
            events: VecDeque::new(),
            display,
        }
    }

    /// Device-model-level reset (e.g. on guest reboot): config space, registers, GGTT and
    /// execlist latches back to reset values; counters kept. Pushes untrap effects for
    /// mapped BARs and queues [`VgpuEvent::DeviceReset`].
    pub fn reset(&mut self, fx: &mut Effects) {
        let counters = self.state.counters;
        let before = self.state.pci.trapped(BarId::Bar0);
        let mut local = Effects::new();
        self.state.pci.reset(&mut local);
        self.route_bar_effects(before, local, fx);
        self.release_ram_ggtt(fx);
        let mut fresh = Self::fresh_state(&self.config, self.aperture_size, &self.table);
        fresh.counters = counters;
        self.state = fresh;
        self.rebuild_routes();
        self.push_event(VgpuEvent::DeviceReset);
    }

    /// The static description.
    pub fn config(&self) -> &VgpuConfig {
        &self.config
    }

    /// The saved-able state.
    pub fn state(&self) -> &VgpuState {
        &self.state
    }

    /// Counters.
    pub fn counters(&self) -> &VgpuCounters {
        &self.state.counters
    }

    /// The register file (for subsystems that own register state, e.g. CSB entries).
    pub fn regs(&self) -> &RegisterFile {
        &self.state.regs
    }

    /// Mutable register file.
    pub fn regs_mut(&mut self) -> &mut RegisterFile {
        &mut self.state.regs
    }

    /// The register table in use.
    pub fn reg_table(&self) -> &RegTable {
        &self.table
    }

    /// The guest GGTT.
    pub fn ggtt(&self) -> &Ggtt {
        &self.state.ggtt
    }

    /// Mutable guest GGTT (e.g. to take the dirty log).
    pub fn ggtt_mut(&mut self) -> &mut Ggtt {
        &mut self.state.ggtt
    }

    /// The config space.
    pub fn pci(&self) -> &PciConfig {
        &self.state.pci
    }

    /// Guest RAM.
    pub fn mem(&self) -> &Arc<dyn GuestMemory> {
        &self.mem
    }

    /// Whether guest-physical `addr` lies in one of the vGPU's MMIO regions (a BAR the
    /// guest enabled). An MMIO request outside them is not the vGPU's register space.
    pub fn claims_mmio(&self, addr: u64) -> bool {
        !matches!(
            self.routes.resolve(addr, 1),
            Err(crate::bus::BusError::Unclaimed { .. })
        )
    }

    /// Whether RING_MODE enabled execlists on `e`.
    pub fn execlists_enabled(&self, e: EngineId) -> bool {
        self.state.execlists_enabled[engine_index(e)]
    }

    /// Removes and returns the queued events, oldest first.
    pub fn take_events(&mut self) -> Vec<VgpuEvent> {
        self.state.events.drain(..).collect()
    }

    pub(crate) fn push_event(&mut self, ev: VgpuEvent) {
        if self.state.events.len() >= MAX_QUEUED_EVENTS {
            self.state.counters.events_dropped += 1;
            return;
        }
        self.state.events.push_back(ev);
    }

    /// Raises an interrupt event; if one is due and MSI is enabled, pushes
    /// [`Effect::InjectMsi`]. Returns whether an MSI was pushed.
    pub fn raise_irq(&mut self, ev: IrqEvent, fx: &mut Effects) -> bool {
        if irq::raise(&mut self.state.regs, ev) {
            self.deliver(fx)
        } else {
            false
        }
    }

    /// Sends the MSI if the capability is enabled; counts either way.
    pub(crate) fn deliver(&mut self, fx: &mut Effects) -> bool {
        match self.state.pci.msi() {
            Some(m) => {
                fx.push(Effect::InjectMsi {
                    addr: m.addr,
                    data: m.data,
                });
                self.state.counters.msi_injected += 1;
                true
            }
            None => {
                self.state.counters.msi_suppressed += 1;
                false
            }
        }
    }

    /// Re-derives the internal routes from the BARs the config space traps.
    fn rebuild_routes(&mut self) {
        let mut bus = Bus::new();
        if let Some(bar0) = self.state.pci.trapped(BarId::Bar0) {
            let base = bar0.base();
            // In RAM mode the PTE window is guest RAM, not routed here.
            let ptes = if self.config.ggtt_backing == GgttBacking::Trapped {
                GGTT_WINDOW_SIZE
            } else {
                0
            };
            let parts = [
                (0, u64::from(MMIO_SIZE), Region::Registers, AccessRules::ANY),
                (
                    u64::from(MMIO_SIZE),
                    GGTT_BAR_OFFSET - u64::from(MMIO_SIZE),
                    Region::Unused,
                    AccessRules::ANY,
                ),
                (GGTT_BAR_OFFSET, ptes, Region::GgttWindow, AccessRules::ANY),
            ];
            for (off, len, region, rules) in parts {
                if let Some(r) = base.checked_add(off).and_then(|b| GuestRange::new(b, len)) {
                    let _ = bus.insert(r, rules, region);
                }
            }
        }
        if let Some(bar2) = self.state.pci.trapped(BarId::Bar2) {
            // A guest may program overlapping BARs; the first registration wins.
            let _ = bus.insert(bar2, AccessRules::ANY, Region::Aperture);
        }
        self.routes = bus;
    }

    fn pci_access(
        &mut self,
        addr: u64,
        read: Option<&mut [u8]>,
        write: Option<&[u8]>,
        fx: &mut Effects,
    ) {
        let sbdf = addr >> 32;
        let reg = addr & 0xffff_ffff;
        if sbdf != u64::from(self.config.sbdf) {
            self.state.counters.pci_other_device += 1;
            if let Some(d) = read {
                d.fill(0xff);
            }
            return;
        }
        let ok = if let Some(d) = read {
            self.state.counters.pci_reads += 1;
            self.state.pci.read(reg, d)
        } else if let Some(d) = write {
            self.state.counters.pci_writes += 1;
            let before = self.state.pci.trapped(BarId::Bar0);
            let mut local = Effects::new();
            let ok = self.state.pci.write(reg, d, &mut local);
            self.route_bar_effects(before, local, fx);
            self.rebuild_routes();
            ok
        } else {
            true
        };
        if !ok {
            self.state.counters.unsupported_accesses += 1;
        }
    }
}

impl IoHandler for Vgpu {
    fn read(&mut self, space: Space, addr: u64, data: &mut [u8], fx: &mut Effects) {
        match space {
            Space::PciConfig => self.pci_access(addr, Some(data), None, fx),
            Space::Mmio => self.mmio_read(addr, data),
            Space::Pio => {
                self.state.counters.unsupported_accesses += 1;
                data.fill(0xff);
            }
        }
    }

    fn write(&mut self, space: Space, addr: u64, data: &[u8], fx: &mut Effects) {
        match space {
            Space::PciConfig => self.pci_access(addr, None, Some(data), fx),
            Space::Mmio => self.mmio_write(addr, data, fx),
            Space::Pio => self.state.counters.unsupported_accesses += 1,
        }
    }
}

#[cfg(test)]
mod fence_tests;
#[cfg(test)]
mod tests;
