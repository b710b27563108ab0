//! `xengtd demo`: N guest models on the simulated Xen share the software Gen9 engine.
//!
//! Each guest probes its vGPU like i915, balloons, enables execlists on the blitter,
//! allocates a framebuffer in its mappable window, programs pipe A's primary plane like
//! i915 (PIPECONF enable, PLANE_CTL XRGB8888 linear, stride, size, surface) and then draws
//! an animated pattern in its own colour with XY_COLOR_BLT and XY_SRC_COPY_BLT, one
//! request at a time, until told to stop. The weighted scheduler shares the engine; one
//! progress line per second shows submissions, rejections and engine shares.
//!
//! Time is GPU time: the mediator runs on a fake clock that the loop advances to the next
//! completion only while every guest is waiting for the GPU (its vGPU has work queued or
//! running). A guest's CPU time (its MMIO round trips through the simulated Xen) thus
//! costs no GPU time, as on a machine with a CPU per guest; `--seconds` counts seconds of
//! that GPU time. At the end
//! `summary.json` and one PNG per guest (decoded from the plane through the guest GGTT)
//! are written, and the run passes if every guest drew and each engine share is within
//! 10% (relative) of its weight's share.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mediator::clock::{Clock, FakeClock};
use mediator::guest::{cmds, GuestConfig, GuestGpu};
use mediator::guest_port::GuestPort;
use mediator::gvt::{Gvt, VgpuStats};
use mediator::host::EngineId;
use mediator::manager::{CreateRequest, SizeRequest};
use mediator::partition::HostDescription;
use mediator::sw::{SwConfig, SwGpu};
use mediator::vgpu::DEFAULT_SBDF;
use serde::Serialize;
use thiserror::Error;

use crate::sim_runtime::{SimRuntime, SimRuntimeError};

/// Command-line arguments of `xengtd demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Number of guests (1..=6).
    #[arg(long, default_value_t = 4)]
    pub guests: usize,
    /// How long the guests draw, in seconds (1..=50).
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Output directory for summary.json and the PNGs.
    #[arg(long, default_value = "./xengt-demo")]
    pub out: PathBuf,
}

/// Why the demo could not run.
#[derive(Debug, Error)]
pub enum DemoError {
    /// Bad arguments.
    #[error("invalid arguments: {0}")]
    Args(String),
    /// Setting up guests failed.
    #[error(transparent)]
    Runtime(#[from] SimRuntimeError),
    /// Writing the results failed.
    #[error("writing {path}: {cause}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        cause: std::io::Error,
    },
}

/// Engine time per blitted pixel in the demo's software GPU (a frame is about 2.5 ms of
/// GPU time, so a run of a few GPU seconds takes a few wall seconds).
pub const DEMO_PIXEL_NS: u64 = 48;
/// Framebuffer size.
pub const FB_WIDTH: u16 = 256;
/// Framebuffer height.
pub const FB_HEIGHT: u16 = 192;
/// Relative tolerance of engine shares against the weights.
pub const SHARE_TOLERANCE: f64 = 0.10;

/// Base colours (XRGB) of the guests' patterns, in guest order.
pub const COLOURS: [u32; 6] = [
    0x00d0_2020,
    0x0020_c040,
    0x0030_40e0,
    0x00e0_c020,
    0x00c0_30c0,
    0x0020_c0c0,
];

/// One guest in the summary.
#[derive(Debug, Clone, Serialize)]
pub struct GuestSummary {
    /// Domain id.
    pub domid: u16,
    /// Base colour of its pattern.
    pub colour: String,
    /// Frames the guest drew (completed requests it waited for).
    pub frames: u64,
    /// Guest requests (ioreqs) its server answered.
    pub ioreqs: u64,
    /// The screenshot file, if one was written.
    pub png: Option<String>,
    /// Whether its share is within tolerance of the expected share.
    pub share_ok: bool,
    /// The vGPU's statistics (type, windows, submissions, rejections, shares).
    pub vgpu: VgpuStats,
}

