#![allow(clippy::type_complexity)]

use super::*;
use crate::abi::{Ioreq, Sbdf, IOREQ_TYPE_COPY, IOREQ_TYPE_PCI_CONFIG, STATE_IOREQ_NONE};
use crate::ffi::eventfd::poll_readable;
use mediator::bus::{set_le_value, GuestRange, IoHandler};
use mediator::effects::{Effect, Effects};
use std::sync::atomic::AtomicBool;
use std::thread;

type Log = Arc<Mutex<Vec<(Space, u64, bool, Vec<u8>)>>>;

/// Reads return `addr ^ SALT`; everything is logged; a write to `trap_on` traps MMIO
/// range `trap_range`.
#[derive(Clone, Default)]
struct Dev {
    log: Log,
    trap_on: Option<(Space, u64, GuestRange)>,
}

const SALT: u64 = 0x5A5A_0000_A5A5_0000;

impl IoHandler for Dev {
    fn read(&mut self, space: Space, addr: u64, data: &mut [u8], _fx: &mut Effects) {
        set_le_value(data, addr ^ SALT);
        self.log
            .lock()
            .unwrap()
            .push((space, addr, true, data.to_vec()));
    }
    fn write(&mut self, space: Space, addr: u64, data: &[u8], fx: &mut Effects) {
        if let Some((s, a, range)) = self.trap_on {
            if s == space && a == addr {
                fx.push(Effect::Trap {
                    space: Space::Mmio,
                    range,
                });
            }
        }
        self.log
            .lock()
            .unwrap()
            .push((space, addr, false, data.to_vec()));
    }
}

/// Runs the daemon side on a thread until `stop` or the domain is gone.
struct Loop {
    stop: Arc<AtomicBool>,
    join: Option<thread::JoinHandle<(Box<dyn DeviceServer>, Option<XenBackendError>)>>,
}

impl Loop {
    fn start(mut server: Box<dyn DeviceServer>, mut dev: Dev) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = Arc::clone(&stop);
        let join = thread::spawn(move || {
            while !s2.load(Ordering::Relaxed) {
                let _ = poll_readable(server.poll_fd(), Some(Duration::from_millis(20)));
                if let Err(e) = server.service(&mut dev) {
                    return (server, Some(e));
                }
            }
            (server, None)
        });
        Self {
            stop,
            join: Some(join),
        }
    }
    fn finish(mut self) -> (Box<dyn DeviceServer>, Option<XenBackendError>) {
        self.stop.store(true, Ordering::Relaxed);
        self.join.take().unwrap().join().unwrap()
    }
}

fn range(base: u64, len: u64) -> GuestRange {
    GuestRange::new(base, len).unwrap()
}

fn mask(size: u8) -> u64 {
    if size == 8 {
        u64::MAX
    } else {
        (1 << (8 * u32::from(size))) - 1
    }
}

const BAR: u64 = 0xF000_0000;
const GPU: Sbdf = Sbdf {
    segment: 0,
    bus: 0,
    device: 2,
    function: 0,
};

fn setup(cfg: SimDomainConfig, opts: ServerOptions) -> (SimXen, SimDomain, Box<dyn DeviceServer>) {
    let xen = SimXen::new();
    let dom = xen.create_domain(cfg).unwrap();
    let srv = xen.attach(dom.domid(), opts).unwrap();
    (xen, dom, srv)
}

fn gpu_opts() -> ServerOptions {
    ServerOptions {
        pci_devices: vec![GPU],
        mmio: vec![range(BAR, 0x10_0000)],
        pio: vec![range(0x3C0, 0x20)],
        ..ServerOptions::default()
    }
}

