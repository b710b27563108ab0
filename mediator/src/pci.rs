//! PCI configuration space of a Gen9 GT2 vGPU (spec §1.1–§1.5).
//!
//! 4 KiB of config space: a type-0 header, BAR0 (GTTMMADR, 16 MiB, 64-bit
//! non-prefetchable), BAR2 (GMADR aperture, host-sized, 64-bit prefetchable), BAR4/5
//! zero, the capability chain 34 → 70 (PCIe) → AC (MSI, 32-bit, one vector) → D0 (PM),
//! and the Intel registers GGC (50), BDSM (5C), SWSCI (E8), ASLS (FC).
//!
//! Writes go through per-byte writable and W1C masks; BAR and expansion-ROM dwords follow
//! the sizing protocol of §1.3. Whenever the memory-enable bit or a BAR address changes,
//! the config space recomputes which BAR ranges must be trapped and returns
//! [`Effect::Trap`]/[`Effect::Untrap`] for the difference: effects as data, nothing is
//! applied here.

use serde::{Deserialize, Serialize};

use crate::bus::{GuestRange, Space};
use crate::effects::{Effect, Effects};

/// Size of the config space.
pub const CONFIG_SIZE: usize = 4096;
/// BAR0 (GTTMMADR) size: 2 MiB MMIO, GGTT at +8 MiB.
pub const BAR0_SIZE: u64 = 16 << 20;
/// Intel's vendor id.
pub const VENDOR_INTEL: u16 = 0x8086;
/// SKL desktop GT2 ("HD Graphics 530"), the default device id.
pub const DEFAULT_DEVICE_ID: u16 = 0x1912;

/// Command register (16-bit).
pub const REG_COMMAND: usize = 0x04;
/// Status register (16-bit).
pub const REG_STATUS: usize = 0x06;
/// BAR0 low dword.
pub const REG_BAR0: usize = 0x10;
/// BAR2 low dword.
pub const REG_BAR2: usize = 0x18;
/// Expansion ROM BAR.
pub const REG_ROM: usize = 0x30;
/// Capability pointer.
pub const REG_CAP_PTR: usize = 0x34;
/// GGC / GMCH control (16-bit), §1.5.
pub const REG_GGC: usize = 0x50;
/// Base of stolen memory, §1.5.
pub const REG_BDSM: usize = 0x5c;
/// PCI Express capability.
pub const CAP_PCIE: usize = 0x70;
/// MSI capability.
pub const CAP_MSI: usize = 0xac;
/// Power-management capability.
pub const CAP_PM: usize = 0xd0;
/// Software SCI doorbell, §1.5.
pub const REG_SWSCI: usize = 0xe8;
/// OpRegion base (ASLS), §1.5.
pub const REG_ASLS: usize = 0xfc;

/// GGC value: GMS 0, GGMS 3 (8 MiB of PTEs = 4 GiB GGTT), VGA disable, lock.
pub const GGC_VALUE: u16 = 0x00c3;
const CMD_MEMORY: u16 = 1 << 1;

/// Which BAR a trapped range belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BarId {
    /// GTTMMADR: registers and GGTT.
    Bar0,
    /// GMADR: the aperture.
    Bar2,
}

/// An MSI message as the guest programmed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MsiMessage {
    /// Message address (32-bit capability).
    pub addr: u64,
    /// Message data.
    pub data: u32,
}

/// The vGPU's PCI configuration space. Plain data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PciConfig {
    bytes: Vec<u8>,
    aperture_size: u64,
    /// Ranges currently trapped, per BAR (index 0 = BAR0, 1 = BAR2).
    trapped: [Option<GuestRange>; 2],
    /// Set when the guest moved the device to D3hot (§1.3).
    pub d3_entered: bool,
}

fn put16(b: &mut [u8], off: usize, v: u16) {
    if let Some(s) = b.get_mut(off..off + 2) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}

fn put32(b: &mut [u8], off: usize, v: u32) {
    if let Some(s) = b.get_mut(off..off + 4) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}

