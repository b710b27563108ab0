use std::collections::BTreeMap;

use super::*;
use crate::memory::VecMemory;

/// Records the host shadow as a map, and can refuse.
#[derive(Default)]
struct FakeHost {
    next: u64,
    maps: BTreeMap<u64, BTreeMap<u64, HostPte>>,
}

impl HostGtt for FakeHost {
    fn ggtt_write(&mut self, _: OwnerId, _: u64, _: Option<HostPte>) -> Result<(), HostError> {
        Ok(())
    }
    fn ppgtt_create(&mut self, _: OwnerId) -> Result<PpgttHandle, HostError> {
        self.next += 1;
        self.maps.insert(self.next, BTreeMap::new());
        Ok(PpgttHandle(self.next))
    }
    fn ppgtt_map(
        &mut self,
        h: PpgttHandle,
        gma: u64,
        pte: Option<HostPte>,
    ) -> Result<(), HostError> {
        let m = self.maps.get_mut(&h.0).ok_or(HostError::UnknownPpgtt(h))?;
        match pte {
            Some(p) => m.insert(gma, p),
            None => m.remove(&gma),
        };
        Ok(())
    }
    fn ppgtt_destroy(&mut self, h: PpgttHandle) -> Result<(), HostError> {
        self.maps
            .remove(&h.0)
            .map(|_| ())
            .ok_or(HostError::UnknownPpgtt(h))
    }
}

const MB: u64 = 1 << 20;

/// Builds a 4-level tree at PML4 0x10000 mapping `pages` (gma → gpa) with tables allocated
/// from 0x11000 upwards.
fn build(mem: &VecMemory, pages: &[(u64, u64)]) -> u64 {
    let pml4 = 0x10000;
    let mut next = 0x11000u64;
    let mut alloc = |mem: &VecMemory, table: u64, idx: u64| -> u64 {
        let slot = table + idx * 8;
        let e = mem.read_u64(slot).unwrap();
        if e & 1 != 0 {
            return e & !0xfff;
        }
        let t = next;
        next += 0x1000;
        mem.write_u64(slot, t | 3).unwrap();
        t
    };
    for &(gma, gpa) in pages {
        let pdp = alloc(mem, pml4, (gma >> 39) & 511);
        let pd = alloc(mem, pdp, (gma >> 30) & 511);
        let pt = alloc(mem, pd, (gma >> 21) & 511);
        mem.write_u64(pt + ((gma >> 12) & 511) * 8, gpa | 3)
            .unwrap();
    }
    pml4
}

fn protected(fx: &Effects) -> Vec<(u64, bool)> {
    fx.as_slice()
        .iter()
        .filter_map(|e| match e {
            Effect::WriteProtect { gfn, protect } => Some((*gfn, *protect)),
            _ => None,
        })
        .collect()
}

#[test]
fn shadows_valid_leaves_and_protects_every_table_frame() {
    let mem = VecMemory::new(4 * MB);
    let pml4 = build(
        &mem,
        &[(0x1_0000_0000, 0x20_0000), (0x1_0000_1000, 0x20_1000)],
    );
    let mut host = FakeHost::default();
    let mut fx = Effects::new();
    let mut m = PpgttManager::new(7);
    let root = PpgttRoot::L4(pml4);
    let h = m.create(root, &mem, &mut host, &mut fx).unwrap();
    let shadow = &host.maps[&h.0];
    assert_eq!(shadow.len(), 2);
    assert_eq!(shadow[&0x1_0000_1000].gfn, 0x201);
    assert_eq!(shadow[&0x1_0000_1000].owner, 7);
    // PML4 + PDP + PD + PT
    let p = protected(&fx);
    assert_eq!(p.len(), 4);
    assert!(p.iter().all(|(_, on)| *on));
    assert!(m.is_protected(pml4 + 8));
    assert_eq!(
        m.translate(root, 0xffff_0001_0000_0abc).map(|l| l.gfn),
        Some(0x200)
    );
    // a second create of the same root reuses the shadow
    assert_eq!(m.create(root, &mem, &mut host, &mut fx).unwrap(), h);
    assert_eq!(m.counters().created, 1);
    let mut fx = Effects::new();
    m.destroy(root, &mut host, &mut fx);
    assert!(host.maps.is_empty());
    assert_eq!(protected(&fx).len(), 4);
    assert!(protected(&fx).iter().all(|(_, on)| !*on));
    assert!(!m.is_protected(pml4));
}