#[test]
fn every_space_and_size_round_trips() {
    let (_xen, dom, srv) = setup(SimDomainConfig::default(), gpu_opts());
    let dev = Dev::default();
    let lp = Loop::start(srv, dev.clone());
    let v = dom.vcpu(0).unwrap();
    for size in [1u8, 2, 4, 8] {
        let a = BAR + 0x100 * u64::from(size);
        assert_eq!(v.mmio_read(a, size), (a ^ SALT) & mask(size));
        v.mmio_write(a, size, 0x1122_3344_5566_7788);
    }
    for size in [1u8, 2, 4] {
        assert_eq!(
            u64::from(v.pio_read(0x3C4, size)),
            (0x3C4 ^ SALT) & mask(size)
        );
        v.pio_write(0x3C5, size, 0xA1B2_C3D4);
        let cfg = v.pci_cfg_read(GPU.bdf(), 0x10, size);
        assert_eq!(u64::from(cfg), (GPU.ioreq_addr(0x10) ^ SALT) & mask(size));
        v.pci_cfg_write(GPU.bdf(), 0x3C, size, 0xFFEE_DDCC);
    }
    // CF8/CFC decoding reaches the same PCI function.
    v.pio_write(0xCF8, 4, 0x8000_0000 | u32::from(GPU.bdf()) << 8 | 0x04);
    assert_eq!(
        u64::from(v.pio_read(0xCFE, 2)),
        (GPU.ioreq_addr(0x06) ^ SALT) & 0xFFFF
    );
    // Unclaimed accesses read all-ones and never reach the device.
    assert_eq!(v.mmio_read(0xE000_0000, 4), u64::MAX);
    assert_eq!(v.pci_cfg_read(0x18, 0, 4), u32::MAX);
    let (srv, err) = lp.finish();
    assert!(err.is_none());
    let log = dev.log.lock().unwrap();
    let writes: Vec<_> = log.iter().filter(|l| !l.2).collect();
    assert_eq!(writes.len(), 4 + 3 + 3);
    assert_eq!(writes[3].3, 0x1122_3344_5566_7788u64.to_le_bytes().to_vec());
    assert_eq!(writes[4], &(Space::Pio, 0x3C5, false, vec![0xD4]));
    assert_eq!(
        writes[5],
        &(Space::PciConfig, GPU.ioreq_addr(0x3C), false, vec![0xCC])
    );
    let c = srv.counters().dispatch;
    assert_eq!((c.mmio, c.pio, c.pci_config), (8, 6, 7));
    assert_eq!(dom.stats().unclaimed, 2);
}

#[test]
fn rep_accesses_copy_through_guest_ram_both_ways() {
    let (_xen, dom, srv) = setup(SimDomainConfig::default(), gpu_opts());
    let dev = Dev::default();
    let lp = Loop::start(srv, dev.clone());
    let v = dom.sim_vcpu(0).unwrap();
    let ram = dom.ram();
    for df in [false, true] {
        dev.log.lock().unwrap().clear();
        // MMIO -> RAM, 8 dwords
        let (mmio, buf) = if df {
            (BAR + 0x1C, 0x2000 + 0x1C)
        } else {
            (BAR, 0x2000)
        };
        assert!(v.mmio_rep(mmio, buf, 4, 8, true, df));
        for i in 0..8u64 {
            let a = BAR + 4 * i;
            assert_eq!(
                u64::from(ram.read_u32(0x2000 + 4 * i).unwrap()),
                (a ^ SALT) & 0xFFFF_FFFF
            );
        }
        // RAM -> port, fixed port
        ram.write(0x3000, &[9, 8, 7, 6]).unwrap();
        let start = if df { 0x3003 } else { 0x3000 };
        assert!(v.pio_rep(0x3C8, start, 1, 4, false, df));
        let log = dev.log.lock().unwrap();
        let out: Vec<u8> = log
            .iter()
            .filter(|l| l.0 == Space::Pio)
            .map(|l| l.3[0])
            .collect();
        assert_eq!(
            out,
            if df {
                vec![6, 7, 8, 9]
            } else {
                vec![9, 8, 7, 6]
            }
        );
    }
    lp.finish();
}