fn get32(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 4)
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map_or(0, u32::from_le_bytes)
}

/// Writable mask of one config byte, per §1.1 and the capability layout.
fn writable(off: usize) -> u8 {
    match off {
        0x04 | 0x0c | 0x3c => 0xff,
        0x05 => 0x07,
        // MSI: control bit 0, 32-bit address (dword aligned), 16-bit data.
        0xae => 0x01,
        0xb0 => 0xfc,
        0xb1..=0xb5 => 0xff,
        // PM: PMCSR power state.
        0xd4 => 0x03,
        // ASLS and SWSCI are plain registers.
        0xe8..=0xeb | 0xfc..=0xff => 0xff,
        _ => 0,
    }
}

fn w1c(off: usize) -> u8 {
    if off == 0x07 {
        0xf9
    } else {
        0
    }
}

impl PciConfig {
    /// Config space of a vGPU with `device_id` and an aperture (BAR2) of
    /// `aperture_size` bytes (a power of two ≥ 16 MiB; other values are rounded up).
    pub fn new(device_id: u16, aperture_size: u64) -> Self {
        let aperture_size = aperture_size
            .max(16 << 20)
            .checked_next_power_of_two()
            .unwrap_or(1 << 63);
        let mut c = Self {
            bytes: vec![0; CONFIG_SIZE],
            aperture_size,
            trapped: [None, None],
            d3_entered: false,
        };
        c.reset_contents(device_id);
        c
    }

    fn reset_contents(&mut self, device_id: u16) {
        let b = &mut self.bytes;
        b.fill(0);
        put16(b, 0x00, VENDOR_INTEL);
        put16(b, 0x02, device_id);
        put16(b, REG_STATUS, 0x0010);
        // KBL (59xx) parts report revision 04, SKL 06 (§1.1).
        b[0x08] = if device_id & 0xff00 == 0x5900 {
            0x04
        } else {
            0x06
        };
        b[0x0b] = 0x03; // class 030000
        put32(b, REG_BAR0, 0x4);
        put32(b, REG_BAR2, 0xc);
        put16(b, 0x2c, VENDOR_INTEL);
        put16(b, 0x2e, 0x2010);
        b[REG_CAP_PTR] = CAP_PCIE as u8;
        b[0x3d] = 0x01;
        put16(b, REG_GGC, GGC_VALUE);
        // PCIe capability: version 2, root-complex integrated endpoint.
        b[CAP_PCIE] = 0x10;
        b[CAP_PCIE + 1] = CAP_MSI as u8;
        put16(b, CAP_PCIE + 2, 0x0092);
        // MSI: 32-bit, one vector, not maskable.
        b[CAP_MSI] = 0x05;
        b[CAP_MSI + 1] = CAP_PM as u8;
        // PM: version 2, ends the chain.
        b[CAP_PM] = 0x01;
        put16(b, CAP_PM + 2, 0x0002);
    }

    /// Device-model-level reset: everything back to reset values. Returns effects that
    /// untrap any trapped BAR.
    pub fn reset(&mut self, fx: &mut Effects) {
        let id = self.device_id();
        self.reset_contents(id);
        self.d3_entered = false;
        self.update_traps(fx);
    }

    /// PCI device id.
    pub fn device_id(&self) -> u16 {
        u16::from_le_bytes([self.bytes[0x02], self.bytes[0x03]])
    }

    /// BAR2 size.
    pub fn aperture_size(&self) -> u64 {
        self.aperture_size
    }

    /// The command register.
    pub fn command(&self) -> u16 {
        u16::from_le_bytes([self.bytes[REG_COMMAND], self.bytes[REG_COMMAND + 1]])
    }

    /// The OpRegion base the guest wrote to ASLS (0 until written).
    pub fn asls(&self) -> u32 {
        get32(&self.bytes, REG_ASLS)
    }

