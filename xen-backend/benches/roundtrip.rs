//! MMIO round trip through the simulated Xen vs. a bare eventfd ping-pong between two
//! threads, measured in the same run. Goal: ratio <= 1.5.
//!
//! Run: `cargo bench -p xen-backend --bench roundtrip` (ITERS env var overrides the count).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use mediator::bus::{set_le_value, GuestRange, IoHandler, Space};
use mediator::effects::Effects;
use xen_backend::ffi::eventfd::{poll_readable, EventFd};
use xen_backend::{Hypervisor, ServerOptions, SimDomainConfig, SimXen};

struct Echo;
impl IoHandler for Echo {
    fn read(&mut self, _s: Space, addr: u64, data: &mut [u8], _fx: &mut Effects) {
        set_le_value(data, addr);
    }
    fn write(&mut self, _s: Space, _a: u64, _d: &[u8], _fx: &mut Effects) {}
}

fn ping_pong(iters: u32) -> Duration {
    let ping = Arc::new(EventFd::new(false).expect("eventfd"));
    let pong = Arc::new(EventFd::new(false).expect("eventfd"));
    let (p2, q2) = (Arc::clone(&ping), Arc::clone(&pong));
    let peer = thread::spawn(move || {
        for _ in 0..iters {
            p2.take().expect("read");
            q2.signal().expect("write");
        }
    });
    let start = Instant::now();
    for _ in 0..iters {
        ping.signal().expect("write");
        pong.take().expect("read");
    }
    let t = start.elapsed();
    peer.join().expect("peer");
    t
}

fn sim_mmio(iters: u32) -> Duration {
    let xen = SimXen::new();
    let dom = xen
        .create_domain(SimDomainConfig::default())
        .expect("domain");
    let opts = ServerOptions {
        mmio: vec![GuestRange::new(0xF000_0000, 0x1000).expect("range")],
        ..ServerOptions::default()
    };
    let mut srv = xen.attach(dom.domid(), opts).expect("attach");
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = Arc::clone(&stop);
    let daemon = thread::spawn(move || {
        let mut h = Echo;
        while !s2.load(Ordering::Relaxed) {
            if poll_readable(srv.poll_fd(), Some(Duration::from_millis(50))).unwrap_or(false) {
                srv.service(&mut h).expect("service");
            }
        }
    });
    let v = dom.vcpu(0).expect("vcpu");
    let start = Instant::now();
    for i in 0..iters {
        let a = 0xF000_0000 + u64::from(i % 512) * 8;
        assert_eq!(v.mmio_read(a, 8), a);
    }
    let t = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    daemon.join().expect("daemon");
    t
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() {
    let iters: u32 = std::env::var("ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4_000);
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(9);
    // Warm up both paths.
    ping_pong(iters / 4);
    sim_mmio(iters / 4);
    // Interleave the two measurements (alternating which goes first) so that load from
    // other processes on this machine hits both alike; report medians over the rounds.
    let per = |d: Duration| d.as_nanos() as f64 / f64::from(iters) / 1000.0;
    let (mut pps, mut sims, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..rounds {
        let (pp, sim) = if r % 2 == 0 {
            let pp = ping_pong(iters);
            (pp, sim_mmio(iters))
        } else {
            let sim = sim_mmio(iters);
            (ping_pong(iters), sim)
        };
        pps.push(per(pp));
        sims.push(per(sim));
        ratios.push(per(sim) / per(pp));
    }
    let (lo, hi) = ratios
        .iter()
        .fold((f64::MAX, f64::MIN), |(l, h), &r| (l.min(r), h.max(r)));
    println!("rounds x iterations:          {rounds} x {iters} (interleaved)");
    println!(
        "eventfd ping-pong round trip: {:8.2} us (median)",
        median(&mut pps)
    );
    println!(
        "sim Xen MMIO round trip:      {:8.2} us (median)",
        median(&mut sims)
    );
    println!(
        "ratio (goal <= 1.5):          {:8.2} (median; per-round range {lo:.2}..{hi:.2})",
        median(&mut ratios)
    );
}
