//! The Xen device-model ABI as plain data: the ioreq slot, the buffered ring entry, the
//! constants of `xen/hvm/ioreq.h`, `hvm_op.h` and `memory.h`, and PCI SBDF encodings.
//!
//! Layouts follow `xen-abi.md` §1 (checked against the Xen 4.17 headers); compile-time
//! assertions below pin every size and offset. The *shared* (atomic) views of the pages
//! live in [`crate::ffi::page`]; this module only holds copies and encodings.

use std::mem::{align_of, offset_of, size_of};

/// Size of a Xen page.
pub const XEN_PAGE_SIZE: usize = 4096;

/// `IOREQ_READ`: the `dir` bit value of a read.
pub const IOREQ_READ: u8 = 1;
/// `IOREQ_WRITE`: the `dir` bit value of a write.
pub const IOREQ_WRITE: u8 = 0;

/// `STATE_IOREQ_NONE`: the slot is free (only Xen writes this).
pub const STATE_IOREQ_NONE: u8 = 0;
/// `STATE_IOREQ_READY`: Xen published a request.
pub const STATE_IOREQ_READY: u8 = 1;
/// `STATE_IOREQ_INPROCESS`: the emulator took the request.
pub const STATE_IOREQ_INPROCESS: u8 = 2;
/// `STATE_IORESP_READY`: the emulator answered.
pub const STATE_IORESP_READY: u8 = 3;

/// `IOREQ_TYPE_PIO`: port I/O.
pub const IOREQ_TYPE_PIO: u8 = 0;
/// `IOREQ_TYPE_COPY`: MMIO.
pub const IOREQ_TYPE_COPY: u8 = 1;
/// `IOREQ_TYPE_PCI_CONFIG`: a decoded CF8/CFC configuration access.
pub const IOREQ_TYPE_PCI_CONFIG: u8 = 2;
/// `IOREQ_TYPE_TIMEOFFSET`: guest RTC offset change (buffered only).
pub const IOREQ_TYPE_TIMEOFFSET: u8 = 7;
/// `IOREQ_TYPE_INVALIDATE`: flush the map cache.
pub const IOREQ_TYPE_INVALIDATE: u8 = 8;

/// Mask of the `state` field in the flags byte.
pub const FLAG_STATE_MASK: u8 = 0x0F;
/// `data_is_ptr` bit in the flags byte.
pub const FLAG_DATA_IS_PTR: u8 = 0x10;
/// `dir` bit in the flags byte (set = read).
pub const FLAG_DIR_READ: u8 = 0x20;
/// `df` bit in the flags byte (set = addresses step downwards).
pub const FLAG_DF: u8 = 0x40;

/// Slots of the synchronous ioreq page (= `HVM_MAX_VCPUS`).
pub const IOREQ_SLOTS: usize = 128;
/// `IOREQ_BUFFER_SLOT_NUM`: entries of the buffered ring.
pub const IOREQ_BUFFER_SLOT_NUM: u32 = 511;

/// `HVM_IOREQSRV_BUFIOREQ_OFF`.
pub const HVM_IOREQSRV_BUFIOREQ_OFF: i32 = 0;
/// `HVM_IOREQSRV_BUFIOREQ_LEGACY` (do not use: pointers wrap badly).
pub const HVM_IOREQSRV_BUFIOREQ_LEGACY: i32 = 1;
/// `HVM_IOREQSRV_BUFIOREQ_ATOMIC`.
pub const HVM_IOREQSRV_BUFIOREQ_ATOMIC: i32 = 2;

/// `HVMMEM_ram_rw`.
pub const HVMMEM_RAM_RW: u32 = 0;
/// `HVMMEM_ioreq_server`: writes to such pages become ioreqs.
pub const HVMMEM_IOREQ_SERVER: u32 = 4;
/// `XEN_DMOP_IOREQ_MEM_ACCESS_WRITE`.
pub const XEN_DMOP_IOREQ_MEM_ACCESS_WRITE: u32 = 2;

/// `XENMEM_resource_ioreq_server`.
pub const XENMEM_RESOURCE_IOREQ_SERVER: u32 = 0;
/// Resource frame of the buffered page.
pub const XENMEM_RESOURCE_IOREQ_SERVER_FRAME_BUFIOREQ: u64 = 0;
/// Resource frame of synchronous ioreq page `n` (only `n = 0` exists).
pub const fn xenmem_resource_ioreq_server_frame_ioreq(n: u64) -> u64 {
    1 + n
}

/// `DOMID_SELF`.
pub const DOMID_SELF: u16 = 0x7FF0;
/// `DOMID_INVALID`.
pub const DOMID_INVALID: u16 = 0x7FF4;
/// Maximum ioreq servers per domain (`MAX_NR_IOREQ_SERVERS`).
pub const MAX_NR_IOREQ_SERVERS: usize = 8;
/// Maximum ranges per range type per server (`MAX_NR_IO_RANGES`).
pub const MAX_NR_IO_RANGES: usize = 256;

