//! RAM-backed GGTT window end to end on the simulated Xen, public APIs only: a guest
//! programs BAR0, its PTE writes land in RAM without any ioreq, and its GGTT flush makes
//! the vGPU apply the in-window entries and drop (and count) the rest.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use mediator::bus::{IoHandler, Space};
use mediator::effects::Effects;
use mediator::ggtt_ram::GgttBacking;
use mediator::partition::{HostDescription, Partitioner, MIB};
use mediator::vgpu::{Vgpu, VgpuConfig};
use xen_backend::abi::Sbdf;
use xen_backend::ffi::eventfd::poll_readable;
use xen_backend::{DeviceServer, Hypervisor, ServerOptions, SimDomainConfig, SimXen};

const BAR0: u64 = 0xf000_0000;
const BAR2: u64 = 0xe000_0000;
const PTES: u64 = BAR0 + 8 * MIB;
const FLUSH: u64 = BAR0 + 0x10_1008;
const BDF: u16 = 0x10;

struct Shared(Arc<Mutex<Vgpu>>);

impl IoHandler for Shared {
    fn read(&mut self, space: Space, addr: u64, data: &mut [u8], fx: &mut Effects) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .read(space, addr, data, fx);
    }
    fn write(&mut self, space: Space, addr: u64, data: &[u8], fx: &mut Effects) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .write(space, addr, data, fx);
    }
}

fn serve(
    mut srv: Box<dyn DeviceServer>,
    vgpu: Arc<Mutex<Vgpu>>,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<Box<dyn DeviceServer>> {
    thread::spawn(move || {
        let mut h = Shared(vgpu);
        srv.service(&mut h).ok();
        while !stop.load(Ordering::Relaxed) {
            let _ = poll_readable(srv.poll_fd(), Some(Duration::from_millis(10)));
            if srv.service(&mut h).is_err() {
                break;
            }
        }
        srv
    })
}

#[test]
fn guest_pte_writes_go_to_ram_and_a_flush_applies_them() {
    let xen = SimXen::new();
    let dom = xen.create_domain(SimDomainConfig::default()).unwrap();
    let srv = xen
        .attach(
            dom.domid(),
            ServerOptions {
                pci_devices: vec![Sbdf::from_u32(u32::from(BDF))],
                ..Default::default()
            },
        )
        .unwrap();
    let host = HostDescription::default();
    let alloc = Partitioner::new(host)
        .unwrap()
        .allocate(64 * MIB, 256 * MIB, 4)
        .unwrap();
    let mut cfg = VgpuConfig::new(1, "GVTg_V5_8", alloc, 4);
    cfg.ggtt_backing = GgttBacking::Ram;
    let vgpu = Arc::new(Mutex::new(Vgpu::new(cfg, &host, srv.guest_memory())));
    let stop = Arc::new(AtomicBool::new(false));
    let th = serve(srv, Arc::clone(&vgpu), Arc::clone(&stop));

    // hvmloader: BARs, then memory decode.
    let cpu = dom.vcpu(0).unwrap();
    cpu.pci_cfg_write(BDF, 0x10, 4, BAR0 as u32 | 4);
    cpu.pci_cfg_write(BDF, 0x18, 4, BAR2 as u32 | 0xc);
    cpu.pci_cfg_write(BDF, 0x04, 2, 7);
    assert_eq!(dom.extra_ram(), vec![(PTES >> 12, 2048)]);
    assert_eq!(cpu.mmio_read(BAR0 + 0x7_8000, 8), 0x4776_5447_7654_4776);

    // i915: scratch PTEs over everything it does not own, real pages in its windows.
    let entry = |gm: u64| PTES + (gm >> 12) * 8;
    let before = *vgpu.lock().unwrap().counters();
    let scratch = 0x10_0001u64; // guest RAM page 1 MiB
    for gm in (0..8 * MIB).step_by(4096) {
        cpu.mmio_write(entry(gm), 8, scratch); // outside the windows
    }
    let low = alloc.low.base;
    let high = alloc.high.base;
    for i in 0..16u64 {
        cpu.mmio_write(entry(low + i * 4096), 8, (0x20_0000 + i * 4096) | 1);
    }
    cpu.mmio_write(entry(high), 8, (2 << 30) | 1); // not guest RAM
    cpu.mmio_write(entry((4 << 30) - 4096), 8, scratch); // guard page
    let mid = *vgpu.lock().unwrap().counters();
    assert_eq!(
        mid.mmio_writes, before.mmio_writes,
        "PTE writes must not trap"
    );
    assert_eq!(
        cpu.mmio_read(entry(low + 4096), 8),
        0x20_1001,
        "RAM reads back"
    );
    assert_eq!(vgpu.lock().unwrap().ggtt().translate(low), None);

    cpu.mmio_write(FLUSH, 4, 1);
    {
        let v = vgpu.lock().unwrap();
        let c = v.counters();
        assert_eq!(
            c.mmio_writes,
            before.mmio_writes + 1,
            "only the flush trapped"
        );
        assert_eq!(c.ggtt_writes_applied, 16);
        assert_eq!(c.ggtt_dropped_not_owned, 1);
        assert_eq!(c.ggtt_dropped_outside, 2048 + 1);
        assert_eq!(c.ggtt_ram_read_errors, 0);
        assert_eq!(v.ggtt().translate(low + 15 * 4096 + 8), Some(0x20_f008));
        assert_eq!(v.ggtt().translate(high), None);
    }

    // A guest write to a register in the lower half still traps.
    cpu.mmio_write(BAR0 + 0x4_0e0, 4, 0x30907);
    assert_eq!(cpu.mmio_read(BAR0 + 0x4_0e0, 4), 0x30907);

    // Teardown gives the RAM back.
    stop.store(true, Ordering::Relaxed);
    drop(th.join().unwrap());
    assert!(dom.extra_ram().is_empty());
}
