//! Guest-side data structures an i915 guest builds in its own RAM: a frame allocator, the
//! logical ring context image (spec §5.5) and 4-level PPGTT page tables (spec §4.7).

use crate::memory::{GuestMemory, GuestMemoryError, PAGE_SIZE};

/// Hands out guest frames from `[next, end)`, page by page (never reused).
#[derive(Debug, Clone)]
pub struct FrameAlloc {
    next: u64,
    end: u64,
}

impl FrameAlloc {
    /// Frames in `[start, end)` (page aligned).
    pub fn new(start: u64, end: u64) -> Self {
        Self {
            next: start.next_multiple_of(PAGE_SIZE),
            end,
        }
    }

    /// `pages` contiguous zeroed-by-caller frames; `None` when exhausted.
    pub fn alloc(&mut self, pages: u64) -> Option<u64> {
        let at = self.next;
        let end = at.checked_add(pages.checked_mul(PAGE_SIZE)?)?;
        (end <= self.end).then(|| {
            self.next = end;
            at
        })
    }
}

/// Dword index of RING_TAIL's value in the register-state page.
pub const CTX_TAIL_DW: u64 = 0x07;
/// Dword index of RING_HEAD's value.
pub const CTX_HEAD_DW: u64 = 0x05;

/// Writes a fresh Gen9 register-state page (page 1 of the image at `image_gpa`) for an
/// engine at `base`: ring at `ring_gma` of `ring_pages` pages, head = tail = 0, and the
/// PML4 in PDP0. Page 0 (PPHWSP) is zeroed.
pub fn write_context_image(
    mem: &dyn GuestMemory,
    image_gpa: u64,
    base: u32,
    ring_gma: u32,
    ring_pages: u32,
    pml4: u64,
) -> Result<(), GuestMemoryError> {
    let mut page = vec![0u32; 1024];
    let mut put = |dw: usize, v: u32| {
        if let Some(slot) = page.get_mut(dw) {
            *slot = v;
        }
    };
    put(0x01, 0x1100_101B);
    let pairs: [(usize, u32, u32); 5] = [
        (0x02, 0x244, 0xFFFF_0009), // CONTEXT_CONTROL: restore inhibit + inhibit sync switch
        (0x04, 0x034, 0),
        (0x06, 0x030, 0),
        (0x08, 0x038, ring_gma & !0xfff),
        (
            0x0A,
            0x03C,
            (ring_pages.saturating_sub(1) << 12) & 0x1F_F000 | 1,
        ),
    ];
    for (dw, reg, v) in pairs {
        put(dw, base + reg);
        put(dw + 1, v);
    }
    put(0x21, 0x1100_1011);
    put(0x22, base + 0x3A8);
    for n in 0..4u32 {
        let udw = 0x24 + 4 * (3 - n as usize);
        put(udw, base + 0x274 + 8 * n);
        put(udw + 2, base + 0x270 + 8 * n);
    }
    put(0x31, u32::try_from(pml4 >> 32).unwrap_or(0));
    put(0x33, u32::try_from(pml4 & 0xffff_ffff).unwrap_or(0));
    let bytes: Vec<u8> = page.iter().flat_map(|d| d.to_le_bytes()).collect();
    mem.write(image_gpa, &vec![0u8; PAGE_SIZE as usize])?;
    mem.write(image_gpa + PAGE_SIZE, &bytes)
}

/// Sets RING_TAIL in the image at `image_gpa` (i915 does this on every submission).
pub fn set_context_tail(
    mem: &dyn GuestMemory,
    image_gpa: u64,
    tail: u32,
) -> Result<(), GuestMemoryError> {
    mem.write_u32(image_gpa + PAGE_SIZE + CTX_TAIL_DW * 4, tail)
}

/// Reads RING_HEAD back from the image (written by the host on completion).
pub fn context_head(mem: &dyn GuestMemory, image_gpa: u64) -> Result<u32, GuestMemoryError> {
    mem.read_u32(image_gpa + PAGE_SIZE + CTX_HEAD_DW * 4)
}

/// A guest 4-level PPGTT whose table pages come from a [`FrameAlloc`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageTables {
    /// GPA of the PML4.
    pub pml4: u64,
}

impl PageTables {
    /// An empty PML4.
    pub fn new(mem: &dyn GuestMemory, frames: &mut FrameAlloc) -> Option<Self> {
        let pml4 = zeroed(mem, frames)?;
        Some(Self { pml4 })
    }

    /// Maps the 4 KiB page at `gma` to guest-physical `gpa` (read/write). `gpa` is not
    /// checked: a hostile guest uses this to point at frames it does not own.
    pub fn map(
        &self,
        mem: &dyn GuestMemory,
        frames: &mut FrameAlloc,
        gma: u64,
        gpa: u64,
    ) -> Option<()> {
        let mut table = self.pml4;
        for shift in [39u32, 30, 21] {
            let slot = table + ((gma >> shift) & 511) * 8;
            let e = mem.read_u64(slot).ok()?;
            table = if e & 1 != 0 {
                e & 0x0000_FFFF_FFFF_F000
            } else {
                let t = zeroed(mem, frames)?;
                mem.write_u64(slot, t | 3).ok()?;
                t
            };
        }
        let slot = table + ((gma >> 12) & 511) * 8;
        mem.write_u64(slot, (gpa & !0xfff) | 3).ok()
    }
}

fn zeroed(mem: &dyn GuestMemory, frames: &mut FrameAlloc) -> Option<u64> {
    let f = frames.alloc(1)?;
    mem.write(f, &vec![0u8; PAGE_SIZE as usize]).ok()?;
    Some(f)
}