#[test]
fn foreign_table_frames_and_huge_pages_are_rejected_and_counted() {
    let mem = VecMemory::new(4 * MB);
    // A leaf pointing beyond guest RAM (another guest's frame) and one at the PML4 itself.
    let pml4 = build(
        &mem,
        &[(0x1000, 0x20_0000), (0x2000, 64 * MB), (0x3000, 0x10000)],
    );
    // A 2 MiB page in the PD and a PDP entry pointing outside RAM.
    let pdp = mem.read_u64(pml4).unwrap() & !0xfff;
    let pd = mem.read_u64(pdp).unwrap() & !0xfff;
    mem.write_u64(pd + 8, 0x40_0000 | 0x83).unwrap();
    mem.write_u64(pdp + 8, (128 * MB) | 3).unwrap();
    let mut host = FakeHost::default();
    let mut fx = Effects::new();
    let mut m = PpgttManager::new(1);
    let h = m
        .create(PpgttRoot::L4(pml4), &mem, &mut host, &mut fx)
        .unwrap();
    assert_eq!(
        host.maps[&h.0].keys().copied().collect::<Vec<_>>(),
        vec![0x1000]
    );
    let c = m.counters();
    assert_eq!(
        (c.foreign_entries, c.table_entries, c.huge_entries),
        (2, 1, 1)
    );
}

#[test]
fn trapped_write_commits_to_ram_and_reshadows() {
    let mem = VecMemory::new(4 * MB);
    let pml4 = build(&mem, &[(0x1000, 0x20_0000)]);
    let mut host = FakeHost::default();
    let mut fx = Effects::new();
    let mut m = PpgttManager::new(1);
    let root = PpgttRoot::L4(pml4);
    let h = m.create(root, &mem, &mut host, &mut fx).unwrap();
    let pt_entry = {
        let pdp = mem.read_u64(pml4).unwrap() & !0xfff;
        let pd = mem.read_u64(pdp).unwrap() & !0xfff;
        let pt = mem.read_u64(pd).unwrap() & !0xfff;
        pt + 8
    };
    assert!(m.is_protected(pt_entry));
    // Map page 0x1000 elsewhere and add 0x2000, both through trapped writes.
    m.trapped_write(
        pt_entry,
        &(0x30_0000u64 | 1).to_le_bytes(),
        &mem,
        &mut host,
        &mut fx,
    )
    .unwrap();
    m.trapped_write(
        pt_entry + 8,
        &(0x30_1000u64 | 3).to_le_bytes(),
        &mem,
        &mut host,
        &mut fx,
    )
    .unwrap();
    assert_eq!(mem.read_u64(pt_entry).unwrap(), 0x30_0001);
    let s = &host.maps[&h.0];
    assert_eq!(s[&0x1000].gfn, 0x300);
    assert!(!s[&0x1000].writable);
    assert_eq!(s[&0x2000].gfn, 0x301);
    // Now unmap 0x1000: the host mapping goes away.
    m.trapped_write(pt_entry, &0u64.to_le_bytes(), &mem, &mut host, &mut fx)
        .unwrap();
    assert!(!host.maps[&h.0].contains_key(&0x1000));
    assert_eq!(m.counters().reshadows, 3);
}

#[test]
fn three_level_roots_walk_each_pdp() {
    let mem = VecMemory::new(4 * MB);
    // PD at 0x10000 for PDP1 (GMA 1 GiB..2 GiB), PT at 0x11000.
    mem.write_u64(0x10000, 0x11000 | 3).unwrap();
    mem.write_u64(0x11000 + 5 * 8, 0x25_0000 | 3).unwrap();
    let root = PpgttRoot::L3([0, 0x10000, 0, 0]);
    let mut host = FakeHost::default();
    let mut fx = Effects::new();
    let mut m = PpgttManager::new(1);
    let h = m.create(root, &mem, &mut host, &mut fx).unwrap();
    assert_eq!(host.maps[&h.0][&(0x4000_0000 + 0x5000)].gfn, 0x250);
}

#[test]
fn cyclic_and_oversized_trees_are_bounded() {
    let mem = VecMemory::new(4 * MB);
    // PML4 entry 0 points at the PML4 itself: a cycle. Walk must terminate.
    mem.write_u64(0x10000, 0x10000 | 3).unwrap();
    let mut host = FakeHost::default();
    let mut fx = Effects::new();
    let mut m = PpgttManager::new(1);
    assert!(m
        .create(PpgttRoot::L4(0x10000), &mem, &mut host, &mut fx)
        .is_ok());
    // A root outside RAM is refused.
    assert_eq!(
        m.create(PpgttRoot::L4(64 * MB), &mem, &mut host, &mut fx),
        Err(PpgttError::BadRoot(64 * MB))
    );
    // Too many tables: 600 distinct PTs under one PD.
    let mem = VecMemory::new(8 * MB);
    mem.write_u64(0x10000, 0x11000 | 3).unwrap();
    mem.write_u64(0x11000, 0x12000 | 3).unwrap();
    for i in 0..512u64 {
        mem.write_u64(0x12000 + i * 8, (0x100000 + i * 0x1000) | 3)
            .unwrap();
    }
    let mut m = PpgttManager::new(1);
    m.max_tables = 100;
    assert_eq!(
        m.create(PpgttRoot::L4(0x10000), &mem, &mut host, &mut fx),
        Err(PpgttError::TooManyTables(100))
    );
    assert!(m.is_empty());
}
