//! End to end on the simulated Xen: a guest programs fences through BAR0 and writes a
//! surface linearly through its BAR2 aperture; its RAM must hold the X- or Y-tiled
//! layout (§4.5, pitfall 5). A second guest's fence over the first guest's GM is
//! ignored and counted, and the first guest's RAM is untouched by it.

use std::sync::Arc;
use std::time::Duration;

use mediator::clock::RealClock;
use mediator::guest::driver::{GuestConfig, GuestGpu};
use mediator::guest_port::GuestPort;
use mediator::manager::CreateRequest;
use xengt::sim_runtime::SimRuntime;
use xengt_tests::{pump_until_done, GUEST_RAM};

const FENCE_BASE: u64 = 0x10_0000;
/// Guest RAM for the surfaces, above the guest model's own frame allocator.
const SURFACE_GPA: u64 = 0x200_0000;
const PAGE: u64 = 4096;

/// Surface byte (x, y).
fn pat(x: u64, y: u64, seed: u64) -> u8 {
    (x * 5 + y * 17 + seed * 101 + (x >> 6)) as u8
}

/// Where byte (x, y) of a `pitch`-wide surface is stored, by walking the storage order
/// (X: 8 rows of 512 bytes per tile; Y: 8 columns of 16 bytes × 32 rows per tile).
fn storage_index(y_tiled: bool, pitch: u64, x: u64, y: u64) -> u64 {
    let (tw, th) = if y_tiled { (128, 32) } else { (512, 8) };
    let tile = (y / th) * (pitch / tw) + x / tw;
    let (cx, cy) = (x % tw, y % th);
    let inner = if y_tiled {
        (cx / 16) * (16 * 32) + cy * 16 + cx % 16
    } else {
        cy * 512 + cx
    };
    tile * 4096 + inner
}

/// i915's Gen9 fence value: end page and pitch in the high dword, start and bits low.
fn fence(start: u64, size: u64, pitch: u64, y_tiled: bool) -> u64 {
    let end = start + size - PAGE;
    (end << 32) | ((pitch / 128 - 1) << 32) | start | (u64::from(y_tiled) << 1) | 1
}

fn set_fence(port: &dyn GuestPort, bar0: u64, i: u64, raw: u64) {
    let lo = bar0 + FENCE_BASE + 8 * i;
    port.mmio_write(lo, 4, 0);
    port.mmio_write(lo + 4, 4, raw >> 32);
    port.mmio_write(lo, 4, raw & 0xffff_ffff);
}

/// The guest model's BARs, with BAR2 below BAR0: the default BAR2 (E000_0000) would
/// contain BAR0 (F000_0000) with the default host's 512 MiB aperture, and the second
/// trap would be refused as overlapping.
fn config() -> GuestConfig {
    GuestConfig {
        bar2: 0xc000_0000,
        ..GuestConfig::default()
    }
}

/// Where the guest's BAR2 really is (the BAR's size alignment may have cleared bits of
/// the address the guest model programmed).
fn bar2(port: &dyn GuestPort, cfg: &GuestConfig) -> u64 {
    let lo = u64::from(port.pci_cfg_read(cfg.bdf, 0x18, 4) & !0xf);
    let hi = u64::from(port.pci_cfg_read(cfg.bdf, 0x1c, 4));
    lo | (hi << 32)
}

/// Probes, maps `pages` at the start of the low window onto `gpa`, fences them, writes
/// the pattern linearly through BAR2 and returns the GMA and the RAM bytes.
fn draw(port: &dyn GuestPort, y_tiled: bool, pitch: u64, rows: u64, seed: u64) -> (u64, Vec<u8>) {
    let cfg = config();
    let g = GuestGpu::probe(port, cfg).unwrap_or_else(|e| panic!("probe: {e}"));
    let gma = g.info().low.0;
    let size = pitch * rows;
    let gpa = SURFACE_GPA + seed * size;
    for i in 0..size / PAGE {
        g.map_ggtt(gma + i * PAGE, gpa + i * PAGE);
    }
    set_fence(port, cfg.bar0, 1, fence(gma, size, pitch, y_tiled));
    let bar2 = bar2(port, &cfg);
    let byte = |l: u64| u64::from(pat(l % pitch, l / pitch, seed));
    for l in (0..size).step_by(8) {
        let v = (0..8).fold(0, |acc, k| acc | byte(l + k) << (8 * k));
        port.mmio_write(bar2 + gma + l, 8, v);
    }
    // An unaligned read back through the aperture gives the linear bytes again.
    let l = pitch + 13;
    let want = (0..8).fold(0, |acc, k| acc | byte(l + k) << (8 * k));
    assert_eq!(port.mmio_read(bar2 + gma + l, 8), want);
    let mut ram = vec![0u8; size as usize];
    port.ram()
        .read(gpa, &mut ram)
        .expect("surface RAM readable");
    (gma, ram)
}