/// A copy of one `struct ioreq` slot (`ioreq_t`), 32 bytes, alignment 8.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ioreq {
    /// Guest-physical address, port, or `sbdf << 32 | register`.
    pub addr: u64,
    /// The value, or the guest-physical address of a RAM buffer if `data_is_ptr`.
    pub data: u64,
    /// Repeat count.
    pub count: u32,
    /// Access size in bytes.
    pub size: u32,
    /// Guest-side event-channel port (written by Xen only).
    pub vp_eport: u32,
    /// Padding.
    pub pad0: u16,
    /// `state` (bits 0–3), `data_is_ptr` (4), `dir` (5), `df` (6).
    pub flags: u8,
    /// `IOREQ_TYPE_*`.
    pub typ: u8,
}

const _: () = {
    assert!(size_of::<Ioreq>() == 32);
    assert!(align_of::<Ioreq>() == 8);
    assert!(offset_of!(Ioreq, addr) == 0);
    assert!(offset_of!(Ioreq, data) == 8);
    assert!(offset_of!(Ioreq, count) == 16);
    assert!(offset_of!(Ioreq, size) == 20);
    assert!(offset_of!(Ioreq, vp_eport) == 24);
    assert!(offset_of!(Ioreq, pad0) == 28);
    assert!(offset_of!(Ioreq, flags) == 30);
    assert!(offset_of!(Ioreq, typ) == 31);
    assert!(IOREQ_SLOTS * size_of::<Ioreq>() == XEN_PAGE_SIZE);
};

impl Ioreq {
    /// The `state` field.
    pub fn state(&self) -> u8 {
        self.flags & FLAG_STATE_MASK
    }
    /// Whether `data` is a guest-physical pointer.
    pub fn data_is_ptr(&self) -> bool {
        self.flags & FLAG_DATA_IS_PTR != 0
    }
    /// Whether this is a read.
    pub fn is_read(&self) -> bool {
        self.flags & FLAG_DIR_READ != 0
    }
    /// Whether addresses step downwards.
    pub fn df(&self) -> bool {
        self.flags & FLAG_DF != 0
    }
    /// Builds the flags byte from its fields (`state` is masked to 4 bits).
    pub fn make_flags(state: u8, data_is_ptr: bool, read: bool, df: bool) -> u8 {
        (state & FLAG_STATE_MASK)
            | if data_is_ptr { FLAG_DATA_IS_PTR } else { 0 }
            | if read { FLAG_DIR_READ } else { 0 }
            | if df { FLAG_DF } else { 0 }
    }
}

/// One decoded buffered-ring request (`buf_ioreq_t`, possibly the two-slot qword form).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufIoreq {
    /// `IOREQ_TYPE_*`.
    pub typ: u8,
    /// `dir` bit (always write in practice).
    pub read: bool,
    /// Access size: 1, 2, 4 or 8 bytes.
    pub size: u8,
    /// Address (20 bits).
    pub addr: u32,
    /// Data (64 bits for the qword form, else 32).
    pub data: u64,
}

/// Size code 3 means 8 bytes: the request spans two slots.
pub const BUF_SIZE_CODE_QWORD: u32 = 3;

impl BufIoreq {
    /// Encodes word 0 of a slot.
    pub fn word0(&self) -> u32 {
        let code = match self.size {
            1 => 0,
            2 => 1,
            4 => 2,
            _ => BUF_SIZE_CODE_QWORD,
        };
        u32::from(self.typ)
            | if self.read { 1 << 9 } else { 0 }
            | code << 10
            | (self.addr & 0xF_FFFF) << 12
    }

    /// Whether this request needs the two-slot qword form.
    pub fn is_qword(&self) -> bool {
        self.size == 8
    }

    /// The slots (as little-endian u64: word 0 low, word 1 high) this request occupies.
    pub fn encode(&self) -> ([u64; 2], usize) {
        let w0 = u64::from(self.word0());
        let lo = w0 | (self.data & 0xFFFF_FFFF) << 32;
        let hi = w0 | (self.data >> 32) << 32;
        ([lo, hi], if self.is_qword() { 2 } else { 1 })
    }

    /// Decodes slot value `first` (and `second` for the qword form).
    pub fn decode(first: u64, second: Option<u64>) -> Self {
        let w0 = (first & 0xFFFF_FFFF) as u32; // low word by construction
        let code = (w0 >> 10) & 3;
        let size = 1u8 << code;
        let hi = if code == BUF_SIZE_CODE_QWORD {
            second.map_or(0, |s| s >> 32)
        } else {
            0
        };
        Self {
            typ: (w0 & 0xFF) as u8, // masked to 8 bits
            read: w0 & (1 << 9) != 0,
            size,
            addr: w0 >> 12,
            data: (first >> 32) | hi << 32,
        }
    }

