//! Shared helpers for the end-to-end tests in `tests/tests/`.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mediator::guest::{GuestConfig, GuestGpu};
use mediator::guest_port::GuestPort;
use xengt::sim_runtime::SimRuntime;

/// RAM of each test guest.
pub const GUEST_RAM: u64 = 64 << 20;

/// Runs `body` as guest `index`'s driver on vCPU 0 of its domain, on its own thread,
/// after probing the vGPU like i915.
pub fn spawn_guest<T: Send + 'static>(
    rt: &SimRuntime,
    index: usize,
    body: impl FnOnce(&mut GuestGpu<'_>) -> T + Send + 'static,
) -> JoinHandle<T> {
    let port: Arc<dyn GuestPort> = rt.guests[index]
        .domain
        .vcpu(0)
        .unwrap_or_else(|| panic!("guest {index} has no vCPU 0"));
    std::thread::spawn(move || {
        let mut g = GuestGpu::probe(port.as_ref(), GuestConfig::default())
            .unwrap_or_else(|e| panic!("probe failed: {e}"));
        body(&mut g)
    })
}

/// Pumps the runtime until every handle finished (or `limit` of wall time passed, which
/// panics), calling `tick` after each turn.
pub fn pump_until_done<T>(
    rt: &mut SimRuntime,
    handles: &[JoinHandle<T>],
    limit: Duration,
    mut tick: impl FnMut(&mut SimRuntime),
) {
    let start = Instant::now();
    while !handles.iter().all(JoinHandle::is_finished) {
        assert!(
            start.elapsed() < limit,
            "guests did not finish in {limit:?}"
        );
        rt.pump(Duration::from_millis(2))
            .unwrap_or_else(|e| panic!("pump: {e}"));
        tick(rt);
    }
}