fn check(ram: &[u8], y_tiled: bool, pitch: u64, rows: u64, seed: u64) {
    for y in 0..rows {
        for x in 0..pitch {
            let i = storage_index(y_tiled, pitch, x, y) as usize;
            assert_eq!(ram[i], pat(x, y, seed), "tiled {y_tiled}: ({x}, {y})");
        }
    }
}

#[test]
fn aperture_detiles_through_fences_and_foreign_fences_are_ignored() {
    let mut rt = SimRuntime::new(Arc::new(RealClock::new())).unwrap();
    let a = rt
        .add_guest(&CreateRequest::of_type("GVTg_V5_4"), GUEST_RAM)
        .unwrap();
    let b = rt
        .add_guest(&CreateRequest::of_type("GVTg_V5_4"), GUEST_RAM)
        .unwrap();
    let port = |i: usize| -> Arc<dyn GuestPort> { rt.guests[i].domain.vcpu(0).unwrap() };
    let (pa, pb) = (port(a), port(b));
    let ha = std::thread::spawn(move || {
        let x = draw(pa.as_ref(), false, 1024, 16, 0);
        let y = draw(pa.as_ref(), true, 512, 32, 1);
        (x, y)
    });
    pump_until_done(
        &mut rt,
        std::slice::from_ref(&ha),
        Duration::from_secs(60),
        |_| {},
    );
    let ((gma_a, x_ram), (_, y_ram)) = ha.join().unwrap();
    check(&x_ram, false, 1024, 16, 0);
    check(&y_ram, true, 512, 32, 1);
    let ca = *rt.gvt.vgpu(rt.guests[a].id).unwrap().counters();
    assert!(ca.aperture_detiled >= 2 * 2048, "{ca:?}");
    assert_eq!((ca.aperture_unmapped, ca.fence_invalid), (0, 0));

    // Guest B fences guest A's surface GM: outside B's windows, so ignored and counted.
    let a_before = {
        let mut buf = vec![0u8; 16 * 1024];
        rt.guests[a]
            .domain
            .vcpu(0)
            .unwrap()
            .ram()
            .read(SURFACE_GPA, &mut buf)
            .unwrap();
        buf
    };
    let hb = std::thread::spawn(move || {
        let cfg = config();
        let g = GuestGpu::probe(pb.as_ref(), cfg).unwrap_or_else(|e| panic!("probe: {e}"));
        set_fence(
            pb.as_ref(),
            cfg.bar0,
            0,
            fence(gma_a, 16 * 1024, 1024, false),
        );
        pb.mmio_write(bar2(pb.as_ref(), &cfg) + gma_a, 8, u64::MAX);
        g.info().low
    });
    pump_until_done(
        &mut rt,
        std::slice::from_ref(&hb),
        Duration::from_secs(60),
        |_| {},
    );
    let b_low = hb.join().unwrap();
    assert!(
        gma_a < b_low.0 || gma_a >= b_low.0 + b_low.1,
        "disjoint windows"
    );
    let cb = *rt.gvt.vgpu(rt.guests[b].id).unwrap().counters();
    assert_eq!(cb.fence_invalid, 1, "{cb:?}");
    assert_eq!((cb.aperture_detiled, cb.aperture_unmapped), (0, 1));
    let mut a_after = vec![0u8; 16 * 1024];
    let pa = rt.guests[a].domain.vcpu(0).unwrap();
    pa.ram().read(SURFACE_GPA, &mut a_after).unwrap();
    assert_eq!(a_before, a_after, "guest A's RAM untouched by guest B");
}