    fn bar_size(&self, bar: BarId) -> u64 {
        match bar {
            BarId::Bar0 => BAR0_SIZE,
            BarId::Bar2 => self.aperture_size,
        }
    }

    fn bar_reg(bar: BarId) -> usize {
        match bar {
            BarId::Bar0 => REG_BAR0,
            BarId::Bar2 => REG_BAR2,
        }
    }

    /// The address range a BAR decodes if it holds a real address (not the sizing
    /// pattern), regardless of memory enable.
    pub fn bar_range(&self, bar: BarId) -> Option<GuestRange> {
        let reg = Self::bar_reg(bar);
        let size = self.bar_size(bar);
        let lo = u64::from(get32(&self.bytes, reg) & 0xffff_fff0);
        let hi = u64::from(get32(&self.bytes, reg + 4));
        let low_mask = !(size - 1) & 0xffff_fff0;
        if lo & low_mask == low_mask && size < (1 << 32) {
            return None; // sizing pattern
        }
        let base = (hi << 32) | lo;
        if base == 0 {
            return None;
        }
        GuestRange::new(base, size)
    }

    /// The range currently trapped for `bar` (memory enabled and a real address).
    pub fn trapped(&self, bar: BarId) -> Option<GuestRange> {
        match bar {
            BarId::Bar0 => self.trapped[0],
            BarId::Bar2 => self.trapped[1],
        }
    }

    /// The MSI message to send, if MSI is enabled in the supported format (§1.4).
    pub fn msi(&self) -> Option<MsiMessage> {
        let ctrl = u16::from_le_bytes([self.bytes[CAP_MSI + 2], self.bytes[CAP_MSI + 3]]);
        if ctrl & 1 == 0 || ctrl & !1 != 0 {
            return None;
        }
        let addr = u64::from(get32(&self.bytes, CAP_MSI + 4));
        let data = u32::from(u16::from_le_bytes([
            self.bytes[CAP_MSI + 8],
            self.bytes[CAP_MSI + 9],
        ]));
        Some(MsiMessage { addr, data })
    }

    /// Reads `data.len()` bytes at `reg`. Accesses of 1..=4 bytes inside the space are
    /// served; anything else reads all-ones. Returns whether the access was supported.
    pub fn read(&self, reg: u64, data: &mut [u8]) -> bool {
        match self.span(reg, data.len()) {
            Some(r) => {
                data.copy_from_slice(&self.bytes[r]);
                true
            }
            None => {
                data.fill(0xff);
                false
            }
        }
    }

    fn span(&self, reg: u64, len: usize) -> Option<std::ops::Range<usize>> {
        if !(1..=4).contains(&len) {
            return None;
        }
        let start = usize::try_from(reg).ok()?;
        let end = start.checked_add(len)?;
        (end <= CONFIG_SIZE).then_some(start..end)
    }

    /// Writes `data` at `reg`, applying masks and the BAR protocol; pushes trap changes
    /// onto `fx`. Returns whether the access was supported.
    pub fn write(&mut self, reg: u64, data: &[u8], fx: &mut Effects) -> bool {
        let Some(r) = self.span(reg, data.len()) else {
            return false;
        };
        let start = r.start;
        for (i, &v) in data.iter().enumerate() {
            let off = start + i;
            match off {
                0x10..=0x27 | 0x30..=0x33 => {
                    // BAR and ROM dwords: merge the byte, apply the dword rule below.
                    self.bytes[off] = v;
                }
                _ => {
                    let old = self.bytes[off];
                    let wm = writable(off);
                    let mut new = (old & !wm) | (v & wm);
                    new &= !(v & w1c(off));
                    self.bytes[off] = new;
                }
            }
        }
        for dw in [0x10usize, 0x14, 0x18, 0x1c, 0x20, 0x24, 0x30] {
            if start < dw + 4 && dw < start + data.len() {
                self.fix_bar_dword(dw);
            }
        }
        if start <= CAP_PM + 4 && CAP_PM + 4 < start + data.len() && self.bytes[CAP_PM + 4] & 3 == 3
        {
            self.d3_entered = true;
        }
        self.update_traps(fx);
        true
    }

