//! Fuzz target: a vGPU (`mediator::vgpu::Vgpu`) driven through `IoHandler` as a backend's
//! dispatch loop drives it: arbitrary (space, address, size, value) sequences over PCI
//! config space, BAR0 (registers incl. PVINFO, the display with its AUX channels and
//! GMBUS, the GGTT window), the aperture and stray addresses, interleaved with display
//! ticks. It must never panic, and reads must fill only the requested bytes.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use mediator::bus::{IoHandler, Space};
use mediator::effects::Effects;
use mediator::memory::{GuestMemory, VecMemory};
use mediator::partition::{HostDescription, Partitioner, MIB};
use mediator::vgpu::{Vgpu, VgpuConfig, DEFAULT_SBDF};

const BAR0: u64 = 0xf000_0000;
const BAR2: u64 = 0xc000_0000;
const CFG: u64 = (DEFAULT_SBDF as u64) << 32;
/// BAR0 is 16 MiB: 2 MiB of registers, then the GGTT window.
const BAR0_SIZE: u64 = 16 << 20;

fn vgpu() -> Option<Vgpu> {
    let host = HostDescription::default();
    let a = Partitioner::new(host)
        .ok()?
        .allocate(128 * MIB, 512 * MIB, 4)
        .ok()?;
    let mem: Arc<dyn GuestMemory> = Arc::new(VecMemory::new(2 * MIB));
    let mut c = VgpuConfig::new(1, "GVTg_V5_4", a, 4);
    c.headless = false;
    let mut v = Vgpu::new(c, &host, mem);
    // Enable BAR0/BAR2 and memory decode like a guest BIOS would, so MMIO reaches the
    // device; the input may reprogram all of it.
    for (reg, val, len) in [
        (0x10, BAR0 as u32 | 4, 4),
        (0x18, BAR2 as u32 | 0xc, 4),
        (0x04, 0x6, 2),
    ] {
        let b = u32::to_le_bytes(val);
        v.write(Space::PciConfig, CFG | reg, &b[..len], &mut Effects::new());
    }
    Some(v)
}

fuzz_target!(|data: &[u8]| {
    let Some(mut v) = vgpu() else {
        return;
    };
    let mut now = 0u64;
    // Each op: kind (1), address (4), value (8) = 13 bytes.
    for op in data.chunks_exact(13).take(256) {
        let kind = op[0];
        let raw = u32::from_le_bytes([op[1], op[2], op[3], op[4]]);
        let mut value = [0u8; 8];
        value.copy_from_slice(&op[5..13]);
        let size = [1usize, 2, 4, 8][usize::from(kind >> 6)];
        let (space, addr) = match (kind >> 2) & 7 {
            0..=3 => (Space::Mmio, BAR0 + u64::from(raw) % BAR0_SIZE),
            4 => (Space::PciConfig, CFG | u64::from(raw & 0xfff)),
            5 => (Space::Mmio, BAR2 + u64::from(raw)),
            6 => (Space::Pio, u64::from(raw & 0xffff)),
            _ => (Space::Mmio, u64::from(raw) << 12 | u64::from(op[5])),
        };
        let mut fx = Effects::new();
        match kind & 3 {
            0 | 1 => v.write(space, addr, &value[..size], &mut fx),
            2 => {
                let mut buf = [0xEEu8; 16];
                v.read(space, addr, &mut buf[..size], &mut fx);
                assert!(buf[size..].iter().all(|b| *b == 0xEE), "read overran");
            }
            _ => {
                now = now.saturating_add(u64::from(raw) * 1000);
                v.display_tick(now, &mut fx);
            }
        }
        let _ = v.take_events();
    }
});