#[test]
fn buffered_vga_writes_and_timeoffset_land() {
    let opts = ServerOptions {
        mmio: vec![range(0xA0000, 0x20000)],
        buffered: true,
        ..ServerOptions::default()
    };
    let (_xen, dom, srv) = setup(SimDomainConfig::default(), opts);
    let dev = Dev::default();
    let lp = Loop::start(srv, dev.clone());
    let v = dom.sim_vcpu(0).unwrap();
    v.mmio_write(0xA0010, 8, 0x0102_0304_0506_0708);
    v.mmio_write(0xA0020, 2, 0xBEEF);
    assert_eq!(v.rtc_offset_changed(-5), 1);
    // a read is still synchronous, and orders after the buffered writes
    assert_eq!(v.mmio_read(0xA0000, 1), (0xA0000 ^ SALT) & 0xFF);
    let (srv, _) = lp.finish();
    let log = dev.log.lock().unwrap();
    assert_eq!(
        log[0],
        (
            Space::Mmio,
            0xA0010,
            false,
            0x0102_0304_0506_0708u64.to_le_bytes().to_vec()
        )
    );
    assert_eq!(log[1], (Space::Mmio, 0xA0020, false, vec![0xEF, 0xBE]));
    assert_eq!(dom.stats().buffered, 2);
    let c = srv.counters().dispatch;
    assert_eq!((c.buffered, c.timeoffset), (3, 1));
}

#[test]
fn destroy_mid_request_keeps_loop_alive_and_frees() {
    let xen = SimXen::new();
    let a = xen.create_domain(SimDomainConfig::default()).unwrap();
    let b = xen.create_domain(SimDomainConfig::default()).unwrap();
    let mut sa = xen.attach(a.domid(), gpu_opts()).unwrap();
    let mut sb = xen.attach(b.domid(), gpu_opts()).unwrap();
    let va = a.vcpu(0).unwrap();
    let waiter = thread::spawn(move || va.mmio_read(BAR, 4));
    // the request is published: the poll fd becomes readable
    assert!(poll_readable(sa.poll_fd(), Some(Duration::from_secs(5))).unwrap());
    assert!(xen.destroy_domain(a.domid()));
    assert_eq!(
        waiter.join().unwrap(),
        u64::MAX,
        "vCPU of a dead domain gets all-ones"
    );
    let mut dev = Dev::default();
    assert!(matches!(sa.service(&mut dev), Err(XenBackendError::DomainGone(d)) if d == a.domid()));
    assert!(matches!(
        sa.apply(Effects::new()),
        Err(XenBackendError::DomainGone(_))
    ));
    assert!(dev.log.lock().unwrap().is_empty());
    // the other domain is unaffected
    let lp = Loop::start(sb, dev.clone());
    assert_eq!(
        b.vcpu(0).unwrap().mmio_read(BAR + 8, 4),
        (BAR + 8) ^ SALT & 0xFFFF_FFFF
    );
    sb = lp.finish().0;
    // resources: the server is gone and the RAM is freed once the last handle drops
    let ram = Arc::downgrade(&a.dom.ram);
    drop(sa);
    assert_eq!(a.server_count(), 0);
    drop(a);
    assert!(ram.upgrade().is_none(), "guest RAM freed");
    assert_eq!(xen.domains(), vec![b.domid()]);
    drop(sb);
}

#[test]
fn detaching_server_wakes_waiting_vcpu() {
    let (_xen, dom, srv) = setup(SimDomainConfig::default(), gpu_opts());
    let v = dom.vcpu(0).unwrap();
    let waiter = thread::spawn(move || v.mmio_read(BAR, 4));
    assert!(poll_readable(srv.poll_fd(), Some(Duration::from_secs(5))).unwrap());
    drop(srv);
    assert_eq!(waiter.join().unwrap(), u64::MAX);
    assert_eq!(dom.server_count(), 0);
}

