use super::*;
use crate::execlist::csb::CSB_WP_RESET;
use crate::memory::VecMemory;

/// GGTT mapping [0x1000_0000, +1 MiB) onto RAM at 0.
struct Window;
impl GgttLookup for Window {
    fn gma_to_gpa(&self, gma: u64) -> Option<u64> {
        gma.checked_sub(0x1000_0000).filter(|o| *o < 0x10_0000)
    }
}

const HWSP: u32 = 0x1000_3000;

fn enabled(mem: &VecMemory) -> ExeclistEngine {
    let mut e = ExeclistEngine::new(EngineId::Bcs);
    let _ = mem;
    assert!(e.set_reg(regs::RING_MODE, 0x8000_8000));
    assert!(e.set_reg(regs::RING_HWS_PGA, HWSP));
    assert!(e.set_reg(regs::CONTEXT_STATUS_PTR, 0xffff_0505));
    assert!(!e.set_reg(regs::RING_ELSP, 0));
    e
}

fn target(mem: &VecMemory) -> CsbTarget<'_> {
    CsbTarget {
        ggtt: &Window,
        mem,
        hwsp_emulation: true,
    }
}

fn elsp(e: &mut ExeclistEngine, mem: &VecMemory, d0: u64, d1: u64) -> ExeclistOutput {
    let mut out = ExeclistOutput::default();
    let _ = e.submit(d0, d1, target(mem), &mut out);
    out
}

/// CSB entries as the guest reads them from the HWSP, from slot `from` to the write pointer.
fn hwsp_entries(mem: &VecMemory, from: u32) -> Vec<u64> {
    let wp = mem.read_u32(0x307c).unwrap();
    let mut v = Vec::new();
    let mut i = from;
    loop {
        v.push(mem.read_u64(0x3040 + 8 * u64::from(i)).unwrap());
        if i == wp {
            return v;
        }
        i = (i + 1) % 6;
    }
}

const CS: GtIrq = GtIrq {
    engine: EngineId::Bcs,
    kind: IrqKind::ContextSwitch,
};

#[test]
fn single_element_pair_runs_idle_active_complete() {
    let mem = VecMemory::new(0x10_0000);
    let mut e = enabled(&mem);
    let out = elsp(&mut e, &mem, 0x20_0000_5119, 0);
    assert_eq!(out.irqs, vec![CS]);
    assert_eq!(out.submissions.len(), 1);
    let s = out.submissions[0];
    assert_eq!(s.desc.lrca(), 0x5000);
    assert_eq!(
        e.mmio_read(regs::EXECLIST_STATUS_LO),
        Some(1 << 4 | 1 << 18)
    );
    assert_eq!(e.mmio_read(regs::EXECLIST_STATUS_HI), Some(0x20));
    assert_eq!(hwsp_entries(&mem, 0), vec![CsbEvent::IDLE_TO_ACTIVE as u64]);

    let mut out = ExeclistOutput::default();
    e.complete(
        s.token,
        CompletionStatus::Done,
        0x40,
        target(&mem),
        &mut out,
    );
    assert_eq!(out.irqs, vec![CS]);
    assert_eq!(hwsp_entries(&mem, 1), vec![0x20_0000_0018]);
    assert_eq!(e.mmio_read(regs::CONTEXT_STATUS_PTR), Some(0x501));
    assert_eq!(e.mmio_read(regs::CSB_BASE + 8), Some(0x18));
    assert_eq!(e.mmio_read(regs::CSB_BASE + 12), Some(0x20));
    assert_eq!(e.mmio_read(regs::RING_HEAD), Some(0x40));
    assert_eq!(e.mmio_read(regs::EXECLIST_STATUS_LO), Some(0));
    assert!(e.idle());
    assert_eq!(e.counters().completed, 1);
}

#[test]
fn two_element_pair_switches_elements_then_goes_idle() {
    let mem = VecMemory::new(0x10_0000);
    let mut e = enabled(&mem);
    let out = elsp(&mut e, &mem, 0x1_0000_5119, 0x2_0000_6119);
    assert_eq!(out.submissions.len(), 2);
    let (t0, t1) = (out.submissions[0].token, out.submissions[1].token);
    let mut out = ExeclistOutput::default();
    e.complete(t0, CompletionStatus::Done, 8, target(&mem), &mut out);
    assert_eq!(
        e.mmio_read(regs::EXECLIST_STATUS_LO),
        Some(1 | 1 << 3 | 1 << 4 | 1 << 17)
    );
    assert_eq!(e.mmio_read(regs::EXECLIST_STATUS_HI), Some(2));
    e.complete(t1, CompletionStatus::Done, 16, target(&mem), &mut out);
    assert_eq!(
        hwsp_entries(&mem, 0),
        vec![0x1, 0x1_0000_0014, 0x2_0000_0018]
    );
    assert_eq!(out.irqs, vec![CS, CS]);
}