/// What the demo produced.
#[derive(Debug, Clone, Serialize)]
pub struct DemoReport {
    /// Seconds the guests drew.
    pub seconds: u64,
    /// Per guest.
    pub guests: Vec<GuestSummary>,
    /// Every guest drew and every share followed its weight.
    pub passed: bool,
}

/// The demo's vGPU types, in guest order: odd guests get the bigger `GVTg_V5_4` (weight
/// 4, against `GVTg_V5_8`'s 2) so the shares differ, but only while every later guest still
/// fits as a `GVTg_V5_8` in what the host leaves of its aperture (the scarce window: 384 MiB
/// of the default 512 MiB after the host's reserve).
fn plan_types(host: &HostDescription, guests: usize) -> Vec<&'static str> {
    let types = mediator::vtypes::builtin_types();
    let low = |name: &str| {
        types
            .iter()
            .find(|t| t.name == name)
            .map_or(u64::MAX, |t| t.low_gm)
    };
    let (small, big) = (low("GVTg_V5_8"), low("GVTg_V5_4"));
    let mut left = host.aperture_size.saturating_sub(host.host_low_reserve);
    let mut plan = Vec::with_capacity(guests);
    for i in 0..guests {
        let after = u64::try_from(guests - i - 1)
            .unwrap_or(u64::MAX)
            .saturating_mul(small);
        let ty = if i % 2 == 1 && big.saturating_add(after) <= left {
            "GVTg_V5_4"
        } else {
            "GVTg_V5_8"
        };
        left = left.saturating_sub(low(ty));
        plan.push(ty);
    }
    plan
}

fn request(ty: &str) -> CreateRequest {
    CreateRequest {
        size: SizeRequest::Type(ty.to_string()),
        sbdf: DEFAULT_SBDF,
        headless: false,
        ggtt_backing: Default::default(),
    }
}

/// Programs pipe A and its primary plane like i915 for `s` (XRGB8888, linear).
fn set_plane(port: &dyn GuestPort, bar0: u64, s: &mediator::guest::Surface) {
    let w = |off: u64, v: u32| port.mmio_write(bar0 + off, 4, u64::from(v));
    w(0x7_0008, 1 << 31); // PIPECONF_A: enable
    w(0x7_0180, 0xc480_2000); // PLANE_CTL_1_A: enable, XRGB8888, linear
    w(0x7_0188, u32::from(s.pitch) / 64); // PLANE_STRIDE in 64-byte units
    w(
        0x7_0190,
        (u32::from(s.height) - 1) << 16 | (u32::from(s.width) - 1),
    ); // PLANE_SIZE
    w(0x7_019c, u32::try_from(s.gma).unwrap_or(0)); // PLANE_SURF: flip
}

/// One frame of guest `n`'s animation: background, a moving bar, a copied band.
fn frame(s: &mediator::guest::Surface, colour: u32, n: u32) -> Vec<u32> {
    let (w, h) = (s.width, s.height);
    let step = u16::try_from(n % u32::from(w - 32)).unwrap_or(0);
    let bar = !colour & 0x00ff_ffff;
    let mut v = Vec::new();
    v.extend(cmds::xy_color_blt(s.gma, s.pitch, (0, 0, w, h), colour));
    v.extend(cmds::xy_color_blt(
        s.gma,
        s.pitch,
        (step, 8, step + 32, 40),
        bar,
    ));
    v.extend(cmds::xy_src_copy_blt(
        s.gma,
        s.pitch,
        (0, h - 32, w, h),
        s.gma,
        s.pitch,
        (0, 8),
    ));
    v
}