#[test]
fn many_vcpus_concurrently_all_answered() {
    let cfg = SimDomainConfig {
        vcpus: 128,
        ..SimDomainConfig::default()
    };
    let (_xen, dom, srv) = setup(cfg, gpu_opts());
    let dev = Dev::default();
    let lp = Loop::start(srv, dev.clone());
    let threads: Vec<_> = (0..128)
        .map(|i| {
            let v = dom.vcpu(i).unwrap();
            thread::spawn(move || {
                (0..4u64).all(|k| {
                    let a = BAR + (i as u64) * 64 + k * 8;
                    v.mmio_read(a, 8) == a ^ SALT
                })
            })
        })
        .collect();
    for t in threads {
        assert!(t.join().unwrap());
    }
    let (srv, _) = lp.finish();
    assert_eq!(srv.counters().dispatch.requests, 128 * 4);
    assert_eq!(dom.stats().stuck, 0);
}

#[test]
fn hostile_slots_are_answered_and_counted() {
    let (_xen, dom, srv) = setup(SimDomainConfig::default(), gpu_opts());
    let lp = Loop::start(srv, Dev::default());
    let v = dom.sim_vcpu(0).unwrap();
    let mk = |typ, addr, data, size, count, read, ptr, df| Ioreq {
        addr,
        data,
        count,
        size,
        flags: Ioreq::make_flags(STATE_IOREQ_NONE, ptr, read, df),
        typ,
        ..Ioreq::default()
    };
    let bad = [
        mk(42, BAR, 0, 4, 1, true, false, false),
        mk(IOREQ_TYPE_COPY, BAR, 0, 0, 1, true, false, false),
        mk(IOREQ_TYPE_COPY, BAR, 0, 3, 1, true, false, false),
        mk(IOREQ_TYPE_COPY, BAR, 0, 16, 1, true, false, false),
        mk(IOREQ_TYPE_COPY, BAR, 0, 4, u32::MAX, true, false, false),
        mk(IOREQ_TYPE_COPY, u64::MAX - 1, 0, 4, 1, true, false, false),
        mk(IOREQ_TYPE_COPY, BAR, 1 << 50, 4, 4, true, true, false),
        mk(
            IOREQ_TYPE_PCI_CONFIG,
            GPU.ioreq_addr(0x2000),
            0,
            4,
            1,
            true,
            false,
            false,
        ),
    ];
    for r in &bad {
        let expect = if r.data_is_ptr() { r.data } else { u64::MAX };
        assert_eq!(v.raw_request(r), Some(expect), "{r:?} answered");
    }
    let (srv, err) = lp.finish();
    assert!(err.is_none());
    let c = srv.counters().dispatch;
    assert_eq!(
        (
            c.unknown_type,
            c.bad_size,
            c.bad_count,
            c.bad_address,
            c.bad_data_ptr,
            c.bad_pci_register
        ),
        (1, 3, 1, 1, 1, 1)
    );
    assert_eq!(c.requests, bad.len() as u64);
}

#[test]
fn write_protect_traps_guest_writes_not_daemon_writes() {
    let opts = ServerOptions {
        write_protect: true,
        ..gpu_opts()
    };
    let (_xen, dom, mut srv) = setup(SimDomainConfig::default(), opts);
    let gfn = 0x40;
    let gpa = gfn * 4096;
    let mut fx = Effects::new();
    fx.push(Effect::WriteProtect { gfn, protect: true });
    assert_eq!(srv.apply(fx).unwrap(), 1);
    assert!(dom.is_write_protected(gfn));
    let mem = srv.guest_memory();
    mem.write_u64(gpa, 0x1111).unwrap();
    let dev = Dev::default();
    let lp = Loop::start(srv, dev.clone());
    let v = dom.vcpu(0).unwrap();
    v.ram().write_u32(gpa + 4, 0xDEAD_BEEF).unwrap();
    v.ram().write_u32(gpa + 4096, 7).unwrap(); // next frame: committed
    assert_eq!(
        v.ram().read_u64(gpa).unwrap(),
        0x1111,
        "protected write not committed"
    );
    assert_eq!(v.ram().read_u32(gpa + 4096).unwrap(), 7);
    let (mut srv, _) = lp.finish();
    assert_eq!(
        dev.log.lock().unwrap()[0],
        (
            Space::Mmio,
            gpa + 4,
            false,
            0xDEAD_BEEFu32.to_le_bytes().to_vec()
        )
    );
    assert_eq!(dom.stats().protected_writes, 1);
    let mut fx = Effects::new();
    fx.push(Effect::WriteProtect {
        gfn,
        protect: false,
    });
    fx.push(Effect::WriteProtect {
        gfn: 1 << 40,
        protect: true,
    });
    assert_eq!(srv.apply(fx).unwrap(), 1);
    assert_eq!(srv.counters().dispatch.effect_errors, 1);
    assert!(!dom.is_write_protected(gfn));
}

