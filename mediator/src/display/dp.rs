//! The virtual DisplayPort sink on DDI D: DPCD, native AUX transactions, I2C-over-AUX
//! access to the EDID at slave address 50, and the AUX channel registers (§7.5).

use serde::{Deserialize, Serialize};

use super::regfile::RegFile;
use super::regs::{DDI_STRIDE, DP_AUX_CH_CTL};

/// Size of the emulated DPCD array (GVT keeps 0x700 bytes).
pub const DPCD_SIZE: usize = 0x700;
/// Longest AUX message (request or reply) the data registers hold.
pub const AUX_MAX_BYTES: usize = 20;
/// I2C slave address of the EDID EEPROM.
pub const EDID_I2C_ADDR: u8 = 0x50;

/// AUX CTL: send / busy.
pub const AUX_SEND_BUSY: u32 = 1 << 31;
/// AUX CTL: done (write 1 to clear).
pub const AUX_DONE: u32 = 1 << 30;
/// AUX CTL: interrupt on done.
pub const AUX_IRQ: u32 = 1 << 29;
/// AUX CTL: timeout error.
pub const AUX_TIMEOUT: u32 = 1 << 28;
/// AUX CTL: receive error.
pub const AUX_RX_ERROR: u32 = 1 << 25;
/// Bits of AUX CTL kept from the guest's write when a transaction completes.
const AUX_KEEP: u32 = AUX_IRQ | (3 << 26) | 0xF_FFFF;

const REQ_NATIVE: u8 = 0x8;
const REQ_READ: u8 = 0x1;
const REQ_MOT: u8 = 0x4;
const NATIVE_NAK: u8 = 0x10;
const I2C_NAK: u8 = 0x40;
const ACK: u8 = 0x00;

/// DE port IIR bit of each AUX channel's done interrupt (A, B, C, D; §3.8).
pub const AUX_DONE_IIR: [u32; 4] = [1 << 0, 1 << 25, 1 << 26, 1 << 27];

/// State of the DDC (I2C) side of the sink.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DdcState {
    /// Inside an I2C transaction (after a start with MOT).
    pub active: bool,
    /// Current EDID byte offset.
    pub offset: u8,
}

/// The DP sink on port D.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DpSink {
    dpcd: Vec<u8>,
    ddc: DdcState,
}

impl Default for DpSink {
    fn default() -> Self {
        Self::new()
    }
}

impl DpSink {
    /// A sink with the initial DPCD of §7.5: DP 1.2, 5.4 Gb/s, 4 lanes with enhanced
    /// framing, sink count 1.
    pub fn new() -> Self {
        let mut dpcd = vec![0u8; DPCD_SIZE];
        dpcd[0x000] = 0x12;
        dpcd[0x001] = 0x14;
        dpcd[0x002] = 0x84;
        dpcd[0x200] = 0x01;
        Self {
            dpcd,
            ddc: DdcState::default(),
        }
    }

    /// DPCD byte at `addr` (0 beyond the array).
    pub fn dpcd(&self, addr: u32) -> u8 {
        usize::try_from(addr)
            .ok()
            .and_then(|a| self.dpcd.get(a))
            .copied()
            .unwrap_or(0)
    }

    /// One AUX request (header and payload as sent) → the reply bytes (reply code first).
    pub fn transfer(&mut self, req: &[u8], edid: &[u8]) -> Vec<u8> {
        let Some(&b0) = req.first() else {
            return vec![NATIVE_NAK];
        };
        let code = b0 >> 4;
        if code & REQ_NATIVE != 0 {
            self.native(code, req)
        } else {
            self.i2c(code, req, edid)
        }
    }