fn spawn(
    rt: &SimRuntime,
    index: usize,
    colour: u32,
    stop: Arc<AtomicBool>,
    frames: Arc<AtomicU64>,
) -> Result<JoinHandle<Result<(), String>>, DemoError> {
    let port = rt.guests[index]
        .domain
        .vcpu(0)
        .ok_or_else(|| DemoError::Args("guest without vCPU".into()))?;
    Ok(std::thread::spawn(move || {
        let cfg = GuestConfig::default();
        let mut g = GuestGpu::probe(port.as_ref(), cfg).map_err(|e| e.to_string())?;
        g.enable_engine(EngineId::Bcs).map_err(|e| e.to_string())?;
        let s = g
            .create_surface(FB_WIDTH, FB_HEIGHT)
            .map_err(|e| e.to_string())?;
        set_plane(port.as_ref(), cfg.bar0, &s);
        if index == 0 {
            // One hostile request, to show a rejection being counted.
            g.hostile_lri(EngineId::Bcs).map_err(|e| e.to_string())?;
            g.wait(EngineId::Bcs, Duration::from_secs(10))
                .map_err(|e| e.to_string())?;
        }
        let mut n = 0u32;
        while !stop.load(Ordering::Acquire) {
            g.submit_ring(EngineId::Bcs, &frame(&s, colour, n))
                .map_err(|e| e.to_string())?;
            let done = g
                .wait(EngineId::Bcs, Duration::from_secs(10))
                .map_err(|e| e.to_string())?;
            if done.error {
                return Err(format!("frame {n} failed"));
            }
            frames.fetch_add(1, Ordering::Relaxed);
            n = n.wrapping_add(3);
        }
        Ok(())
    }))
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), DemoError> {
    std::fs::write(path, bytes).map_err(|source| DemoError::Io {
        path: path.to_path_buf(),
        cause: source,
    })
}

/// Runs the demo; prints progress to stdout and writes `summary.json` and the PNGs.
pub fn run(args: &DemoArgs) -> Result<DemoReport, DemoError> {
    if !(1..=COLOURS.len()).contains(&args.guests) {
        return Err(DemoError::Args(format!(
            "--guests must be 1..={}",
            COLOURS.len()
        )));
    }
    if !(1..=50).contains(&args.seconds) {
        return Err(DemoError::Args("--seconds must be 1..=50".into()));
    }
    std::fs::create_dir_all(&args.out).map_err(|source| DemoError::Io {
        path: args.out.clone(),
        cause: source,
    })?;
    let host = HostDescription::default();
    let mut cfg = SwConfig::for_host(&host);
    cfg.cost.per_pixel_ns = DEMO_PIXEL_NS;
    let clock = FakeClock::new();
    let gvt = Gvt::with_host(host, Box::new(SwGpu::new(cfg)), Arc::new(clock.clone()))
        .map_err(SimRuntimeError::from)?;
    let mut rt = SimRuntime::with_gvt(gvt)?;
    for ty in plan_types(&host, args.guests) {
        rt.add_guest(&request(ty), 64 << 20)?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let frames: Vec<Arc<AtomicU64>> = (0..args.guests).map(|_| Arc::default()).collect();
    let mut handles = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        handles.push(spawn(&rt, i, COLOURS[i], stop.clone(), f.clone())?);
    }
    let start = Instant::now();
    let run_for = Duration::from_secs(args.seconds);
    let mut next_line = Duration::from_secs(1);
    let mut stats = None;
    let limit = Duration::from_secs(55);
    while !handles.iter().all(JoinHandle::is_finished) && start.elapsed() < limit {
        let stopping = stats.is_some();
        let busy = rt.all_busy();
        rt.pump(if busy {
            Duration::ZERO
        } else {
            Duration::from_millis(2)
        })?;
        if rt.all_busy() || stopping {
            advance(&rt, &clock);
        }
        if !stopping && clock.now() >= next_line {
            progress(&rt, &frames, next_line, start.elapsed());
            next_line += Duration::from_secs(1);
        }
        if !stopping && clock.now() >= run_for {
            stats = Some(
                rt.guests
                    .iter()
                    .filter_map(|g| rt.gvt.stats(g.id).ok())
                    .collect::<Vec<VgpuStats>>(),
            );
            stop.store(true, Ordering::Release);
        }
    }
    let stats = stats.unwrap_or_default();
    let results: Vec<Result<(), String>> = handles
        .into_iter()
        .map(|h| {
            h.join()
                .unwrap_or_else(|_| Err("guest thread panicked".into()))
        })
        .collect();
    finish(args, &rt, stats, &frames, &results)
}