#[test]
fn msi_effects_reach_the_guest_pirq_form_passes_and_pirq_zero_is_refused() {
    let (_xen, dom, mut srv) = setup(SimDomainConfig::default(), gpu_opts());
    let mut fx = Effects::new();
    fx.push(Effect::InjectMsi {
        addr: 0xFEE0_0000,
        data: 0x41,
    });
    // Vector 0 without a pirq in the address: nothing to deliver.
    fx.push(Effect::InjectMsi {
        addr: 0xFEE0_0000,
        data: 0x100,
    });
    // Xen's PV-on-HVM form, as Linux programs it (nested-xen-hvm-i915.md): pirq 0x37.
    fx.push(Effect::InjectMsi {
        addr: 0xFEE3_7000,
        data: 0x0700,
    });
    assert_eq!(srv.apply(fx).unwrap(), 2);
    let v = dom.vcpu(0).unwrap();
    let m = v.wait_msi(Duration::from_secs(1)).unwrap();
    assert_eq!((m.addr, m.data), (0xFEE0_0000, 0x41));
    let m = v.wait_msi(Duration::from_secs(1)).unwrap();
    assert_eq!((m.addr, m.data), (0xFEE3_7000, 0x0700));
    assert!(v.wait_msi(Duration::from_millis(5)).is_none());
    assert_eq!(srv.counters().dispatch.effect_errors, 1);
    assert_eq!(crate::server::xen_msi_pirq(0xFEE3_7000), 0x37);
    assert_eq!(crate::server::xen_msi_pirq(0x0000_0100_FEE0_5000), 0x105);
}

#[test]
fn trap_effect_is_applied_before_the_answer() {
    let (_xen, dom, srv) = setup(SimDomainConfig::default(), gpu_opts());
    let new_bar = range(0xE000_0000, 0x1000);
    let dev = Dev {
        trap_on: Some((Space::PciConfig, GPU.ioreq_addr(0x18), new_bar)),
        ..Dev::default()
    };
    let lp = Loop::start(srv, dev);
    let v = dom.vcpu(0).unwrap();
    assert_eq!(v.mmio_read(0xE000_0010, 4), u64::MAX);
    v.pci_cfg_write(GPU.bdf(), 0x18, 4, 0xE000_0000);
    assert_eq!(
        v.mmio_read(0xE000_0010, 4),
        (0xE000_0010 ^ SALT) & 0xFFFF_FFFF
    );
    let (srv, _) = lp.finish();
    assert_eq!(srv.counters().dispatch.effects_applied, 1);
}

#[test]
fn invalidate_flushes_the_map_cache() {
    let (_xen, dom, srv) = setup(SimDomainConfig::default(), gpu_opts());
    let mem = srv.guest_memory();
    mem.write_u32(0x1000, 5).unwrap();
    let lp = Loop::start(srv, Dev::default());
    assert_eq!(dom.sim_vcpu(0).unwrap().invalidate_map_caches(), 1);
    let (srv, _) = lp.finish();
    let c = srv.counters();
    assert_eq!(
        (
            c.dispatch.invalidate,
            c.map_cache.flushes,
            c.map_cache.cached
        ),
        (1, 1, 0)
    );
    assert_eq!(mem.read_u32(0x1000).unwrap(), 5);
}

