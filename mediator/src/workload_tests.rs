use std::collections::BTreeMap;

use super::*;
use crate::cmd::RejectReason;
use crate::execlist::regs;
use crate::guest::cmds;
use crate::guest::layout::{
    context_head, set_context_tail, write_context_image, FrameAlloc, PageTables,
};
use crate::host::{EngineInterrupts, HostError, PpgttHandle};
use crate::memory::VecMemory;

const MB: u64 = 1 << 20;
const LOW: GmRange = GmRange {
    start: 0x0800_0000,
    size: 0x0800_0000,
};
const HIGH: GmRange = GmRange {
    start: 0x1000_0000,
    size: 0x2000_0000,
};

#[derive(Default)]
struct Ggtt(BTreeMap<u64, u64>);
impl GgttLookup for Ggtt {
    fn gma_to_gpa(&self, gma: u64) -> Option<u64> {
        self.0.get(&(gma >> 12)).map(|f| f | (gma & 0xfff))
    }
}

#[derive(Default)]
struct Host {
    ppgtts: u64,
    ggtt: BTreeMap<u64, Option<HostPte>>,
}
impl HostGtt for Host {
    fn ggtt_write(&mut self, _: OwnerId, i: u64, p: Option<HostPte>) -> Result<(), HostError> {
        self.ggtt.insert(i, p);
        Ok(())
    }
    fn ppgtt_create(&mut self, _: OwnerId) -> Result<PpgttHandle, HostError> {
        self.ppgtts += 1;
        Ok(PpgttHandle(self.ppgtts))
    }
    fn ppgtt_map(&mut self, _: PpgttHandle, _: u64, _: Option<HostPte>) -> Result<(), HostError> {
        Ok(())
    }
    fn ppgtt_destroy(&mut self, _: PpgttHandle) -> Result<(), HostError> {
        Ok(())
    }
}

/// A BCS context with its ring, HWSP and a PPGTT, all mapped in the high window.
struct Rig {
    mem: VecMemory,
    ggtt: Ggtt,
    host: Host,
    pipe: Pipeline,
    image: u64,
    ring: u64,
    tail: u32,
    bad_gma: u64,
}

const RING_GMA: u64 = 0x1000_0000;
const HWSP_GMA: u64 = 0x1000_4000;
const CTX_GMA: u64 = 0x1000_5000;
const BASE: u32 = 0x22000;

impl Rig {
    fn new() -> Self {
        let mem = VecMemory::new(16 * MB);
        let mut frames = FrameAlloc::new(MB, 16 * MB);
        let mut ggtt = Ggtt::default();
        let ring = frames.alloc(4).unwrap();
        for i in 0..4 {
            ggtt.0.insert((RING_GMA >> 12) + i, ring + i * 4096);
        }
        let hwsp = frames.alloc(1).unwrap();
        ggtt.0.insert(HWSP_GMA >> 12, hwsp);
        let image = frames.alloc(2).unwrap();
        ggtt.0.insert(CTX_GMA >> 12, image);
        ggtt.0.insert((CTX_GMA >> 12) + 1, image + 4096);
        let pt = PageTables::new(&mem, &mut frames).unwrap();
        let buf = frames.alloc(1).unwrap();
        pt.map(&mem, &mut frames, 0x10_0000, buf).unwrap();
        // A hostile entry: a frame beyond this guest's RAM (another guest's).
        let bad_gma = 0x20_0000;
        pt.map(&mem, &mut frames, bad_gma, 64 * MB).unwrap();
        write_context_image(&mem, image, BASE, RING_GMA as u32, 4, pt.pml4).unwrap();
        let mut rig = Self {
            mem,
            ggtt,
            host: Host::default(),
            pipe: Pipeline::new(3, [LOW, HIGH], true),
            image,
            ring,
            tail: 0,
            bad_gma,
        };
        let e = EngineId::Bcs;
        for ev in [
            VgpuEvent::ExeclistEnable {
                engine: e,
                enabled: true,
            },
            VgpuEvent::HwsPga {
                engine: e,
                gm: HWSP_GMA as u32,
            },
        ] {
            let out = rig.vgpu_event(ev);
            assert!(out.irqs.is_empty());
        }
        rig.pipe.adopt_csb_ptr(e, 0x0505);
        let mirrored = rig.pipe.mirrored_regs(e);
        assert!(mirrored.contains(&(BASE + regs::CONTEXT_STATUS_PTR, 0x505)));
        assert!(mirrored.contains(&(BASE + regs::EXECLIST_STATUS_LO, 0)));
        rig
    }

