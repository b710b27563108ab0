//! Fuzz target: the PPGTT walker (`mediator::ppgtt::walk`) over arbitrary guest memory.
//! The input is the root (3- or 4-level) and the contents of 32 pages of guest RAM. The
//! walk must never panic, must respect the table limit, and every leaf it keeps must be a
//! guest-owned frame that is not one of the walked table frames.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mediator::memory::{GuestMemory, VecMemory, PAGE_SIZE};
use mediator::ppgtt::{walk, PpgttError, PpgttRoot};

const PAGES: u64 = 32;
const MAX_TABLES: usize = 48;

fuzz_target!(|data: &[u8]| {
    if data.len() < 33 {
        return;
    }
    let (head, body) = data.split_at(33);
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&head[1 + 8 * i..9 + 8 * i]);
        // Mostly point into RAM so walks go deep; keep some raw values.
        let v = u64::from_le_bytes(w);
        if head[0] & 0x80 != 0 {
            v
        } else {
            v % (PAGES * PAGE_SIZE + PAGE_SIZE)
        }
    };
    let root = if head[0] & 1 == 0 {
        PpgttRoot::L4(word(0) & !0xfff)
    } else {
        PpgttRoot::L3([word(0), word(1), word(2), word(3)])
    };
    let mem = VecMemory::new(PAGES * PAGE_SIZE);
    // Spread the input over the pages (repeating it) so every table has content.
    if !body.is_empty() {
        let mut page = vec![0u8; PAGE_SIZE as usize];
        for p in 0..PAGES {
            for (i, b) in page.iter_mut().enumerate() {
                *b = body[(i + p as usize * 61) % body.len()];
            }
            let _ = mem.write(p * PAGE_SIZE, &page);
        }
    }
    match walk(root, &mem, MAX_TABLES) {
        Ok(w) => {
            assert!(w.tables.len() <= MAX_TABLES);
            for (gma, leaf) in &w.leaves {
                assert_eq!(gma % PAGE_SIZE, 0);
                assert!(mem.owns_frame(leaf.gfn), "foreign frame {:#x}", leaf.gfn);
                assert!(!w.tables.contains(&leaf.gfn), "table frame {:#x}", leaf.gfn);
            }
        }
        Err(PpgttError::TooManyTables(n)) => assert_eq!(n, MAX_TABLES),
        Err(_) => {}
    }
});
