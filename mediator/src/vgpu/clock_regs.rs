//! Registers whose value is derived from time: RING_TIMESTAMP (spec §3.9, CTC_MODE 0
//! selects the 12 MHz command-streamer timestamp).

use super::Vgpu;

/// Command-streamer timestamp frequency with CTC_MODE = 0.
pub const TIMESTAMP_HZ: u64 = 12_000_000;

/// Timestamp ticks after `nanos` nanoseconds (wraps like the 64-bit hardware counter).
pub fn ticks(nanos: u128) -> u64 {
    let t = nanos.saturating_mul(u128::from(TIMESTAMP_HZ)) / 1_000_000_000;
    // Truncation to 64 bits is the counter's wrap-around.
    (t & u128::from(u64::MAX)) as u64
}

impl Vgpu {
    /// One dword of the 64-bit RING_TIMESTAMP: ticks since the vGPU was created. All
    /// engines share one counter, which never goes backwards.
    pub(super) fn timestamp_dword(&self, high: bool) -> u32 {
        let t = ticks(self.epoch.elapsed().as_nanos());
        let dw = if high { t >> 32 } else { t & 0xffff_ffff };
        u32::try_from(dw).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::bus::{IoHandler, Space};
    use crate::effects::Effects;
    use crate::memory::{GuestMemory, VecMemory};
    use crate::partition::{HostDescription, Partitioner, MIB};
    use crate::vgpu::{VgpuConfig, DEFAULT_SBDF};

    #[test]
    fn tick_conversion() {
        assert_eq!(ticks(1_000_000_000), 12_000_000);
        assert_eq!(ticks(1_000), 12);
        // The 64-bit counter wraps: one second after the wrap point it reads ~12e6.
        let wrap = (1u128 << 64) * 1_000_000_000 / u128::from(TIMESTAMP_HZ);
        let t = ticks(wrap + 1_000_000_000);
        assert!((11_999_999..=12_000_000).contains(&t), "{t}");
        assert!(ticks(u128::MAX) > 0);
    }

    #[test]
    fn ring_timestamp_advances_and_is_read_only() {
        let host = HostDescription::default();
        let a = Partitioner::new(host)
            .unwrap()
            .allocate(128 * MIB, 512 * MIB, 4)
            .unwrap();
        let mem: Arc<dyn GuestMemory> = Arc::new(VecMemory::new(MIB));
        let mut v = Vgpu::new(VgpuConfig::new(1, "t", a, 1), &host, mem);
        let cfg = (DEFAULT_SBDF as u64) << 32;
        let mut fx = Effects::new();
        v.write(
            Space::PciConfig,
            cfg | 0x10,
            &0xf000_0004u32.to_le_bytes(),
            &mut fx,
        );
        v.write(Space::PciConfig, cfg | 0x04, &7u16.to_le_bytes(), &mut fx);
        let rd = |v: &mut Vgpu, off: u64| {
            let mut d = [0u8; 8];
            v.read(Space::Mmio, 0xf000_0000 + off, &mut d, &mut Effects::new());
            u64::from_le_bytes(d)
        };
        let t0 = rd(&mut v, 0x2358);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let t1 = rd(&mut v, 0x2358);
        assert!(t1 >= t0 + 2 * 12_000, "{t0} -> {t1}");
        // Another engine shares the counter; writes are ignored.
        v.write(Space::Mmio, 0xf002_2358, &[0; 4], &mut fx);
        assert!(rd(&mut v, 0x2_2358) >= t1);
    }
}