    fn vgpu_event(&mut self, ev: VgpuEvent) -> PipelineOutput {
        let mut fx = Effects::new();
        let mut out = PipelineOutput::default();
        let mut env = PipelineEnv {
            mem: &self.mem,
            ggtt: &self.ggtt,
            host: &mut self.host,
            fx: &mut fx,
        };
        self.pipe.on_vgpu_event(&ev, &mut env, &mut out);
        out
    }

    fn event(&mut self, ev: HostEvent) -> PipelineOutput {
        let mut fx = Effects::new();
        let mut out = PipelineOutput::default();
        let mut env = PipelineEnv {
            mem: &self.mem,
            ggtt: &self.ggtt,
            host: &mut self.host,
            fx: &mut fx,
        };
        self.pipe.host_event(&ev, &mut env, &mut out);
        out
    }

    /// Appends dwords to the ring, pads to a qword, updates the image tail and submits.
    fn submit(&mut self, dwords: &[u32]) -> PipelineOutput {
        let mut d = dwords.to_vec();
        if d.len() % 2 == 1 {
            d.push(cmds::MI_NOOP);
        }
        for v in d {
            self.mem
                .write_u32(self.ring + u64::from(self.tail), v)
                .unwrap();
            self.tail += 4;
        }
        set_context_tail(&self.mem, self.image, self.tail).unwrap();
        self.vgpu_event(VgpuEvent::ElspSubmit {
            engine: EngineId::Bcs,
            descs: [0x42 << 32 | CTX_GMA | 0x119, 0],
        })
    }

    fn csb_events(&self) -> Vec<u64> {
        let hwsp = self.ggtt.gma_to_gpa(HWSP_GMA).unwrap();
        let wp = self.mem.read_u32(hwsp + 0x7c).unwrap();
        (0..=wp)
            .map(|i| self.mem.read_u64(hwsp + 0x40 + 8 * u64::from(i)).unwrap())
            .collect()
    }
}

fn complete(w: &ShadowWorkload) -> HostEvent {
    HostEvent::Complete {
        engine: w.engine(),
        owner: w.owner(),
        tag: w.tag(),
        seqno: w.seqno(),
        engine_time_ns: 1000,
        interrupts: EngineInterrupts {
            user: 1,
            flush_notify: 0,
        },
        reg_writes: vec![],
    }
}

fn irq(kind: IrqKind) -> GtIrq {
    GtIrq {
        engine: EngineId::Bcs,
        kind,
    }
}

#[test]
fn blit_submission_becomes_a_workload_and_completion_writes_back() {
    let mut rig = Rig::new();
    let blt = cmds::xy_color_blt(0x0800_0000, 256, (0, 0, 4, 4), 0xff);
    let mut ring = cmds::flush_dw_invalidate().to_vec();
    ring.extend(blt);
    ring.extend(cmds::flush_dw_store(HWSP_GMA + 0x100, 1));
    ring.push(cmds::MI_USER_INTERRUPT);
    let out = rig.submit(&ring);
    assert_eq!(out.irqs, vec![irq(IrqKind::ContextSwitch)]);
    assert_eq!(out.workloads.len(), 1);
    let w = &out.workloads[0];
    assert_eq!((w.ring_head(), w.ring_tail()), (0, rig.tail));
    assert_eq!(&w.ring()[4..11], &blt);
    assert!(w.ppgtt().is_some());
    assert_eq!(rig.pipe.in_flight(), 1);
    // PPGTT tables are now write-protected and counted as foreign once.
    assert_eq!(rig.pipe.ppgtt().counters().foreign_entries, 1);

    let done = rig.event(complete(w));
    assert_eq!(
        done.irqs,
        vec![irq(IrqKind::User), irq(IrqKind::ContextSwitch)]
    );
    assert_eq!(context_head(&rig.mem, rig.image).unwrap(), rig.tail);
    assert_eq!(rig.csb_events(), vec![1, 0x42_0000_0018]);
    assert_eq!(rig.pipe.counters().completed, 1);
    assert_eq!(rig.pipe.in_flight(), 0);

    // A second request continues from the written-back head.
    let first_tail = rig.tail;
    let out = rig.submit(&[cmds::MI_USER_INTERRUPT]);
    assert_eq!(out.workloads[0].ring_head(), first_tail);
    assert_eq!(out.workloads[0].ring_tail(), first_tail + 8);
}

