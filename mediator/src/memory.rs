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
    /// Copies `buf.len()` little-endian dwords starting at `gpa` out of guest RAM: the
    /// bulk read of command buffers, converted while copied (one pass over the bytes).
    /// Like [`GuestMemory::read`], all or nothing. The default reads a page's worth at a
    /// time through a stack buffer (one `read` per page: implementations that look up a
    /// mapping per call pay it per page); implementations with direct access to the
    /// bytes override it and copy once.
    fn read_dwords(&self, gpa: u64, buf: &mut [u32]) -> Result<(), GuestMemoryError> {
        let err = GuestMemoryError::NotRam {
            gpa,
            len: (buf.len() as u64).saturating_mul(4),
        };
        let mut bytes = [0u8; PAGE_SIZE as usize];
        let mut at = Some(gpa);
        for chunk in buf.chunks_mut(bytes.len() / 4) {
            let b = bytes.get_mut(..chunk.len() * 4).unwrap_or_default();
            self.read(at.ok_or_else(|| err.clone())?, b)?;
            dwords_from_le(chunk, b);
            at = at.and_then(|a| a.checked_add(b.len() as u64));
        }
        Ok(())
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

/// Fills `out` with the little-endian dwords of `bytes` (which holds `4 * out.len()`
/// bytes; any excess is ignored). Compiles to a plain copy on little-endian hosts.
#[inline]
pub fn dwords_from_le(out: &mut [u32], bytes: &[u8]) {
    for (d, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
        *d = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
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

    fn read_dwords(&self, gpa: u64, buf: &mut [u32]) -> Result<(), GuestMemoryError> {
        let bytes = self.bytes.read().unwrap_or_else(|p| p.into_inner());
        let len = buf
            .len()
            .checked_mul(4)
            .ok_or(GuestMemoryError::NotRam { gpa, len: u64::MAX })?;
        let r = self.span(gpa, len, bytes.len())?;
        dwords_from_le(buf, &bytes[r]);
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
        let mut d = [0u32; 3];
        m.read_dwords(4092, &mut d).unwrap();
        assert_eq!(d, [0, 0xdead_beef, 0]);
        assert!(m.read_dwords(8184, &mut d).is_err());
        assert!(m.read_dwords(u64::MAX - 3, &mut d[..1]).is_err());
        assert!(m.owns_frame(1));
        assert!(!m.owns_frame(2));
        assert!(!m.owns_frame(u64::MAX));
    }

    /// Only the required methods: exercises the provided `read_dwords`.
    struct Plain(VecMemory);

    impl GuestMemory for Plain {
        fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), GuestMemoryError> {
            self.0.read(gpa, buf)
        }
        fn write(&self, gpa: u64, buf: &[u8]) -> Result<(), GuestMemoryError> {
            self.0.write(gpa, buf)
        }
        fn owns_frame(&self, gfn: u64) -> bool {
            self.0.owns_frame(gfn)
        }
    }

    #[test]
    fn provided_read_dwords_matches_the_vec_override() {
        let m = VecMemory::new(8192);
        let bytes: Vec<u8> = (0..8192u32).map(|i| (i * 7 + 3) as u8).collect();
        m.write(0, &bytes).unwrap();
        let p = Plain(VecMemory::new(8192));
        p.write(0, &bytes).unwrap();
        // Lengths around the provided method's 1024-dword chunks, in and out of range.
        for (gpa, n) in [
            (0, 0),
            (4, 1),
            (8, 1024),
            (12, 1025),
            (4000, 1048),
            (4000, 1049),
            (7000, 300),
        ] {
            let (mut a, mut b) = (vec![0u32; n], vec![0u32; n]);
            let ra = m.read_dwords(gpa, &mut a);
            assert_eq!(ra.is_ok(), p.read_dwords(gpa, &mut b).is_ok(), "{gpa} {n}");
            assert_eq!(ra.is_ok(), gpa + 4 * n as u64 <= 8192);
            if ra.is_ok() {
                assert_eq!(a, b, "{gpa} {n}");
                let want = u32::from_le_bytes(bytes[gpa as usize..][..4].try_into().unwrap());
                assert!(n == 0 || a[0] == want);
            }
        }
    }
}