    fn native(&mut self, code: u8, req: &[u8]) -> Vec<u8> {
        let (Some(h), Some(&lm1)) = (req.get(..3), req.get(3)) else {
            return vec![NATIVE_NAK];
        };
        let addr = (u32::from(h[0] & 0xF) << 16) | (u32::from(h[1]) << 8) | u32::from(h[2]);
        let len = usize::from(lm1) + 1;
        if code & REQ_READ != 0 {
            if len > 16 {
                return vec![NATIVE_NAK];
            }
            let mut reply = vec![ACK];
            reply.extend((0..len as u32).map(|i| self.dpcd(addr.saturating_add(i))));
            return reply;
        }
        let (Some(data), Ok(start)) = (req.get(4..4 + len), usize::try_from(addr)) else {
            return vec![NATIVE_NAK];
        };
        let Some(dst) = start
            .checked_add(len)
            .and_then(|end| self.dpcd.get_mut(start..end))
        else {
            return vec![NATIVE_NAK];
        };
        dst.copy_from_slice(data);
        if (start..start + len).contains(&0x102) {
            self.training_pattern();
        }
        vec![ACK]
    }

    /// Link-training status driven by TRAINING_PATTERN_SET (DPCD 102).
    fn training_pattern(&mut self) {
        match self.dpcd(0x102) & 3 {
            1 => {
                self.or_at(0x202, 0x11);
                self.or_at(0x203, 0x11);
            }
            2 | 3 => {
                self.or_at(0x202, 0x66);
                self.or_at(0x203, 0x66);
                self.or_at(0x204, 0x01);
            }
            _ => {
                if let Some(b) = self.dpcd.get_mut(0x205) {
                    *b = 0x03;
                }
            }
        }
    }

    fn or_at(&mut self, addr: usize, bits: u8) {
        if let Some(b) = self.dpcd.get_mut(addr) {
            *b |= bits;
        }
    }

    fn i2c(&mut self, code: u8, req: &[u8], edid: &[u8]) -> Vec<u8> {
        let Some(&slave) = req.get(2) else {
            return vec![I2C_NAK];
        };
        let slave = slave & 0x7F;
        let mot = code & REQ_MOT != 0;
        let Some(&lm1) = req.get(3) else {
            // Address-only transaction: start (MOT) or stop.
            if mot && slave != 0 {
                self.ddc.active = true;
            } else {
                self.ddc = DdcState::default();
            }
            return vec![ACK];
        };
        let len = usize::from(lm1) + 1;
        let reply = match code & 3 {
            0 => match req.get(4..4 + len) {
                Some(data) => {
                    if slave == EDID_I2C_ADDR {
                        self.ddc.offset = data.first().copied().unwrap_or(0);
                    }
                    vec![ACK]
                }
                None => vec![I2C_NAK],
            },
            1 if len <= 16 => {
                let mut reply = vec![ACK];
                for _ in 0..len {
                    reply.push(if slave == EDID_I2C_ADDR {
                        let b = edid.get(usize::from(self.ddc.offset)).copied();
                        self.ddc.offset = self.ddc.offset.wrapping_add(1);
                        b.unwrap_or(0xFF)
                    } else {
                        0xFF
                    });
                }
                reply
            }
            1 => vec![I2C_NAK],
            _ => vec![ACK],
        };
        if !mot {
            self.ddc = DdcState::default();
        }
        reply
    }
}

/// Offset of AUX channel `ch`'s CTL register.
pub fn aux_ctl(ch: u32) -> u32 {
    DP_AUX_CH_CTL + ch * DDI_STRIDE
}

/// Reads `n` message bytes packed big-endian in the data registers of channel `ch`.
pub fn unpack(regs: &RegFile, ch: u32, n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(AUX_MAX_BYTES);
    for i in 0..5u32 {
        out.extend(regs.get(aux_ctl(ch) + 4 + 4 * i).to_be_bytes());
    }
    out.truncate(n.min(AUX_MAX_BYTES));
    out
}

/// Packs `bytes` big-endian into the data registers of channel `ch`.
pub fn pack(regs: &mut RegFile, ch: u32, bytes: &[u8]) {
    for (i, chunk) in bytes.chunks(4).take(5).enumerate() {
        let mut w = [0u8; 4];
        w[..chunk.len()].copy_from_slice(chunk);
        regs.set(aux_ctl(ch) + 4 + 4 * i as u32, u32::from_be_bytes(w));
    }
}

/// Outcome of a guest write to an AUX CTL register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuxOutcome {
    /// A transaction ran.
    pub transacted: bool,
    /// It timed out (no sink on the channel).
    pub timed_out: bool,
    /// DE port IIR bits to raise.
    pub port_iir: u32,
}

