//! Unit tests: the i915-like guest model drives a [`Gvt`] through an in-process port that
//! applies effects like a hypervisor would (MSIs queued, write-protected frames trapped).

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::bus::{le_value, IoHandler, Space};
use crate::clock::FakeClock;
use crate::effects::Effect;
use crate::guest::{GuestConfig, GuestGpu};
use crate::guest_port::{GuestPort, Msi};
use crate::memory::{GuestMemoryError, VecMemory, PAGE_SHIFT};
use crate::partition::MIB;

struct Local {
    gvt: Mutex<Gvt>,
    clock: FakeClock,
    id: VgpuId,
    ram: Arc<VecMemory>,
    protected: Mutex<HashSet<u64>>,
    msis: Mutex<VecDeque<Msi>>,
}

impl Local {
    fn new(ty: &str) -> Self {
        let clock = FakeClock::new();
        let host = HostDescription::default();
        let mut cfg = SwConfig::for_host(&host);
        cfg.cost.max_commands = 100_000;
        let gpu = Box::new(SwGpu::new(cfg));
        let mut gvt = Gvt::with_host(host, gpu, Arc::new(clock.clone())).unwrap();
        let ram = Arc::new(VecMemory::new(32 * MIB));
        let id = gvt
            .create_vgpu(&CreateRequest::of_type(ty), ram.clone())
            .unwrap();
        Self {
            gvt: Mutex::new(gvt),
            clock,
            id,
            ram,
            protected: Mutex::new(HashSet::new()),
            msis: Mutex::new(VecDeque::new()),
        }
    }

    fn apply(&self, fx: Effects) {
        for e in fx {
            match e {
                Effect::InjectMsi { addr, data } => {
                    self.msis.lock().unwrap().push_back(Msi { addr, data })
                }
                Effect::WriteProtect { gfn, protect: true } => {
                    self.protected.lock().unwrap().insert(gfn);
                }
                Effect::WriteProtect { gfn, .. } => {
                    self.protected.lock().unwrap().remove(&gfn);
                }
                _ => {}
            }
        }
    }

    fn access(&self, space: Space, addr: u64, data: &mut [u8], write: bool) {
        let mut fx = Effects::new();
        {
            let mut g = self.gvt.lock().unwrap();
            let mut io = g.io(self.id).unwrap();
            if write {
                io.write(space, addr, data, &mut fx);
            } else {
                io.read(space, addr, data, &mut fx);
            }
        }
        self.apply(fx);
    }

    fn stats(&self) -> VgpuStats {
        self.gvt.lock().unwrap().stats(self.id).unwrap()
    }
}

impl GuestMemory for Local {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), GuestMemoryError> {
        self.ram.read(gpa, buf)
    }
    fn write(&self, gpa: u64, buf: &[u8]) -> Result<(), GuestMemoryError> {
        if self
            .protected
            .lock()
            .unwrap()
            .contains(&(gpa >> PAGE_SHIFT))
        {
            let mut b = buf.to_vec();
            self.access(Space::Mmio, gpa, &mut b, true);
            return Ok(());
        }
        self.ram.write(gpa, buf)
    }
    fn owns_frame(&self, gfn: u64) -> bool {
        self.ram.owns_frame(gfn)
    }
}

impl GuestPort for Local {
    fn mmio_read(&self, addr: u64, size: u8) -> u64 {
        let mut b = vec![0u8; usize::from(size)];
        self.access(Space::Mmio, addr, &mut b, false);
        le_value(&b)
    }
    fn mmio_write(&self, addr: u64, size: u8, value: u64) {
        let mut b = value.to_le_bytes()[..usize::from(size)].to_vec();
        self.access(Space::Mmio, addr, &mut b, true);
    }
    fn pio_read(&self, _: u16, _: u8) -> u32 {
        u32::MAX
    }
    fn pio_write(&self, _: u16, _: u8, _: u32) {}
    fn pci_cfg_read(&self, bdf: u16, reg: u16, size: u8) -> u32 {
        let mut b = vec![0u8; usize::from(size)];
        self.access(
            Space::PciConfig,
            u64::from(bdf) << 32 | u64::from(reg),
            &mut b,
            false,
        );
        le_value(&b) as u32
    }
    fn pci_cfg_write(&self, bdf: u16, reg: u16, size: u8, value: u32) {
        let mut b = value.to_le_bytes()[..usize::from(size)].to_vec();
        self.access(
            Space::PciConfig,
            u64::from(bdf) << 32 | u64::from(reg),
            &mut b,
            true,
        );
    }
    fn ram(&self) -> &dyn GuestMemory {
        self
    }
    fn wait_msi(&self, _timeout: Duration) -> Option<Msi> {
        for _ in 0..1000 {
            if let Some(m) = self.msis.lock().unwrap().pop_front() {
                return Some(m);
            }
            let fx = {
                let mut g = self.gvt.lock().unwrap();
                let d = g.next_deadline()?;
                if d > self.clock.now() {
                    self.clock.advance(d - self.clock.now());
                }
                g.poll()
            };
            for (_, f) in fx {
                self.apply(f);
            }
        }
        None
    }
}

const WAIT: Duration = Duration::from_secs(5);