    /// Re-applies the BAR/ROM rule of §1.3 to a dword whose bytes were just written.
    fn fix_bar_dword(&mut self, dw: usize) {
        let v = get32(&self.bytes, dw);
        let fixed = match dw {
            0x10 => (v & !(BAR0_SIZE as u32 - 1) & 0xffff_fff0) | 0x4,
            0x18 => {
                let mask = if self.aperture_size >= (1 << 32) {
                    0
                } else {
                    !((self.aperture_size - 1) as u32) & 0xffff_fff0
                };
                (v & mask) | 0xc
            }
            0x14 | 0x1c => v,
            0x30 => {
                if v & 0xffff_f800 == 0xffff_f800 {
                    0
                } else {
                    v & 0xffff_f801
                }
            }
            _ => 0, // BAR4/5 (and BAR1/3 as high dwords above): BAR4/5 read back 0
        };
        put32(&mut self.bytes, dw, fixed);
    }

    /// Recomputes trapped BAR ranges and pushes the differences as effects.
    fn update_traps(&mut self, fx: &mut Effects) {
        let mem = self.command() & CMD_MEMORY != 0;
        for (i, bar) in [BarId::Bar0, BarId::Bar2].into_iter().enumerate() {
            let want = if mem { self.bar_range(bar) } else { None };
            let have = self.trapped[i];
            if want == have {
                continue;
            }
            if let Some(old) = have {
                fx.push(Effect::Untrap {
                    space: Space::Mmio,
                    range: old,
                });
            }
            if let Some(new) = want {
                fx.push(Effect::Trap {
                    space: Space::Mmio,
                    range: new,
                });
            }
            self.trapped[i] = want;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rd(c: &PciConfig, reg: u64, len: usize) -> u32 {
        let mut d = vec![0u8; len];
        assert!(c.read(reg, &mut d));
        crate::bus::le_value(&d) as u32
    }

    fn wr(c: &mut PciConfig, reg: u64, v: u32, len: usize) -> Effects {
        let mut fx = Effects::new();
        assert!(c.write(reg, &v.to_le_bytes()[..len], &mut fx));
        fx
    }

    #[test]
    fn header_identity() {
        let c = PciConfig::new(DEFAULT_DEVICE_ID, 256 << 20);
        assert_eq!(rd(&c, 0, 4), 0x1912_8086);
        assert_eq!(rd(&c, 8, 4), 0x0300_0006);
        assert_eq!(rd(&c, 0x06, 2) & 0x10, 0x10);
        assert_eq!(rd(&c, 0x50, 2), 0xc3);
        assert_eq!(rd(&c, 0x3d, 1), 1);
        let k = PciConfig::new(0x5912, 256 << 20);
        assert_eq!(rd(&k, 8, 1), 4);
    }

    #[test]
    fn bar_sizing_answers() {
        let mut c = PciConfig::new(DEFAULT_DEVICE_ID, 256 << 20);
        for (reg, want) in [
            (0x10, 0xff00_0004u32),
            (0x14, 0xffff_ffff),
            (0x18, 0xf000_000c),
            (0x1c, 0xffff_ffff),
            (0x20, 0),
            (0x24, 0),
            (0x30, 0),
        ] {
            wr(&mut c, reg, 0xffff_ffff, 4);
            assert_eq!(rd(&c, reg, 4), want, "reg {reg:#x}");
        }
        let mut big = PciConfig::new(DEFAULT_DEVICE_ID, 512 << 20);
        wr(&mut big, 0x18, 0xffff_ffff, 4);
        assert_eq!(rd(&big, 0x18, 4), 0xe000_000c);
    }

    #[test]
    fn memory_enable_traps_and_moves() {
        let mut c = PciConfig::new(DEFAULT_DEVICE_ID, 256 << 20);
        assert!(wr(&mut c, 0x10, 0xf000_0004, 4).is_empty());
        wr(&mut c, 0x14, 0, 4);
        wr(&mut c, 0x18, 0xe000_000c, 4);
        let fx = wr(&mut c, 0x04, 0x7, 2);
        let bar0 = GuestRange::new(0xf000_0000, BAR0_SIZE).unwrap();
        let bar2 = GuestRange::new(0xe000_0000, 256 << 20).unwrap();
        assert_eq!(
            fx.as_slice(),
            &[
                Effect::Trap {
                    space: Space::Mmio,
                    range: bar0
                },
                Effect::Trap {
                    space: Space::Mmio,
                    range: bar2
                }
            ]
        );
        // Sizing while enabled stops trapping BAR0; restoring re-arms it.
        let fx = wr(&mut c, 0x10, 0xffff_ffff, 4);
        assert_eq!(
            fx.as_slice(),
            &[Effect::Untrap {
                space: Space::Mmio,
                range: bar0
            }]
        );
        let fx = wr(&mut c, 0x10, 0xd000_0000, 4);
        let moved = GuestRange::new(0xd000_0000, BAR0_SIZE).unwrap();
        assert_eq!(
            fx.as_slice(),
            &[Effect::Trap {
                space: Space::Mmio,
                range: moved
            }]
        );
        let fx = wr(&mut c, 0x04, 0x0, 2);
        assert_eq!(fx.as_slice().len(), 2);
        assert_eq!(c.trapped(BarId::Bar0), None);
    }

    #[test]
    fn msi_capability() {
        let mut c = PciConfig::new(DEFAULT_DEVICE_ID, 256 << 20);
        assert_eq!(rd(&c, 0x34, 1), 0x70);
        assert_eq!(rd(&c, 0x71, 1), 0xac);
        assert_eq!(rd(&c, 0xac, 2), 0xd005);
        assert_eq!(rd(&c, 0xd0, 2), 0x0001);
        assert_eq!(c.msi(), None);
        wr(&mut c, 0xb0, 0xfee3_7000, 4);
        wr(&mut c, 0xb4, 0x0700, 2);
        assert_eq!(c.msi(), None);
        wr(&mut c, 0xae, 0xffff, 2);
        assert_eq!(rd(&c, 0xae, 2), 1, "only the enable bit is writable");
        assert_eq!(
            c.msi(),
            Some(MsiMessage {
                addr: 0xfee3_7000,
                data: 0x700
            })
        );
    }

    #[test]
    fn read_only_and_w1c_fields() {
        let mut c = PciConfig::new(DEFAULT_DEVICE_ID, 256 << 20);
        wr(&mut c, 0x00, 0xffff_ffff, 4);
        assert_eq!(rd(&c, 0, 4), 0x1912_8086);
        wr(&mut c, 0x04, 0xffff, 2);
        assert_eq!(rd(&c, 0x04, 2), 0x07ff);
        c.bytes[0x07] = 0xf9;
        wr(&mut c, 0x06, 0x0900_0000 >> 16, 2);
        assert_eq!(rd(&c, 0x07, 1), 0xf0);
        wr(&mut c, 0x50, 0xffff, 2);
        assert_eq!(rd(&c, 0x50, 2), 0xc3);
        wr(&mut c, 0xfc, 0xfdff_c000, 4);
        assert_eq!(c.asls(), 0xfdff_c000);
        wr(&mut c, 0xd4, 3, 1);
        assert!(c.d3_entered);
    }

    #[test]
    fn odd_accesses_are_refused() {
        let mut c = PciConfig::new(DEFAULT_DEVICE_ID, 256 << 20);
        let mut d = [0u8; 8];
        assert!(!c.read(0, &mut d));
        assert_eq!(d, [0xff; 8]);
        let mut d2 = [0u8; 2];
        assert!(!c.read(4095, &mut d2));
        assert!(!c.write(u64::MAX, &[0], &mut Effects::new()));
        assert!(!c.write(0, &[], &mut Effects::new()));
    }
}
