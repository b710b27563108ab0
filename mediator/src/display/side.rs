//! Emulated side effects of guest writes to display registers (§7.4, §7.6): pipe enable,
//! plane flips, refused scaling, power wells, DBUF, PLL locks, DDI buffer idle, DP
//! transport idle-done and panel power. Each function runs after the table has stored the
//! write.

use super::regfile::RegFile;
use super::regs::*;

/// Which per-pipe register an offset is, with the pipe index.
pub fn per_pipe(offset: u32) -> Option<(u32, u32)> {
    let base = match offset {
        0x60000..=0x62FFF => 0x60000,
        0x68000..=0x6AFFF => 0x68000,
        0x70000..=0x72FFF => 0x70000,
        _ => return None,
    };
    let pipe = (offset - base) / PIPE_STRIDE;
    Some((pipe, offset - pipe * PIPE_STRIDE))
}

/// If `reg` (a pipe-A offset) is PLANE_SURF of plane 1..=3, the plane number.
pub fn plane_surf(reg: u32) -> Option<u32> {
    (0..PLANES_PER_PIPE)
        .find(|n| reg == PLANE_SURF + n * PLANE_STRIDE_REGS)
        .map(|n| n + 1)
}

/// PS_CTRL: a write selecting a plane to scale (bits 27:25) is refused (§7.1). Returns
/// true if the write was undone.
pub fn ps_ctrl(regs: &mut RegFile, offset: u32, old: u32, value: u32) -> bool {
    if (value >> 25) & 7 != 0 {
        regs.set(offset, old);
        return true;
    }
    false
}

/// Global side effects keyed by offset (power, PLLs, DDI, panel).
pub fn global(regs: &mut RegFile, offset: u32, new: u32) {
    match offset {
        PWR_WELL_CTL2 => {
            // Keep the request bits; each state bit = request bit − 1.
            let req = new & 0xA000_02AA;
            regs.set(offset, req | (req >> 1));
        }
        DBUF_CTL => regs.set(offset, (new & 0x8000_0000) | ((new >> 1) & 0x4000_0000)),
        LCPLL1_CTL | LCPLL2_CTL => {
            regs.set(offset, (new & 0x8000_0000) | ((new >> 1) & 0x4000_0000))
        }
        PP_CONTROL => regs.set(PP_STATUS, if new & 1 != 0 { 0x8000_0000 } else { 0 }),
        o if (DDI_BUF_CTL..DDI_BUF_CTL + NUM_DDI * DDI_STRIDE).contains(&o)
            && (o - DDI_BUF_CTL) % DDI_STRIDE == 0 =>
        {
            let idle = if new & (1 << 31) != 0 { 0 } else { 0x80 };
            regs.update(o, 0x80, idle);
        }
        o if (DP_TP_CTL..DP_TP_CTL + NUM_DDI * DDI_STRIDE).contains(&o)
            && (o - DP_TP_CTL) % DDI_STRIDE == 0
            && (new >> 8) & 7 == 2 =>
        {
            let status = o - DP_TP_CTL + DP_TP_STATUS;
            regs.update(status, 1 << 25, 1 << 25);
        }
        _ => {}
    }
}

/// DPLL_STATUS computed from the PLL enables: bit 8·i = DPLL i locked.
pub fn dpll_status(regs: &RegFile) -> u32 {
    [LCPLL1_CTL, LCPLL2_CTL, WRPLL_CTL1, WRPLL_CTL2]
        .iter()
        .enumerate()
        .filter(|(_, &o)| regs.get(o) & (1 << 31) != 0)
        .fold(0, |acc, (i, _)| acc | 1 << (8 * i))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(r: &mut RegFile, off: u32, v: u32) {
        let (_, new) = r.guest_write(off, v);
        global(r, off, new);
    }

    #[test]
    fn power_wells_echo_requests_and_ignore_state_writes() {
        let mut r = RegFile::default();
        write(
            &mut r,
            PWR_WELL_CTL2,
            0x8000_0000 | 0x200 | 0x4000_0000 | 0x1_0000,
        );
        assert_eq!(r.get(PWR_WELL_CTL2), 0xC000_0300);
        write(&mut r, PWR_WELL_CTL2, 0x2000_0008);
        assert_eq!(r.get(PWR_WELL_CTL2), 0x3000_000C);
        assert_eq!(r.get(SKL_FUSE_STATUS), 0x8E00_0000);
    }

    #[test]
    fn plls_lock_and_status_is_computed() {
        let mut r = RegFile::default();
        write(&mut r, LCPLL1_CTL, 0x8000_0000);
        assert_eq!(r.get(LCPLL1_CTL), 0xC000_0000);
        write(&mut r, WRPLL_CTL2, 0x8000_0000);
        assert_eq!(dpll_status(&r), 0x0100_0001);
        write(&mut r, LCPLL1_CTL, 0x4000_0000);
        assert_eq!(r.get(LCPLL1_CTL), 0);
        write(&mut r, DBUF_CTL, 0x8000_0000);
        assert_eq!(r.get(DBUF_CTL), 0xC000_0000);
    }

    #[test]
    fn ddi_idle_and_dp_tp_idle_done() {
        let mut r = RegFile::default();
        let d = DDI_BUF_CTL + 3 * DDI_STRIDE;
        assert_eq!(r.get(d) & 0x80, 0x80);
        write(&mut r, d, 0x8000_0000);
        assert_eq!(r.get(d), 0x8000_0000);
        write(&mut r, d, 0);
        assert_eq!(r.get(d), 0x80);
        write(&mut r, DP_TP_CTL + 3 * DDI_STRIDE, 0x8000_0200);
        assert_eq!(r.get(DP_TP_STATUS + 3 * DDI_STRIDE) & (1 << 25), 1 << 25);
        write(&mut r, PP_CONTROL, 1);
        assert_eq!(r.get(PP_STATUS), 0x8000_0000);
    }

    #[test]
    fn per_pipe_decoding() {
        assert_eq!(per_pipe(PIPECONF + 2 * PIPE_STRIDE), Some((2, PIPECONF)));
        assert_eq!(
            per_pipe(PS_CTRL + PIPE_STRIDE + 0x100),
            Some((1, PS_CTRL + 0x100))
        );
        assert_eq!(per_pipe(0x64000), None);
        assert_eq!(plane_surf(PLANE_SURF + 0x100), Some(2));
        assert_eq!(plane_surf(PLANE_CTL), None);
    }
}