#[test]
fn a_guest_blit_lands_in_its_memory_and_the_seqno_advances() {
    let port = Local::new("xengt_V5_4");
    let mut g = GuestGpu::probe(&port, GuestConfig::default()).unwrap();
    g.enable_engine(EngineId::Bcs).unwrap();
    let s = g.create_surface(64, 32).unwrap();
    let seq = g.fill(&s, (4, 2, 20, 10), 0x00ff_8000).unwrap();
    let done = g.wait(EngineId::Bcs, WAIT).unwrap();
    assert!(!done.error);
    assert_eq!(done.seqno, seq);
    assert_eq!(g.pixel(&s, 5, 3), Some(0x00ff_8000));
    assert_eq!(g.pixel(&s, 30, 3), Some(0));
    let seq2 = g.fill(&s, (0, 0, 64, 32), 0x1234_5678).unwrap();
    assert_eq!(g.wait(EngineId::Bcs, WAIT).unwrap().seqno, seq2);
    assert_eq!(g.pixel(&s, 63, 31), Some(0x1234_5678));
    let st = port.stats();
    assert_eq!((st.submitted, st.completed), (2, 2));
    assert!(st.engine_ns["bcs0"] > 0 && st.engine_share > 0.99);
    assert!(st.ggtt_reflected > 0 && st.ggtt_refused == 0);
    assert!(
        st.protected_writes > 0,
        "PPGTT updates were trapped: {st:?}"
    );
    assert!(st.vgpu.msi_injected > 0);
}

#[test]
fn hostile_commands_are_rejected_counted_and_the_guest_recovers() {
    let port = Local::new("xengt_V5_8");
    let mut g = GuestGpu::probe(&port, GuestConfig::default()).unwrap();
    g.enable_engine(EngineId::Bcs).unwrap();
    g.hostile_lri(EngineId::Bcs).unwrap();
    assert!(g.wait(EngineId::Bcs, WAIT).unwrap().error);
    g.hostile_store(EngineId::Bcs, 0x1000).unwrap();
    assert!(g.wait(EngineId::Bcs, WAIT).unwrap().error);
    let st = port.stats();
    assert_eq!(st.rejected["RegisterNotAllowed"], 1);
    assert_eq!(st.rejected["AddressOutOfWindow"], 1);
    assert_eq!(st.completed, 0);
    let s = g.create_surface(16, 16).unwrap();
    let seq = g.fill(&s, (0, 0, 16, 16), 0xabcdef).unwrap();
    let done = g.wait(EngineId::Bcs, WAIT).unwrap();
    assert_eq!((done.error, done.seqno), (false, seq));
    assert_eq!(g.pixel(&s, 15, 15), Some(0xabcdef));
}

#[test]
fn a_hang_resets_the_engine_and_work_continues() {
    let port = Local::new("xengt_V5_4");
    let mut g = GuestGpu::probe(&port, GuestConfig::default()).unwrap();
    g.enable_engine(EngineId::Bcs).unwrap();
    g.hostile_hang(EngineId::Bcs).unwrap();
    assert!(g.wait(EngineId::Bcs, WAIT).unwrap().error);
    let st = port.stats();
    assert_eq!((st.hangs, st.engine_resets), (1, 1), "{st:?}");
    let s = g.create_surface(16, 16).unwrap();
    let seq = g.fill(&s, (0, 0, 8, 8), 0x55).unwrap();
    assert_eq!(g.wait(EngineId::Bcs, WAIT).unwrap().seqno, seq);
    assert_eq!(g.pixel(&s, 7, 7), Some(0x55));
}

#[test]
fn lifecycle_types_and_mismatched_hosts() {
    let clock: Arc<dyn Clock> = Arc::new(FakeClock::new());
    let mut gvt = Gvt::new(HostDescription::default(), clock.clone()).unwrap();
    let avail = |g: &Gvt| {
        g.types()
            .into_iter()
            .find(|t| t.info.ty.name == "xengt_V5_4")
            .map(|t| (t.info.available_instances, t.display.has_display))
            .unwrap()
    };
    assert_eq!(avail(&gvt), (3, true));
    let mem: Arc<dyn GuestMemory> = Arc::new(VecMemory::new(MIB));
    let a = gvt
        .create_vgpu(&CreateRequest::of_type("xengt_V5_4"), mem.clone())
        .unwrap();
    let b = gvt
        .create_vgpu(&CreateRequest::of_type("xengt_V5_8"), mem.clone())
        .unwrap();
    assert_eq!(avail(&gvt).0, 1);
    let (sa, sb) = (gvt.stats(a).unwrap(), gvt.stats(b).unwrap());
    assert!((sa.expected_share - 4.0 / 6.0).abs() < 1e-9);
    assert!((sb.expected_share - 2.0 / 6.0).abs() < 1e-9);
    assert!(matches!(gvt.screenshot(a), Err(GvtError::Framebuffer(_))));
    assert!(gvt.destroy_vgpu(a).unwrap().is_empty());
    assert!(gvt.io(a).is_none() && gvt.io(b).is_some());
    assert!(matches!(gvt.destroy_vgpu(a), Err(GvtError::NotFound(_))));
    // Re-creating reuses the same windows in manager and host.
    gvt.create_vgpu(&CreateRequest::of_type("xengt_V5_4"), mem.clone())
        .unwrap();
    // A host that partitions differently is detected, and nothing leaks.
    let other = SwGpu::new(SwConfig::default());
    let mut bad = Gvt::with_host(HostDescription::default(), Box::new(other), clock).unwrap();
    let e = bad
        .create_vgpu(&CreateRequest::of_type("xengt_V5_4"), mem)
        .unwrap_err();
    assert!(matches!(e, GvtError::HostMismatch { .. }), "{e}");
    assert!(bad.list().is_empty());
}
