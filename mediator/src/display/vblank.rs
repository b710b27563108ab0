//! Emulated vblank timing (§7.4): one periodic timer per pipe, driven by the caller's
//! clock through [`super::Display::tick`], with the refresh rate recomputed from the
//! transcoder's registers when the pipe is enabled.

use serde::{Deserialize, Serialize};

use super::regfile::RegFile;
use super::regs::{
    DPLL_CTRL1, DPLL_CTRL2, HTOTAL, LINK_M1, LINK_N1, PIPE_STRIDE, TRANS_DDI_FUNC_CTL, VTOTAL,
};

/// Slowest refresh the model accepts from the guest's registers, in mHz.
pub const MIN_REFRESH_MHZ: u64 = 1_000;
/// Fastest refresh the model accepts from the guest's registers, in mHz.
pub const MAX_REFRESH_MHZ: u64 = 240_000;

/// DE pipe IIR: vblank.
pub const PIPE_VBLANK: u32 = 1 << 0;
/// DE pipe IIR: plane 1 flip done.
pub const PLANE1_FLIP_DONE: u32 = 1 << 3;
/// DE pipe IIR: plane 2 flip done.
pub const PLANE2_FLIP_DONE: u32 = 1 << 4;

/// One pipe's vblank timer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipeTimer {
    /// Refresh rate in mHz while running (GVT stores Hz × 1000).
    pub refresh_mhz: u64,
    /// Time of the next vblank, `None` while the pipe is off.
    pub next_ns: Option<u64>,
    /// Flip-done bits queued for the next vblank.
    pub pending_flips: u32,
}

/// What one pipe's timer did in a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fired {
    /// Frames that elapsed (≥ 1); the frame counter advances by this much.
    pub frames: u32,
    /// DE pipe IIR bits to raise (vblank plus queued flip-done).
    pub iir: u32,
}

impl PipeTimer {
    /// Starts (or re-times) the timer at `refresh_mhz` from `now_ns`. A running timer at the
    /// same rate keeps its phase.
    pub fn start(&mut self, now_ns: u64, refresh_mhz: u64) {
        if self.next_ns.is_some() && self.refresh_mhz == refresh_mhz {
            return;
        }
        self.refresh_mhz = refresh_mhz;
        self.next_ns = Some(now_ns.saturating_add(self.period_ns()));
    }

    /// Stops the timer and drops queued flips.
    pub fn stop(&mut self) {
        self.next_ns = None;
        self.pending_flips = 0;
    }

    /// Nanoseconds per frame.
    pub fn period_ns(&self) -> u64 {
        (1_000_000_000_000u64 / self.refresh_mhz.max(MIN_REFRESH_MHZ)).max(1)
    }

    /// Advances to `now_ns`; `Some` if at least one vblank was due. Missed frames are
    /// counted (the frame counter stays a clock) but raise one interrupt.
    pub fn advance(&mut self, now_ns: u64) -> Option<Fired> {
        let next = self.next_ns?;
        if now_ns < next {
            return None;
        }
        let period = self.period_ns();
        let missed = (now_ns - next) / period;
        let frames = missed.saturating_add(1);
        self.next_ns = Some(
            frames
                .checked_mul(period)
                .and_then(|d| next.checked_add(d))
                .unwrap_or_else(|| now_ns.saturating_add(period)),
        );
        let iir = PIPE_VBLANK | std::mem::take(&mut self.pending_flips);
        Some(Fired {
            frames: u32::try_from(frames).unwrap_or(u32::MAX),
            iir,
        })
    }
}

/// The refresh rate (mHz) pipe `pipe` runs at from its registers: pixel clock (port link
/// clock of the DPLL feeding the transcoder's DDI × LINK_M1 / LINK_N1) over
/// HTOTAL × VTOTAL. `None` if anything is unprogrammed or out of range.
pub fn refresh_from_regs(regs: &RegFile, pipe: u32) -> Option<u64> {
    let b = pipe.checked_mul(PIPE_STRIDE)?;
    let ddi = regs.get(TRANS_DDI_FUNC_CTL + b);
    if ddi & (1 << 31) == 0 {
        return None;
    }
    let port = (ddi >> 28) & 7;
    if port > 4 {
        return None;
    }
    let ctrl2 = regs.get(DPLL_CTRL2);
    if ctrl2 & (1 << (3 * port)) == 0 {
        return None;
    }
    let dpll = (ctrl2 >> (3 * port + 1)) & 3;
    let port_clock_khz: u64 = match (regs.get(DPLL_CTRL1) >> (6 * dpll + 1)) & 7 {
        0 => 540_000,
        1 => 270_000,
        2 => 162_000,
        3 => 324_000,
        4 => 216_000,
        5 => 432_000,
        _ => return None,
    };
    let m = u64::from(regs.get(LINK_M1 + b) & 0xFF_FFFF);
    let n = u64::from(regs.get(LINK_N1 + b) & 0xFF_FFFF);
    let pixel_khz = (port_clock_khz * m).checked_div(n)?;
    let total = |v: u32| u64::from((v >> 16) & 0x1FFF) + 1;
    let frame = total(regs.get(HTOTAL + b)) * total(regs.get(VTOTAL + b));
    let mhz = (pixel_khz * 1_000_000).checked_div(frame)?;
    (MIN_REFRESH_MHZ..=MAX_REFRESH_MHZ)
        .contains(&mhz)
        .then_some(mhz)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_fires_at_rate_and_counts_missed_frames() {
        let mut t = PipeTimer::default();
        assert_eq!(t.advance(1_000_000_000), None, "stopped timer never fires");
        t.start(0, 50_000);
        assert_eq!(t.period_ns(), 20_000_000);
        let mut fires = 0;
        for ms in 1..=1000u64 {
            if t.advance(ms * 1_000_000).is_some() {
                fires += 1;
            }
        }
        assert_eq!(fires, 50);
        t.pending_flips = PLANE1_FLIP_DONE;
        let f = t.advance(1_100_000_000).unwrap();
        assert_eq!(f.frames, 5);
        assert_eq!(f.iir, PIPE_VBLANK | PLANE1_FLIP_DONE);
        assert_eq!(t.advance(1_100_000_001), None);
        t.start(0, 50_000);
        assert_eq!(t.next_ns, Some(1_120_000_000), "same rate keeps phase");
        t.stop();
        assert_eq!(t.advance(u64::MAX), None);
    }

    #[test]
    fn refresh_follows_link_m_n_and_timings() {
        let mut r = RegFile::default();
        assert_eq!(refresh_from_regs(&r, 0), None);
        // Transcoder A → DDI D, DP SST; DPLL1 at 1350 (HBR, 270 MHz) selected for port D.
        r.set(TRANS_DDI_FUNC_CTL, (1 << 31) | (3 << 28) | (2 << 24));
        r.set(DPLL_CTRL2, (1 << 9) | (1 << 10));
        r.set(DPLL_CTRL1, 1 << 7);
        // 154 MHz over 270 MHz, 2080 × 1235 total.
        r.set(LINK_M1, 154_000);
        r.set(LINK_N1, 270_000);
        r.set(HTOTAL, (2079 << 16) | 1919);
        r.set(VTOTAL, (1234 << 16) | 1199);
        assert_eq!(refresh_from_regs(&r, 0), Some(59_950));
        r.set(LINK_N1, 0);
        assert_eq!(refresh_from_regs(&r, 0), None);
        assert_eq!(refresh_from_regs(&r, u32::MAX), None);
    }
}
