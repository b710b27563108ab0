//! GMBUS, the display engine's I2C controller (C5100–C5120, §7.5).
//!
//! The only sink is the DP monitor on port D, whose EDID i915 reads over AUX, so by default
//! every GMBUS slave answers "no device" (NAK, GMBUS2 bit 10), which i915 reports as "no DDC
//! device" without falling back to bit-banging. [`Gmbus::edid_pin`] can name one pin on which
//! slave 50 serves the EDID (index and plain reads, 4 bytes per GMBUS3 read) for guests that
//! probe DDC over GMBUS.

use serde::{Deserialize, Serialize};

use super::dp::EDID_I2C_ADDR;

/// GMBUS1 bit 31: software clear interrupt (reset the controller when it falls).
pub const SW_CLR_INT: u32 = 1 << 31;
/// GMBUS1 bit 30: software ready (start the cycle).
pub const SW_RDY: u32 = 1 << 30;
/// GMBUS1 cycle field: index cycle.
pub const CYCLE_INDEX: u32 = 2;
/// GMBUS1 cycle field: wait (no stop).
pub const CYCLE_WAIT: u32 = 1;
/// GMBUS1 cycle field: stop.
pub const CYCLE_STOP: u32 = 4;
/// GMBUS2: in use.
pub const INUSE: u32 = 1 << 15;
/// GMBUS2: hardware wait phase.
pub const HW_WAIT_PHASE: u32 = 1 << 14;
/// GMBUS2: hardware ready.
pub const HW_RDY: u32 = 1 << 11;
/// GMBUS2: slave acknowledge timeout / NAK.
pub const SATOER: u32 = 1 << 10;
/// GMBUS2: active.
pub const ACTIVE: u32 = 1 << 9;

/// GMBUS controller state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gmbus {
    /// Pin (GMBUS0 bits 2:0) on which slave 50 serves the EDID; `None` = NAK everything.
    pub edid_pin: Option<u8>,
    pin: u8,
    status: u32,
    clr_int: bool,
    reading: bool,
    remaining: u32,
    wait_after: bool,
    offset: u8,
}

impl Gmbus {
    /// A controller, answering NAK on every pin except `edid_pin`.
    pub fn new(edid_pin: Option<u8>) -> Self {
        Self {
            edid_pin,
            status: HW_RDY,
            ..Self::default()
        }
    }

    fn device_on(&self, slave: u8) -> bool {
        self.pin != 0 && Some(self.pin) == self.edid_pin && slave == EDID_I2C_ADDR
    }

    fn idle_status(&self) -> u32 {
        let nak = self.pin != 0 && Some(self.pin) != self.edid_pin;
        HW_RDY | if nak { SATOER } else { 0 }
    }

    /// GMBUS0 write (pin select). Returns true if the selected pin has no device (NAK).
    pub fn write_gmbus0(&mut self, value: u32) -> bool {
        self.pin = (value & 7) as u8;
        self.reading = false;
        self.status = self.idle_status();
        if self.pin != 0 {
            self.status |= HW_WAIT_PHASE;
        }
        self.status & SATOER != 0
    }

    /// GMBUS1 write (command). `data` is the last GMBUS3 value (first bytes of a write).
    /// Returns true if the cycle was NAKed.
    pub fn write_gmbus1(&mut self, value: u32, data: u32) -> bool {
        if value & SW_CLR_INT != 0 {
            self.clr_int = true;
            return false;
        }
        if self.clr_int {
            self.clr_int = false;
            self.reset();
        }
        if value & SW_RDY == 0 {
            return false;
        }
        let cycle = (value >> 25) & 7;
        let count = (value >> 16) & 0x1FF;
        let slave = ((value >> 1) & 0x7F) as u8;
        let read = value & 1 != 0;
        if count == 0 && cycle & CYCLE_STOP != 0 && cycle & (CYCLE_WAIT | CYCLE_INDEX) == 0 {
            // Stop only: end of transfer.
            self.reading = false;
            self.offset = 0;
            self.status = HW_RDY;
            return false;
        }
        if !self.device_on(slave) {
            self.status = HW_RDY | SATOER;
            return true;
        }
        if cycle & CYCLE_INDEX != 0 {
            self.offset = ((value >> 8) & 0xFF) as u8;
        }
        self.wait_after = cycle & CYCLE_WAIT != 0;
        if read {
            self.reading = true;
            self.remaining = count;
            self.status = HW_RDY | ACTIVE;
            if count == 0 {
                self.finish();
            }
        } else {
            if count > 0 {
                self.offset = (data & 0xFF) as u8;
            }
            self.finish();
        }
        false
    }