#[test]
fn attach_validates_and_limits_servers() {
    let xen = SimXen::new();
    assert!(matches!(
        xen.attach(9, ServerOptions::default()),
        Err(XenBackendError::NoSuchDomain(9))
    ));
    assert!(xen
        .create_domain(SimDomainConfig {
            vcpus: 129,
            ..Default::default()
        })
        .is_err());
    assert!(xen
        .create_domain(SimDomainConfig {
            ram_bytes: 4095,
            ..Default::default()
        })
        .is_err());
    let d = xen
        .create_domain(SimDomainConfig {
            vcpus: 3,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(xen.domain_info(d.domid()).unwrap().vcpus, 3);
    let servers: Vec<_> = (0..8)
        .map(|_| xen.attach(d.domid(), ServerOptions::default()).unwrap())
        .collect();
    assert!(matches!(
        xen.attach(d.domid(), ServerOptions::default()),
        Err(XenBackendError::TooManyServers(_))
    ));
    let ids: Vec<u16> = servers.iter().map(|s| s.server_id()).collect();
    assert_eq!(ids, (0..8).collect::<Vec<u16>>());
    // overlapping ranges within one server are refused
    let opts = ServerOptions {
        mmio: vec![range(0x1000, 0x100), range(0x1080, 0x100)],
        ..Default::default()
    };
    drop(servers);
    assert!(xen.attach(d.domid(), opts).is_err());
    assert_eq!(d.server_count(), 0, "failed attach leaves nothing behind");
}

#[test]
fn domains_with_chosen_ids_and_stale_server_destroy() {
    let xen = SimXen::new();
    let d7 = xen
        .create_domain_with_id(7, SimDomainConfig::default())
        .unwrap();
    assert_eq!(d7.domid(), 7);
    assert!(matches!(
        xen.create_domain_with_id(7, SimDomainConfig::default()),
        Err(SimXenError::DomidInUse(7))
    ));
    for bad in [0, crate::abi::DOMID_SELF, u16::MAX] {
        assert!(matches!(
            xen.create_domain_with_id(bad, SimDomainConfig::default()),
            Err(SimXenError::NoDomid)
        ));
    }
    // Automatic ids skip the taken one.
    assert_eq!(
        xen.create_domain(SimDomainConfig::default())
            .unwrap()
            .domid(),
        1
    );
    assert_eq!(xen.domains(), vec![1, 7]);
    // A server whose owner "died" (leaked) is destroyed by id; its claim goes with it.
    let wp = || ServerOptions {
        write_protect: true,
        ..gpu_opts()
    };
    let server = xen.attach(7, wp()).unwrap();
    let id = server.server_id();
    std::mem::forget(server);
    assert_eq!(d7.server_count(), 1);
    xen.destroy_ioreq_server(7, id).unwrap();
    assert_eq!(d7.server_count(), 0);
    assert!(matches!(
        xen.destroy_ioreq_server(7, id),
        Err(XenBackendError::Op { .. })
    ));
    assert!(matches!(
        xen.destroy_ioreq_server(99, 0),
        Err(XenBackendError::NoSuchDomain(99))
    ));
    // The write-protect claim was released: a new server can claim it again.
    assert!(xen.attach(7, wp()).is_ok());
}

#[test]
fn a_server_told_its_domain_is_gone_applies_nothing() {
    let (_xen, dom, mut srv) = setup(SimDomainConfig::default(), gpu_opts());
    srv.mark_domain_gone();
    let mut fx = Effects::new();
    fx.push(Effect::InjectMsi {
        addr: 0xFEE0_0000,
        data: 0x41,
    });
    assert!(matches!(srv.apply(fx), Err(XenBackendError::DomainGone(_))));
    assert!(dom
        .vcpu(0)
        .unwrap()
        .wait_msi(Duration::from_millis(5))
        .is_none());
    assert_eq!(srv.counters().dispatch.effect_errors, 0);
}