    /// Whether slot value `first` starts a qword (two-slot) request.
    pub fn slot_is_qword(first: u64) -> bool {
        ((first >> 10) & 3) as u32 == BUF_SIZE_CODE_QWORD
    }
}

/// A PCI segment/bus/device/function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sbdf {
    /// PCI segment.
    pub segment: u16,
    /// Bus number.
    pub bus: u8,
    /// Device number (0..=31).
    pub device: u8,
    /// Function number (0..=7).
    pub function: u8,
}

impl Sbdf {
    /// A validated SBDF; `None` if `device > 31` or `function > 7`.
    pub fn new(segment: u16, bus: u8, device: u8, function: u8) -> Option<Self> {
        (device <= 31 && function <= 7).then_some(Self {
            segment,
            bus,
            device,
            function,
        })
    }

    /// The 32-bit encoding `seg << 16 | bus << 8 | dev << 3 | fn`, which is both
    /// `XEN_DMOP_PCI_SBDF` (map_pcidev range value) and the upper half of a
    /// `IOREQ_TYPE_PCI_CONFIG` address.
    pub fn to_u32(self) -> u32 {
        u32::from(self.segment) << 16
            | u32::from(self.bus) << 8
            | u32::from(self.device) << 3
            | u32::from(self.function)
    }

    /// Decodes the 32-bit encoding (every value is a valid SBDF).
    pub fn from_u32(v: u32) -> Self {
        Self {
            segment: (v >> 16) as u16,       // upper 16 bits exactly
            bus: ((v >> 8) & 0xFF) as u8,    // masked
            device: ((v >> 3) & 0x1F) as u8, // masked
            function: (v & 7) as u8,         // masked
        }
    }

    /// `bus << 8 | dev << 3 | fn` as `GuestPort::pci_cfg_*` takes it.
    pub fn bdf(self) -> u16 {
        (self.to_u32() & 0xFFFF) as u16 // masked to 16 bits
    }

    /// The ioreq address of register `reg` of this function (`sbdf << 32 | reg`).
    pub fn ioreq_addr(self, reg: u32) -> u64 {
        u64::from(self.to_u32()) << 32 | u64::from(reg)
    }

    /// Splits an ioreq PCI-config address into the SBDF and the register offset.
    pub fn from_ioreq_addr(addr: u64) -> (Self, u32) {
        (
            Self::from_u32((addr >> 32) as u32), // upper half exactly
            (addr & 0xFFFF_FFFF) as u32,         // lower half exactly
        )
    }
}

impl std::fmt::Display for Sbdf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{}",
            self.segment, self.bus, self.device, self.function
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_byte_round_trips() {
        let f = Ioreq::make_flags(STATE_IOREQ_READY, true, true, false);
        let r = Ioreq {
            flags: f,
            ..Default::default()
        };
        assert_eq!(r.state(), STATE_IOREQ_READY);
        assert!(r.data_is_ptr() && r.is_read() && !r.df());
        assert_eq!(f, 0x31);
        assert_eq!(Ioreq::make_flags(0x1F, false, false, true), 0x4F);
    }

    #[test]
    fn sbdf_encodings_match_xen() {
        let s = Sbdf::new(1, 0x12, 2, 3).unwrap();
        assert_eq!(s.to_u32(), 0x0001_1213);
        assert_eq!(Sbdf::from_u32(0x0001_1213), s);
        assert_eq!(s.ioreq_addr(0xFC), 0x0001_1213_0000_00FC);
        assert_eq!(Sbdf::from_ioreq_addr(0x0001_1213_0000_00FC), (s, 0xFC));
        assert_eq!(s.bdf(), 0x1213);
        assert!(Sbdf::new(0, 0, 32, 0).is_none());
        assert!(Sbdf::new(0, 0, 0, 8).is_none());
        assert_eq!(s.to_string(), "0001:12:02.3");
    }

    #[test]
    fn buffered_entries_round_trip_both_forms() {
        let d = BufIoreq {
            typ: IOREQ_TYPE_COPY,
            read: false,
            size: 2,
            addr: 0xA_1234,
            data: 0xBEEF,
        };
        let (s, n) = d.encode();
        assert_eq!(n, 1);
        assert!(!BufIoreq::slot_is_qword(s[0]));
        assert_eq!(BufIoreq::decode(s[0], None), d);
        let q = BufIoreq {
            size: 8,
            data: 0x1122_3344_5566_7788,
            ..d
        };
        let (s, n) = q.encode();
        assert_eq!(n, 2);
        assert!(BufIoreq::slot_is_qword(s[0]));
        assert_eq!(BufIoreq::decode(s[0], Some(s[1])), q);
        // word 0 layout: type bits 0-7, size code bits 10-11, addr bits 12-31
        assert_eq!(q.word0(), 1 | 3 << 10 | 0xA_1234 << 12);
    }
}