    fn finish(&mut self) {
        self.reading = false;
        self.status = HW_RDY | if self.wait_after { HW_WAIT_PHASE } else { 0 };
    }

    /// GMBUS2 read: the status, after which bit 15 (in use) reads as set.
    pub fn read_gmbus2(&mut self) -> u32 {
        let v = self.status;
        self.status |= INUSE;
        v
    }

    /// GMBUS2 write: writing bit 15 releases the bus.
    pub fn write_gmbus2(&mut self, value: u32) {
        if value & INUSE != 0 {
            self.status &= !INUSE;
        }
    }

    /// GMBUS3 read: up to 4 EDID bytes, least significant first, during a read cycle.
    pub fn read_gmbus3(&mut self, edid: &[u8]) -> Option<u32> {
        if !self.reading {
            return None;
        }
        let mut bytes = [0u8; 4];
        for b in bytes.iter_mut().take(self.remaining.min(4) as usize) {
            *b = edid.get(usize::from(self.offset)).copied().unwrap_or(0xFF);
            self.offset = self.offset.wrapping_add(1);
        }
        self.remaining = self.remaining.saturating_sub(4);
        if self.remaining == 0 {
            self.finish();
        }
        Some(u32::from_le_bytes(bytes))
    }

    fn reset(&mut self) {
        self.reading = false;
        self.remaining = 0;
        self.offset = 0;
        self.status = self.idle_status();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(cycle: u32, count: u32, index: u32, slave: u32, read: bool) -> u32 {
        SW_RDY | (cycle << 25) | (count << 16) | (index << 8) | (slave << 1) | u32::from(read)
    }

    #[test]
    fn every_slave_naks_by_default() {
        let mut g = Gmbus::new(None);
        assert!(g.write_gmbus0(6));
        assert!(g.write_gmbus1(cmd(CYCLE_INDEX | CYCLE_WAIT, 128, 0, 0x50, true), 0));
        assert_eq!(g.read_gmbus2() & (SATOER | HW_RDY), SATOER | HW_RDY);
        assert_eq!(g.read_gmbus2() & INUSE, INUSE);
        g.write_gmbus2(INUSE);
        // i915's error path: SW_CLR_INT, then 0, then pin 0.
        g.write_gmbus1(SW_CLR_INT, 0);
        g.write_gmbus1(0, 0);
        assert!(!g.write_gmbus0(0));
        assert_eq!(g.read_gmbus2(), HW_RDY);
    }

    #[test]
    fn index_read_of_edid_on_configured_pin() {
        let edid: Vec<u8> = (0..128u8).collect();
        let mut g = Gmbus::new(Some(6));
        assert!(!g.write_gmbus0(6));
        assert!(!g.write_gmbus1(cmd(CYCLE_INDEX | CYCLE_WAIT, 6, 8, 0x50, true), 0));
        assert_eq!(g.read_gmbus3(&edid), Some(0x0B0A_0908));
        assert_eq!(g.read_gmbus3(&edid), Some(0x0000_0D0C));
        assert_eq!(g.read_gmbus2() & (HW_WAIT_PHASE | ACTIVE), HW_WAIT_PHASE);
        assert_eq!(g.read_gmbus3(&edid), None);
        assert!(!g.write_gmbus1(SW_RDY | (CYCLE_STOP << 25), 0));
        assert!(
            g.write_gmbus1(cmd(CYCLE_STOP, 1, 0, 0x37, true), 0),
            "other slaves NAK"
        );
    }
}