/// Handles a guest write of `value` to AUX CTL of channel `ch`; `sink` is the sink on that
/// channel with the EDID it serves, if any.
pub fn aux_ctl_write(
    regs: &mut RegFile,
    ch: u32,
    value: u32,
    sink: Option<(&mut DpSink, &[u8])>,
) -> AuxOutcome {
    let ctl = aux_ctl(ch);
    if value & AUX_SEND_BUSY == 0 {
        regs.set(ctl, 0);
        return AuxOutcome {
            transacted: false,
            timed_out: false,
            port_iir: 0,
        };
    }
    let send = usize::try_from((value >> 20) & 0x1F).unwrap_or(0);
    let req = unpack(regs, ch, send);
    let kept = value & AUX_KEEP & !(0x1F << 20);
    let timed_out = match sink {
        Some((sink, edid)) => {
            let reply = sink.transfer(&req, edid);
            pack(regs, ch, &reply);
            let n = u32::try_from(reply.len().min(AUX_MAX_BYTES)).unwrap_or(0);
            regs.set(ctl, kept | AUX_DONE | (n << 20));
            false
        }
        None => {
            regs.set(ctl, kept | AUX_DONE | AUX_TIMEOUT);
            true
        }
    };
    let irq = if value & AUX_IRQ != 0 {
        usize::try_from(ch)
            .ok()
            .and_then(|c| AUX_DONE_IIR.get(c))
            .copied()
            .unwrap_or(0)
    } else {
        0
    };
    AuxOutcome {
        transacted: true,
        timed_out,
        port_iir: irq,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_read_write_and_link_training() {
        let mut s = DpSink::new();
        assert_eq!(s.transfer(&[0x90, 0, 0, 2], &[]), vec![0, 0x12, 0x14, 0x84]);
        // Beyond the array: ACK with zeros; writes there are NAKed.
        assert_eq!(s.transfer(&[0x9F, 0, 0, 1], &[]), vec![0, 0, 0]);
        assert_eq!(s.transfer(&[0x80, 0x07, 0x00, 0, 5], &[]), vec![NATIVE_NAK]);
        // Pattern 1 → clock recovery on all lanes.
        assert_eq!(
            s.transfer(&[0x80, 0x01, 0x02, 4, 0x21, 0, 0, 0, 0], &[]),
            vec![0]
        );
        assert_eq!((s.dpcd(0x202), s.dpcd(0x203)), (0x11, 0x11));
        s.transfer(&[0x80, 0x01, 0x02, 0, 0x22], &[]);
        assert_eq!((s.dpcd(0x202), s.dpcd(0x204)), (0x77, 0x01));
        s.transfer(&[0x80, 0x01, 0x02, 0, 0x00], &[]);
        assert_eq!(s.dpcd(0x205), 0x03);
        assert_eq!(
            s.transfer(&[0x80, 0x01, 0x02, 3, 0x00], &[]),
            vec![NATIVE_NAK],
            "short"
        );
    }

    #[test]
    fn other_i2c_slaves_read_ff_and_bad_requests_nak() {
        let mut s = DpSink::new();
        assert_eq!(s.transfer(&[0x50, 0, 0x37], &[]), vec![0]);
        assert_eq!(
            s.transfer(&[0x50, 0, 0x37, 1], &[1, 2]),
            vec![0, 0xFF, 0xFF]
        );
        assert_eq!(
            s.transfer(&[0x40, 0, 0x50, 0], &[]),
            vec![I2C_NAK],
            "no payload"
        );
        assert_eq!(s.transfer(&[], &[]), vec![NATIVE_NAK]);
        assert_eq!(s.transfer(&[0x50, 0, 0x50, 16], &[7; 128]), vec![I2C_NAK]);
    }

    #[test]
    fn pack_unpack_is_big_endian() {
        let mut r = RegFile::default();
        pack(&mut r, 3, &[1, 2, 3, 4, 5]);
        assert_eq!(r.get(0x64314), 0x0102_0304);
        assert_eq!(r.get(0x64318), 0x0500_0000);
        assert_eq!(unpack(&r, 3, 5), vec![1, 2, 3, 4, 5]);
        assert_eq!(unpack(&r, 3, 31).len(), AUX_MAX_BYTES);
    }
}
