use std::collections::HashMap;
use std::sync::Mutex;

use super::*;
use crate::guest_port::Msi;
use crate::memory::{GuestMemory, VecMemory};

/// A scripted device: PCI config bytes, MMIO as a plain store preloaded with PVINFO.
struct FakePort {
    cfg: Mutex<Vec<u8>>,
    mmio: Mutex<HashMap<u64, u64>>,
    log: Mutex<Vec<(u64, u64)>>,
    ram: VecMemory,
}

const BAR0: u64 = 0xf000_0000;

impl FakePort {
    fn new(magic: u64, caps: u64) -> Self {
        let mut cfg = vec![0u8; 256];
        cfg[0..2].copy_from_slice(&0x8086u16.to_le_bytes());
        cfg[0x34] = 0xAC;
        cfg[0xAC] = 0x05;
        let mut m = HashMap::new();
        let p = BAR0 + 0x78000;
        m.insert(p, magic);
        m.insert(p + 8, 1);
        m.insert(p + 0x10, caps);
        m.insert(p + 0x40, 0x0800_0000);
        m.insert(p + 0x44, 0x0800_0000);
        m.insert(p + 0x48, 0x1000_0000);
        m.insert(p + 0x4C, 0x2000_0000);
        Self {
            cfg: Mutex::new(cfg),
            mmio: Mutex::new(m),
            log: Mutex::new(Vec::new()),
            ram: VecMemory::new(0x100_0000),
        }
    }
    fn written(&self, addr: u64) -> Vec<u64> {
        let log = self.log.lock().unwrap();
        log.iter()
            .filter(|(a, _)| *a == addr)
            .map(|(_, v)| *v)
            .collect()
    }
}

impl GuestPort for FakePort {
    fn mmio_read(&self, addr: u64, _size: u8) -> u64 {
        *self.mmio.lock().unwrap().get(&addr).unwrap_or(&0)
    }
    fn mmio_write(&self, addr: u64, _size: u8, value: u64) {
        self.log.lock().unwrap().push((addr, value));
        self.mmio.lock().unwrap().insert(addr, value);
    }
    fn pio_read(&self, _: u16, _: u8) -> u32 {
        u32::MAX
    }
    fn pio_write(&self, _: u16, _: u8, _: u32) {}
    fn pci_cfg_read(&self, _: u16, reg: u16, size: u8) -> u32 {
        let c = self.cfg.lock().unwrap();
        let mut b = [0u8; 4];
        for i in 0..usize::from(size) {
            b[i] = c[usize::from(reg) + i];
        }
        u32::from_le_bytes(b)
    }
    fn pci_cfg_write(&self, _: u16, reg: u16, size: u8, value: u32) {
        let mut c = self.cfg.lock().unwrap();
        for i in 0..usize::from(size) {
            c[usize::from(reg) + i] = value.to_le_bytes()[i];
        }
    }
    fn ram(&self) -> &dyn GuestMemory {
        &self.ram
    }
    fn wait_msi(&self, _: Duration) -> Option<Msi> {
        None
    }
}

#[test]
fn probe_detects_vgpu_programs_bars_msi_and_interrupts() {
    let port = FakePort::new(PVINFO_MAGIC, 0xC);
    let gpu = GuestGpu::probe(&port, GuestConfig::default()).unwrap();
    assert_eq!(gpu.info().high, (0x1000_0000, 0x2000_0000));
    assert_eq!(port.pci_cfg_read(0x10, 0x10, 4), 0xf000_0000);
    assert_eq!(port.pci_cfg_read(0x10, 0x18, 4), 0xc000_0000);
    assert_eq!(port.pci_cfg_read(0x10, 0x04, 2) & 6, 6);
    assert_eq!(port.pci_cfg_read(0x10, 0xAE, 2) & 1, 1, "MSI enabled");
    assert_eq!(port.pci_cfg_read(0x10, 0xB0, 4), 0xfee0_0000);
    assert_eq!(port.written(BAR0 + 0x4430C).last(), Some(&0x0909_0909));
    assert_eq!(port.written(BAR0 + 0x4433C).last(), Some(&0x909));
    assert_eq!(port.written(BAR0 + 0x44200).last(), Some(&0x8000_0000));
}

#[test]
fn probe_refuses_non_vgpu_and_missing_caps() {
    let port = FakePort::new(0x1234, 0xC);
    assert!(matches!(
        GuestGpu::probe(&port, GuestConfig::default()),
        Err(GuestError::NotVgpu(0x1234))
    ));
    let port = FakePort::new(PVINFO_MAGIC, 0x4);
    assert_eq!(
        GuestGpu::probe(&port, GuestConfig::default()).unwrap_err(),
        GuestError::Caps(4)
    );
}

#[test]
fn enable_and_submit_follow_spec_order_inside_the_windows() {
    let port = FakePort::new(PVINFO_MAGIC, 0xC);
    let mut gpu = GuestGpu::probe(&port, GuestConfig::default()).unwrap();
    gpu.enable_engine(EngineId::Bcs).unwrap();
    // PPGTT announced with g2v 4 before the engine was enabled.
    assert_eq!(port.written(BAR0 + 0x78818), vec![4]);
    let b = BAR0 + 0x22000;
    assert_eq!(port.written(b + 0x3A0), vec![0xFFFF_0505]);
    assert_eq!(port.written(b + 0x29C), vec![0x8000_8000]);
    let hwsp = port.written(b + 0x80)[0];
    assert!((0x1000_0000..0x3000_0000).contains(&hwsp));
    // Every GGTT PTE written lies in the guest's windows.
    let log = port.log.lock().unwrap().clone();
    for (a, _) in log.iter().filter(|(a, _)| *a >= BAR0 + 0x80_0000) {
        let gma = (a - BAR0 - 0x80_0000) / 8 * 4096;
        assert!((0x0800_0000..0x3000_0000).contains(&gma), "{gma:#x}");
    }
    drop(log);
    let s = gpu.create_surface(64, 16).unwrap();
    assert_eq!(s.gma, 0x0800_0000);
    let seq = gpu.fill(&s, (0, 0, 8, 8), 0xff).unwrap();
    assert_eq!(seq, 1);
    let elsp: Vec<u64> = port.written(b + 0x230);
    assert_eq!(elsp.len(), 4);
    assert_eq!(elsp[3] & 0xfff, 0x119);
    assert_eq!(
        gpu.wait(EngineId::Bcs, Duration::from_millis(20)),
        Err(GuestError::Timeout(EngineId::Bcs))
    );
}
