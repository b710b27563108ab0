//! Guest RAM as the device model sees it: a copy-in, copy-out interface.
//!
//! Implementations: the Xen backend's foreign-memory map cache, the simulated Xen's RAM,
//! and [`VecMemory`] for unit tests. No implementation hands out references into guest
//! memory, so a guest cannot change a buffer between the model's validation and its use
//! (no double fetch): callers copy, then validate the copy.

use std::sync::RwLock;

use thiserror::Error;

/// Size of a guest frame.
pub const PAGE_SIZE: u64 = 4096;
/// log2 of [`PAGE_SIZE`].
pub const PAGE_SHIFT: u32 = 12;

/// Why a guest-memory access failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum GuestMemoryError {
    /// The range is not (entirely) guest RAM.
    #[error("guest physical range {gpa:#x}+{len:#x} is not RAM of this guest")]
    NotRam { gpa: u64, len: u64 },
    /// The platform could not map a frame (e.g. the domain is dying).
    #[error("guest frame {gfn:#x} could not be mapped: {reason}")]
    MapFailed { gfn: u64, reason: String },
}

/// Copy access to one guest's RAM by guest-physical address.
pub trait GuestMemory: Send + Sync {
    /// Copies `buf.len()` bytes starting at `gpa` out of guest RAM.
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), GuestMemoryError>;
    /// Copies `buf` into guest RAM at `gpa`.
    fn write(&self, gpa: u64, buf: &[u8]) -> Result<(), GuestMemoryError>;
    /// Whether guest frame `gfn` is RAM that belongs to this guest (used to validate
    /// page-table entries before they reach the host GTT).
    fn owns_frame(&self, gfn: u64) -> bool;

    /// Reads a little-endian u32.
    fn read_u32(&self, gpa: u64) -> Result<u32, GuestMemoryError> {
        let mut b = [0u8; 4];
        self.read(gpa, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    /// Reads a little-endian u64.
    fn read_u64(&self, gpa: u64) -> Result<u64, GuestMemoryError> {
        let mut b = [0u8; 8];
        self.read(gpa, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    /// Writes a little-endian u32.
    fn write_u32(&self, gpa: u64, v: u32) -> Result<(), GuestMemoryError> {
        self.write(gpa, &v.to_le_bytes())
    }
    /// Writes a little-endian u64.
    fn write_u64(&self, gpa: u64, v: u64) -> Result<(), GuestMemoryError> {
        self.write(gpa, &v.to_le_bytes())
    }
}

/// Guest RAM backed by a vector, starting at guest-physical 0. For tests and models.
#[derive(Debug)]
pub struct VecMemory {
    bytes: RwLock<Vec<u8>>,
}

impl VecMemory {
    /// `size` bytes of zeroed RAM at guest-physical 0 (rounded up to whole frames).
    pub fn new(size: u64) -> Self {
        let size = size.div_ceil(PAGE_SIZE).saturating_mul(PAGE_SIZE);
        let len = usize::try_from(size).unwrap_or(usize::MAX);
        Self {
            bytes: RwLock::new(vec![0; len]),
        }
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.bytes.read().map(|b| b.len() as u64).unwrap_or(0)
    }

    fn span(
        &self,
        gpa: u64,
        len: usize,
        total: usize,
    ) -> Result<std::ops::Range<usize>, GuestMemoryError> {
        let err = || GuestMemoryError::NotRam {
            gpa,
            len: len as u64,
        };
        let start = usize::try_from(gpa).map_err(|_| err())?;
        let end = start.checked_add(len).ok_or_else(err)?;
        if end > total {
            return Err(err());
        }
        Ok(start..end)
    }
}

impl GuestMemory for VecMemory {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), GuestMemoryError> {
        let bytes = self.bytes.read().unwrap_or_else(|p| p.into_inner());
        let r = self.span(gpa, buf.len(), bytes.len())?;
        buf.copy_from_slice(&bytes[r]);
        Ok(())
    }

    fn write(&self, gpa: u64, buf: &[u8]) -> Result<(), GuestMemoryError> {
        let mut bytes = self.bytes.write().unwrap_or_else(|p| p.into_inner());
        let total = bytes.len();
        let r = self.span(gpa, buf.len(), total)?;
        bytes[r].copy_from_slice(buf);
        Ok(())
    }

    fn owns_frame(&self, gfn: u64) -> bool {
        gfn.checked_mul(PAGE_SIZE).is_some_and(|a| a < self.size())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_in_and_out_and_rejects_out_of_range() {
        let m = VecMemory::new(8192);
        m.write_u32(4096, 0xdead_beef).unwrap();
        assert_eq!(m.read_u32(4096).unwrap(), 0xdead_beef);
        assert!(m.read_u32(8190).is_err());
        assert!(m.write(u64::MAX, &[1]).is_err());
        assert!(m.owns_frame(1));
        assert!(!m.owns_frame(2));
        assert!(!m.owns_frame(u64::MAX));
    }
}