#[test]
fn busy_engine_queues_one_pair_and_promotes_it_on_idle() {
    let mem = VecMemory::new(0x10_0000);
    let mut e = enabled(&mem);
    let t0 = elsp(&mut e, &mem, 0x1_0000_5119, 0).submissions[0].token;
    let out = elsp(&mut e, &mem, 0x2_0000_6119, 0);
    assert!(out.submissions.is_empty() && out.irqs.is_empty());
    assert_eq!(e.mmio_read(regs::EXECLIST_STATUS_LO).unwrap() & 4, 4);
    // a third pair overflows
    let out = elsp(&mut e, &mem, 0x3_0000_7119, 0);
    assert!(out.submissions.is_empty());
    assert_eq!(e.counters().elsp_rejected, 1);
    let mut out = ExeclistOutput::default();
    e.complete(t0, CompletionStatus::Done, 8, target(&mem), &mut out);
    assert_eq!(out.submissions.len(), 1);
    assert_eq!(out.submissions[0].desc.context_id(), 2);
    assert_eq!(out.irqs, vec![CS], "one interrupt for both entries");
    assert_eq!(hwsp_entries(&mem, 0), vec![0x1, 0x1_0000_0018, 0x1]);
}

#[test]
fn lite_restore_replaces_running_element_and_silences_old_token() {
    let mem = VecMemory::new(0x10_0000);
    let mut e = enabled(&mem);
    let old = elsp(&mut e, &mem, 0x1_0000_5119, 0).submissions[0].token;
    let out = elsp(&mut e, &mem, 0x1_0000_5119, 0);
    assert_eq!(out.submissions.len(), 1);
    let new = out.submissions[0].token;
    assert_ne!(old, new);
    assert_eq!(e.counters().lite_restores, 1);
    let mut out = ExeclistOutput::default();
    e.complete(old, CompletionStatus::Done, 8, target(&mem), &mut out);
    assert!(out.irqs.is_empty());
    e.complete(new, CompletionStatus::Done, 16, target(&mem), &mut out);
    assert_eq!(
        hwsp_entries(&mem, 0),
        vec![0x1, 0x1_0000_8002, 0x1_0000_0018]
    );
}

#[test]
fn refused_submissions_leave_state_untouched() {
    let mem = VecMemory::new(0x10_0000);
    let mut e = ExeclistEngine::new(EngineId::Bcs);
    // not enabled
    assert!(elsp(&mut e, &mem, 0x1_0000_5119, 0).submissions.is_empty());
    let mut e = enabled(&mem);
    // GGTT submission (bit 8 clear)
    assert!(elsp(&mut e, &mem, 0x1_0000_5019, 0).submissions.is_empty());
    assert!(elsp(&mut e, &mem, 0, 0x1_0000_5119).submissions.is_empty());
    assert_eq!(e.counters().elsp_rejected, 2);
    assert_eq!(e.csb().write_pointer(), 5);
    assert!(e.idle());
}

#[test]
fn error_completion_raises_cs_error_and_reset_forgets_everything() {
    let mem = VecMemory::new(0x10_0000);
    let mut e = enabled(&mem);
    let t = elsp(&mut e, &mem, 0x1_0000_5119, 0x2_0000_6119).submissions[0].token;
    let mut out = ExeclistOutput::default();
    e.complete(t, CompletionStatus::Error, 0, target(&mem), &mut out);
    assert_eq!(out.irqs[0].kind, IrqKind::CsError);
    assert_eq!(e.counters().errors, 1);
    e.reset();
    assert!(e.idle());
    // the engine accepts a fresh pair after the reset
    assert_eq!(elsp(&mut e, &mem, 0x3_0000_7119, 0).submissions.len(), 1);
    e.reset_all();
    assert!(!e.enabled());
    assert_eq!(e.csb().write_pointer(), CSB_WP_RESET);
    assert_eq!(e.counters().resets, 2);
}

#[test]
fn resume_head_tracks_newest_inflight_tail() {
    let mut e = ExeclistEngine::new(EngineId::Rcs);
    let k = ContextKey {
        lrca: 0x5000,
        ctx_id: 1,
    };
    assert_eq!(e.resume_head(k), None);
    e.note_inflight(ElementToken(1), k, 0x40);
    e.note_inflight(ElementToken(2), k, 0x80);
    assert_eq!(e.resume_head(k), Some(0x80));
    let mem = VecMemory::new(0x1000);
    let mut out = ExeclistOutput::default();
    e.complete(
        ElementToken(2),
        CompletionStatus::Done,
        0x80,
        target(&mem),
        &mut out,
    );
    assert_eq!(e.resume_head(k), Some(0x40));
}
