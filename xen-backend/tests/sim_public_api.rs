//! The simulated Xen through the public API only, as the daemon uses it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use mediator::bus::{set_le_value, GuestRange, IoHandler, Space};
use mediator::effects::{Effect, Effects};
use xen_backend::abi::Sbdf;
use xen_backend::ffi::eventfd::poll_readable;
use xen_backend::{
    DeviceServer, Hypervisor, ServerOptions, SimDomainConfig, SimXen, XenBackendError,
};

/// A tiny device: a 4 KiB register file at BAR; a write of 1 to offset 0x10 raises an MSI.
struct Regs {
    regs: Vec<u8>,
}

const BAR: u64 = 0xF100_0000;

impl IoHandler for Regs {
    fn read(&mut self, space: Space, addr: u64, data: &mut [u8], _fx: &mut Effects) {
        match (
            space,
            addr.checked_sub(BAR).and_then(|o| usize::try_from(o).ok()),
        ) {
            (Space::Mmio, Some(o)) if o + data.len() <= self.regs.len() => {
                data.copy_from_slice(&self.regs[o..o + data.len()]);
            }
            _ => set_le_value(data, u64::MAX),
        }
    }
    fn write(&mut self, space: Space, addr: u64, data: &[u8], fx: &mut Effects) {
        if let (Space::Mmio, Some(o)) = (
            space,
            addr.checked_sub(BAR).and_then(|o| usize::try_from(o).ok()),
        ) {
            if o + data.len() <= self.regs.len() {
                self.regs[o..o + data.len()].copy_from_slice(data);
                if o == 0x10 && data[0] == 1 {
                    fx.push(Effect::InjectMsi {
                        addr: 0xFEE0_0000,
                        data: 0x30,
                    });
                }
            }
        }
    }
}

fn run(
    mut srv: Box<dyn DeviceServer>,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<Option<XenBackendError>> {
    thread::spawn(move || {
        let mut dev = Regs {
            regs: vec![0; 4096],
        };
        srv.service(&mut dev).ok(); // initial scan, as after a real attach
        while !stop.load(Ordering::Relaxed) {
            let _ = poll_readable(srv.poll_fd(), Some(Duration::from_millis(20)));
            if let Err(e) = srv.service(&mut dev) {
                return Some(e);
            }
        }
        None
    })
}

#[test]
fn register_file_msi_and_domain_teardown() {
    let xen = SimXen::new();
    let dom = xen
        .create_domain(SimDomainConfig {
            vcpus: 2,
            ..Default::default()
        })
        .unwrap();
    let opts = ServerOptions {
        pci_devices: vec![Sbdf::new(0, 0, 2, 0).unwrap()],
        mmio: vec![GuestRange::new(BAR, 0x1000).unwrap()],
        ..Default::default()
    };
    let hv: &dyn Hypervisor = &xen;
    let srv = hv.attach(dom.domid(), opts).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let t = run(srv, Arc::clone(&stop));
    let v0 = dom.vcpu(0).unwrap();
    let v1 = dom.vcpu(1).unwrap();
    v0.mmio_write(BAR + 0x100, 4, 0xCAFE_F00D);
    assert_eq!(v1.mmio_read(BAR + 0x100, 4), 0xCAFE_F00D);
    assert_eq!(v1.mmio_read(BAR + 0x102, 2), 0xCAFE);
    v0.mmio_write(BAR + 0x10, 1, 1);
    let msi = v1.wait_msi(Duration::from_secs(2)).unwrap();
    assert_eq!((msi.addr, msi.data), (0xFEE0_0000, 0x30));
    // destroy while the loop runs: the loop ends with DomainGone, not a panic or hang
    assert!(xen.destroy_domain(dom.domid()));
    let r = t.join().unwrap();
    assert!(matches!(r, Some(XenBackendError::DomainGone(_))), "{r:?}");
    assert_eq!(v0.mmio_read(BAR, 4), u64::MAX);
    assert!(xen.domains().is_empty());
}
