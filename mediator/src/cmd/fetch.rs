//! Bulk copies of guest graphics memory for the scanner.
//!
//! Addresses are translated page by page (the GTTs map pages), but pages that land on
//! consecutive guest-physical frames are coalesced into runs and each run is copied with a
//! single [`GuestMemory::read`]: a batch in contiguous guest RAM costs one read, however
//! many pages it spans.

use super::scan::{GmSpace, GmTranslate};
use crate::memory::{GuestMemory, PAGE_SIZE};

/// Guest memory seen through one translation.
#[derive(Clone, Copy)]
pub(crate) struct GmReader<'a> {
    pub mem: &'a dyn GuestMemory,
    pub tr: &'a dyn GmTranslate,
}

/// Bytes from `addr` to the end of its page (1..=PAGE_SIZE).
fn page_rest(addr: u64) -> usize {
    // < PAGE_SIZE + 1, lossless.
    (PAGE_SIZE - addr % PAGE_SIZE) as usize
}

impl GmReader<'_> {
    /// Copies `buf.len()` bytes at `gma`; `false` if any page does not translate or read.
    pub(crate) fn read(&self, space: GmSpace, gma: u64, buf: &mut [u8]) -> bool {
        self.read_prefix(space, gma, buf) == buf.len()
    }

    /// Copies as much of `buf.len()` bytes at `gma` as is readable, stopping at the first
    /// page that does not translate or read; returns the bytes copied (the rest of `buf` is
    /// unspecified).
    pub(crate) fn read_prefix(&self, space: GmSpace, gma: u64, buf: &mut [u8]) -> usize {
        let mut done = 0usize;
        while done < buf.len() {
            let Some(addr) = gma.checked_add(done as u64) else {
                return done;
            };
            let Some(gpa) = self.tr.gma_to_gpa(space, addr) else {
                return done;
            };
            let run = self.run_len(space, addr, gpa, buf.len() - done);
            let Some(dst) = buf.get_mut(done..done + run) else {
                return done;
            };
            if self.mem.read(gpa, dst).is_err() {
                // Some frame of the run is not RAM: find the readable prefix page by page.
                return done + self.read_pages(gpa, dst);
            }
            done += run;
        }
        done
    }

    /// Length of the run at `addr` (translated to `gpa`), at most `max` bytes: the first
    /// page plus every following page that translates to the next frame.
    fn run_len(&self, space: GmSpace, addr: u64, gpa: u64, max: usize) -> usize {
        let mut run = page_rest(addr).min(max);
        while run < max {
            let (Some(next_gma), Some(next_gpa)) =
                (addr.checked_add(run as u64), gpa.checked_add(run as u64))
            else {
                break;
            };
            if self.tr.gma_to_gpa(space, next_gma) != Some(next_gpa) {
                break;
            }
            run = run.saturating_add(PAGE_SIZE as usize).min(max);
        }
        run
    }

    /// Reads `buf` from contiguous `gpa` page by page; returns the bytes read before the
    /// first failing page.
    fn read_pages(&self, gpa: u64, buf: &mut [u8]) -> usize {
        let mut done = 0usize;
        while done < buf.len() {
            let Some(at) = gpa.checked_add(done as u64) else {
                return done;
            };
            let n = page_rest(at).min(buf.len() - done);
            let ok = buf
                .get_mut(done..done + n)
                .is_some_and(|c| self.mem.read(at, c).is_ok());
            if !ok {
                return done;
            }
            done += n;
        }
        done
    }
}

/// Appends the little-endian dwords in `bytes` to `out` (a trailing partial dword is
/// ignored).
pub(crate) fn append_dwords(out: &mut Vec<u32>, bytes: &[u8]) {
    out.extend(
        bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::VecMemory;

    /// Identity below 16 pages except page 5 → frame 9 and page 7 unmapped.
    fn tr(_: GmSpace, gma: u64) -> Option<u64> {
        match gma >> 12 {
            5 => Some(9 << 12 | (gma & 0xfff)),
            7 => None,
            p if p < 16 => Some(gma),
            _ => None,
        }
    }

    fn mem() -> VecMemory {
        let m = VecMemory::new(12 * PAGE_SIZE);
        for p in 0..12u64 {
            m.write(p * PAGE_SIZE, &[p as u8; PAGE_SIZE as usize])
                .unwrap();
        }
        m
    }

    #[test]
    fn runs_follow_translation_and_stop_at_holes() {
        let m = mem();
        let r = GmReader { mem: &m, tr: &tr };
        let mut buf = vec![0u8; 7 * PAGE_SIZE as usize];
        // Pages 1..=4 are one run, page 5 reads frame 9, page 6 itself, page 7 is a hole.
        let got = r.read_prefix(GmSpace::Ggtt, 0x1800, &mut buf);
        assert_eq!(got, 0x800 + 5 * 4096);
        assert_eq!(buf[0], 1);
        assert_eq!(buf[0x800], 2);
        assert_eq!(buf[0x800 + 3 * 4096], 9, "page 5 comes from frame 9");
        assert_eq!(buf[0x800 + 4 * 4096], 6);
        assert!(!r.read(GmSpace::Ggtt, 0x1800, &mut buf));
        assert!(r.read(GmSpace::Ggtt, 0x1800, &mut buf[..0x800 + 3 * 4096]));
    }

    #[test]
    fn ram_holes_inside_a_run_end_the_prefix_at_the_hole() {
        // Pages 10..16 translate contiguously but RAM ends at page 12.
        let m = mem();
        let r = GmReader { mem: &m, tr: &tr };
        let mut buf = vec![0u8; 4 * PAGE_SIZE as usize];
        assert_eq!(r.read_prefix(GmSpace::Ggtt, 10 << 12, &mut buf), 2 * 4096);
        assert_eq!(buf[4096], 11);
        assert_eq!(r.read_prefix(GmSpace::Ggtt, u64::MAX - 3, &mut buf), 0);
    }

    #[test]
    fn dwords_are_little_endian_and_partial_dwords_dropped() {
        let mut v = vec![7];
        append_dwords(&mut v, &[1, 0, 0, 0, 0x78, 0x56, 0x34, 0x12, 9]);
        assert_eq!(v, [7, 1, 0x1234_5678]);
    }
}
