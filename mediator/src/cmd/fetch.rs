//! Bulk copies of guest graphics memory for the scanner.
//!
//! Addresses are translated page by page (the GTTs map pages), but pages that land on
//! consecutive guest-physical frames are coalesced into runs and each run is copied with a
//! single [`GuestMemory::read_dwords`]: a batch in contiguous guest RAM costs one read, however
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
    /// Copies `buf.len()` dwords at `gma`; `false` if any page does not translate or read.
    pub(crate) fn read(&self, space: GmSpace, gma: u64, buf: &mut [u32]) -> bool {
        self.read_prefix(space, gma, buf) == buf.len()
    }

    /// Copies as many of the `buf.len()` dwords at `gma` as are readable, stopping at the
    /// first page that does not translate or read; returns the dwords copied (the rest of
    /// `buf` is unspecified). Each run is one [`GuestMemory::read_dwords`]: the guest bytes
    /// are copied once, straight into `buf`. `gma` must be dword aligned (command buffers
    /// are); an unaligned `gma` or translation reads nothing.
    pub(crate) fn read_prefix(&self, space: GmSpace, gma: u64, buf: &mut [u32]) -> usize {
        if gma % 4 != 0 {
            return 0;
        }
        let mut done = 0usize;
        while done < buf.len() {
            let Some(addr) = gma.checked_add((done as u64).saturating_mul(4)) else {
                return done;
            };
            let Some(gpa) = self.tr.gma_to_gpa(space, addr).filter(|g| g % 4 == 0) else {
                return done;
            };
            let max = (buf.len() - done).saturating_mul(4);
            // A multiple of 4, at least 4: `addr` and `gpa` are aligned, pages hold whole
            // dwords.
            let run = self.run_len(space, addr, gpa, max) / 4;
            let Some(dst) = buf.get_mut(done..done.saturating_add(run)) else {
                return done;
            };
            if run == 0 {
                return done;
            }
            if self.mem.read_dwords(gpa, dst).is_err() {
                // Some frame of the run is not RAM: find the readable prefix page by page.
                return done + self.read_pages(gpa, dst);
            }
            done += run;
        }
        done
    }

    /// Length in bytes of the run at `addr` (translated to `gpa`), at most `max` bytes:
    /// the first page plus every following page that translates to the next frame.
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

    /// Reads `buf` from contiguous, dword-aligned `gpa` page by page; returns the dwords
    /// read before the first failing page.
    fn read_pages(&self, gpa: u64, buf: &mut [u32]) -> usize {
        let mut done = 0usize;
        while done < buf.len() {
            let Some(at) = gpa.checked_add((done as u64).saturating_mul(4)) else {
                return done;
            };
            let n = (page_rest(at) / 4).min(buf.len() - done);
            let ok = n > 0
                && buf
                    .get_mut(done..done + n)
                    .is_some_and(|c| self.mem.read_dwords(at, c).is_ok());
            if !ok {
                return done;
            }
            done += n;
        }
        done
    }
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

    /// Dword `i` of page `p` in [`mem`].
    fn word(p: u64, i: u64) -> u32 {
        (p << 16 | i) as u32
    }

    /// 12 pages; dword `i` of page `p` holds [`word`]`(p, i)`.
    fn mem() -> VecMemory {
        let m = VecMemory::new(12 * PAGE_SIZE);
        for p in 0..12u64 {
            for i in 0..1024 {
                m.write_u32(p * PAGE_SIZE + i * 4, word(p, i)).unwrap();
            }
        }
        m
    }

    #[test]
    fn runs_follow_translation_and_stop_at_holes() {
        let m = mem();
        let r = GmReader { mem: &m, tr: &tr };
        let mut buf = vec![0u32; 7 * 1024];
        // Pages 1..=4 are one run, page 5 reads frame 9, page 6 itself, page 7 is a hole.
        let got = r.read_prefix(GmSpace::Ggtt, 0x1800, &mut buf);
        assert_eq!(got, (0x800 + 5 * 4096) / 4);
        assert_eq!(buf[0], word(1, 0x200));
        assert_eq!(buf[0x200], word(2, 0));
        assert_eq!(
            buf[0x200 + 3 * 1024 + 5],
            word(9, 5),
            "page 5 comes from frame 9"
        );
        assert_eq!(buf[0x200 + 4 * 1024], word(6, 0));
        assert!(!r.read(GmSpace::Ggtt, 0x1800, &mut buf));
        assert!(r.read(GmSpace::Ggtt, 0x1800, &mut buf[..0x200 + 3 * 1024]));
        assert_eq!(
            r.read_prefix(GmSpace::Ggtt, 0x1802, &mut buf),
            0,
            "unaligned"
        );
    }

    #[test]
    fn ram_holes_inside_a_run_end_the_prefix_at_the_hole() {
        // Pages 10..16 translate contiguously but RAM ends at page 12.
        let m = mem();
        let r = GmReader { mem: &m, tr: &tr };
        let mut buf = vec![0u32; 4 * 1024];
        assert_eq!(r.read_prefix(GmSpace::Ggtt, 10 << 12, &mut buf), 2 * 1024);
        assert_eq!(buf[1024 + 7], word(11, 7));
        assert_eq!(r.read_prefix(GmSpace::Ggtt, u64::MAX - 3, &mut buf), 0);
    }
}