/// Moves the fake clock to the mediator's next deadline.
fn advance(rt: &SimRuntime, clock: &FakeClock) {
    if let Some(d) = rt.gvt.next_deadline() {
        let now = clock.now();
        if d > now {
            clock.advance(d - now);
        }
    }
}

fn progress(rt: &SimRuntime, frames: &[Arc<AtomicU64>], t: Duration, wall: Duration) {
    let mut line = format!(
        "[gpu {:>2}s wall {:>4.1}s]",
        t.as_secs(),
        wall.as_secs_f64()
    );
    for (g, f) in rt.guests.iter().zip(frames) {
        if let Ok(s) = rt.gvt.stats(g.id) {
            line.push_str(&format!(
                "  dom{} {}: {} frames, {} sub, {} rej, share {:.1}% (exp {:.1}%)",
                g.domain.domid(),
                s.type_name,
                f.load(Ordering::Relaxed),
                s.completed,
                s.rejected_total,
                100.0 * s.engine_share,
                100.0 * s.expected_share
            ));
        }
    }
    println!("{line}");
}

fn finish(
    args: &DemoArgs,
    rt: &SimRuntime,
    stats: Vec<VgpuStats>,
    frames: &[Arc<AtomicU64>],
    results: &[Result<(), String>],
) -> Result<DemoReport, DemoError> {
    let mut guests = Vec::new();
    let mut passed = true;
    println!("guest  type        frames  share    expected  deviation");
    for (i, (g, vgpu)) in rt.guests.iter().zip(stats).enumerate() {
        let domid = g.domain.domid();
        let png = match rt.gvt.screenshot(g.id) {
            Ok(bytes) => {
                let name = format!("guest-{domid}.png");
                write(&args.out.join(&name), &bytes)?;
                Some(name)
            }
            Err(e) => {
                println!("dom{domid}: no screenshot: {e}");
                None
            }
        };
        let n = frames.get(i).map_or(0, |f| f.load(Ordering::Relaxed));
        let dev = if vgpu.expected_share > 0.0 {
            (vgpu.engine_share - vgpu.expected_share) / vgpu.expected_share
        } else {
            1.0
        };
        let share_ok = dev.abs() <= SHARE_TOLERANCE;
        let ok = share_ok && n > 0 && png.is_some();
        if let Some(Err(e)) = results.get(i) {
            println!("dom{domid}: guest error: {e}");
        }
        passed &= ok && matches!(results.get(i), Some(Ok(())));
        println!(
            "dom{domid:<3} {:<11} {n:>6}  {:>6.2}%  {:>6.2}%   {:>+6.1}% {}",
            vgpu.type_name,
            100.0 * vgpu.engine_share,
            100.0 * vgpu.expected_share,
            100.0 * dev,
            if ok { "ok" } else { "FAIL" }
        );
        guests.push(GuestSummary {
            domid,
            colour: format!("#{:06x}", COLOURS.get(i).copied().unwrap_or(0)),
            frames: n,
            ioreqs: g.server.counters().dispatch.requests,
            png,
            share_ok,
            vgpu,
        });
    }
    let report = DemoReport {
        seconds: args.seconds,
        guests,
        passed,
    };
    let json = serde_json::to_vec_pretty(&report).unwrap_or_default();
    write(&args.out.join("summary.json"), &json)?;
    println!(
        "demo {}: summary in {}",
        if passed { "PASSED" } else { "FAILED" },
        args.out.join("summary.json").display()
    );
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_guest_count_fits_the_default_host_and_mixes_weights_where_it_can() {
        let host = HostDescription::default();
        let types = mediator::vtypes::builtin_types();
        for n in 1..=COLOURS.len() {
            let plan = plan_types(&host, n);
            assert_eq!(plan.len(), n);
            let low: u64 = plan
                .iter()
                .map(|p| types.iter().find(|t| t.name == *p).unwrap().low_gm)
                .sum();
            assert!(
                low <= host.aperture_size - host.host_low_reserve,
                "{n}: {plan:?}"
            );
            if (2..=5).contains(&n) {
                assert!(plan.contains(&"GVTg_V5_4"), "{n}: {plan:?}");
            }
        }
    }
}