#[test]
fn lri_to_a_non_whitelisted_register_fails_the_context_and_is_counted() {
    let mut rig = Rig::new();
    // 0x941C GDRST is never command-accessible.
    let out = rig.submit(&cmds::lri(0x941C, 1));
    assert!(out.workloads.is_empty());
    assert_eq!(
        out.irqs,
        vec![
            irq(IrqKind::ContextSwitch),
            irq(IrqKind::CsError),
            irq(IrqKind::ContextSwitch)
        ]
    );
    assert_eq!(
        rig.pipe
            .counters()
            .rejected
            .get(RejectReason::RegisterNotAllowed),
        1
    );
    assert_eq!(rig.csb_events(), vec![1, 0x42_0000_0018]);
    assert!(rig.pipe.engine(EngineId::Bcs).idle());
}

#[test]
fn ggtt_write_outside_windows_is_rejected() {
    let mut rig = Rig::new();
    let out = rig.submit(&cmds::store_dword(0x100, 1, true));
    assert!(out.workloads.is_empty());
    assert_eq!(
        rig.pipe
            .counters()
            .rejected
            .get(RejectReason::AddressOutOfWindow),
        1
    );
    // PPGTT translation never yields the foreign frame.
    let pml4 = rig.mem.read_u32(rig.image + 4096 + 0x33 * 4).unwrap();
    let root = crate::ppgtt::PpgttRoot::L4(u64::from(pml4));
    assert!(rig.pipe.ppgtt().translate(root, 0x10_0000).is_some());
    assert!(rig.pipe.ppgtt().translate(root, rig.bad_gma).is_none());
}

#[test]
fn hang_resets_only_this_engine_state_and_asks_for_host_reset() {
    let mut rig = Rig::new();
    let out = rig.submit(&[cmds::MI_NOOP]);
    let w = &out.workloads[0];
    let out = rig.event(HostEvent::Hang {
        engine: EngineId::Bcs,
        owner: 3,
        tag: w.tag(),
        engine_time_ns: 5,
    });
    assert_eq!(out.reset_engines, vec![EngineId::Bcs]);
    assert!(out.irqs.contains(&irq(IrqKind::CsError)));
    let c = rig.pipe.counters();
    assert_eq!((c.hangs, c.engine_resets), (1, 1));
    assert!(rig.pipe.engine(EngineId::Bcs).idle());
    // A stale completion for the same tag is ignored.
    assert!(rig.event(complete(w)).irqs.is_empty());
    // And the engine accepts new work.
    assert_eq!(rig.submit(&[cmds::MI_NOOP]).workloads.len(), 1);
}

#[test]
fn g2v_and_ggtt_reflection() {
    let mut rig = Rig::new();
    let pml4 = rig.mem.read_u32(rig.image + 4096 + 0x33 * 4).unwrap();
    let mut fx = Effects::new();
    let mut env = PipelineEnv {
        mem: &rig.mem,
        ggtt: &rig.ggtt,
        host: &mut rig.host,
        fx: &mut fx,
    };
    rig.pipe
        .g2v_notify(g2v::PPGTT_L4_CREATE, [u64::from(pml4), 0, 0, 0], &mut env);
    assert_eq!(rig.pipe.ppgtt().len(), 1);
    assert!(rig.pipe.is_write_protected(u64::from(pml4) + 16));
    rig.pipe
        .g2v_notify(g2v::PPGTT_L4_DESTROY, [u64::from(pml4), 0, 0, 0], &mut env);
    assert!(rig.pipe.ppgtt().is_empty());
    assert!(fx.as_slice().len() >= 2);
    rig.pipe
        .reflect_ggtt(0x8000, Some(0x5000 | 1), &rig.mem, &mut rig.host);
    rig.pipe
        .reflect_ggtt(0x8001, Some((64 * MB) | 1), &rig.mem, &mut rig.host);
    assert_eq!(rig.host.ggtt[&0x8000].map(|p| p.gfn), Some(5));
    assert_eq!(rig.host.ggtt[&0x8001], None);
    assert_eq!(rig.pipe.counters().ggtt_refused, 1);
}
