//! Optional trace of every guest access the daemon dispatches (`xengtd --mmio-trace FILE`),
//! written in the format of the mediator's replay fixtures
//! (`mediator/tests/fixtures/*.trace`): `R|W <BAR0 offset> <size> <value>` for BAR0,
//! `CR|CW <config reg> <size> <value>` for PCI config space; anything else (aperture,
//! port I/O) as a `#` comment line with the guest-physical address. A real guest
//! driver's probe captured this way becomes a fixture with no conversion step.
//!
//! The guest controls how many accesses it makes, so the file is capped at
//! `max_lines`; one final comment line says how many accesses were left out.
//!
//! A path containing `%d` gives one file per domain (`%d` replaced by the domain id,
//! created when the domain's first access arrives, closed when its vGPU goes), so the
//! trace of one guest's driver is not interleaved with another guest's accesses.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use mediator::bus::{le_value, IoHandler, Space};
use mediator::effects::Effects;

/// Size of BAR0 (registers + GGTT window): accesses inside it are logged by offset.
const BAR0_SIZE: u64 = 16 << 20;

/// Trace sink with a line budget.
pub struct MmioTrace {
    out: Box<dyn Write + Send>,
    lines: u64,
    max_lines: u64,
    dropped: u64,
    failed: bool,
}

impl std::fmt::Debug for MmioTrace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MmioTrace")
            .field("lines", &self.lines)
            .field("max_lines", &self.max_lines)
            .field("dropped", &self.dropped)
            .finish()
    }
}

impl MmioTrace {
    /// A trace into `out` (a header comment is written at once) of at most `max_lines`
    /// access lines.
    pub fn new(mut out: Box<dyn Write + Send>, max_lines: u64) -> Self {
        let failed = writeln!(
            out,
            "# xengtd MMIO trace: R|W <BAR0 offset> <size> <value>, CR|CW <config reg> <size> <value>"
        )
        .is_err();
        MmioTrace {
            out,
            lines: 0,
            max_lines,
            dropped: 0,
            failed,
        }
    }

    /// A trace into a new (buffered) file at `path`.
    pub fn to_file(path: &Path, max_lines: u64) -> std::io::Result<Self> {
        let f = std::fs::File::create(path)?;
        Ok(MmioTrace::new(
            Box::new(std::io::BufWriter::new(f)),
            max_lines,
        ))
    }

    /// Access lines written so far.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Accesses not written because the budget was used up.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    fn emit(&mut self, line: std::fmt::Arguments<'_>) {
        if self.failed {
            return;
        }
        if self.lines >= self.max_lines {
            if self.dropped == 0 {
                let _ = writeln!(
                    self.out,
                    "# trace budget of {} lines used up; later accesses are not logged",
                    self.max_lines
                );
                let _ = self.out.flush();
            }
            self.dropped = self.dropped.saturating_add(1);
            return;
        }
        self.lines += 1;
        if self.out.write_fmt(line).is_err() || self.out.write_all(b"\n").is_err() {
            tracing::warn!("MMIO trace write failed; tracing stops");
            self.failed = true;
        }
    }

    /// Records one access (called after the handler ran, so reads carry their answer).
    pub fn record(&mut self, space: Space, addr: u64, data: &[u8], write: bool, bar0: Option<u64>) {
        let v = le_value(data);
        let n = data.len();
        let d = if write { "W" } else { "R" };
        match space {
            Space::PciConfig => {
                let reg = addr & 0xffff_ffff;
                self.emit(format_args!("C{d} {reg:#x} {n} {v:#x}"));
            }
            Space::Mmio => match bar0.and_then(|b| addr.checked_sub(b)) {
                Some(off) if off < BAR0_SIZE => self.emit(format_args!("{d} {off:#x} {n} {v:#x}")),
                _ => self.emit(format_args!("# MMIO {d} gpa={addr:#x} {n} {v:#x}")),
            },
            Space::Pio => self.emit(format_args!("# PIO {d} port={addr:#x} {n} {v:#x}")),
        }
    }

    /// Flushes buffered lines (called after each batch of requests).
    pub fn flush(&mut self) {
        if !self.failed && self.out.flush().is_err() {
            self.failed = true;
        }
    }
}

/// Placeholder in an `--mmio-trace` path for the domain id.
pub const DOMID_PLACEHOLDER: &str = "%d";

/// Where `--mmio-trace` writes: one file shared by every domain, or one per domain.
pub enum TraceSink {
    /// Every domain's accesses in one file, in dispatch order.
    Shared(MmioTrace),
    /// One file per domain, named by replacing [`DOMID_PLACEHOLDER`] in `template`.
    PerDomain {
        /// The path with the placeholder.
        template: String,
        /// Line budget of each file.
        max_lines: u64,
        /// Open traces; `None` for a domain whose file could not be created (logged once).
        open: BTreeMap<u16, Option<MmioTrace>>,
    },
}

impl std::fmt::Debug for TraceSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TraceSink::Shared(t) => f.debug_tuple("Shared").field(t).finish(),
            TraceSink::PerDomain { template, open, .. } => f
                .debug_struct("PerDomain")
                .field("template", template)
                .field("open", &open.len())
                .finish(),
        }
    }
}

impl TraceSink {
    /// A sink for `path`: per domain if it contains [`DOMID_PLACEHOLDER`] (files are
    /// created lazily), otherwise one file created now.
    pub fn open(path: &Path, max_lines: u64) -> std::io::Result<TraceSink> {
        let text = path.to_string_lossy();
        if text.contains(DOMID_PLACEHOLDER) {
            return Ok(TraceSink::PerDomain {
                template: text.into_owned(),
                max_lines,
                open: BTreeMap::new(),
            });
        }
        Ok(TraceSink::Shared(MmioTrace::to_file(path, max_lines)?))
    }

    /// The file name of `domid`'s trace in per-domain mode.
    pub fn domain_path(template: &str, domid: u16) -> PathBuf {
        PathBuf::from(template.replace(DOMID_PLACEHOLDER, &domid.to_string()))
    }

    /// The trace that records `domid`'s accesses (`None` if its file could not be made).
    pub fn for_domain(&mut self, domid: u16) -> Option<&mut MmioTrace> {
        match self {
            TraceSink::Shared(t) => Some(t),
            TraceSink::PerDomain {
                template,
                max_lines,
                open,
            } => open
                .entry(domid)
                .or_insert_with(|| {
                    let path = TraceSink::domain_path(template, domid);
                    match MmioTrace::to_file(&path, *max_lines) {
                        Ok(t) => Some(t),
                        Err(e) => {
                            tracing::warn!(domid, path = %path.display(), "MMIO trace not created: {e}");
                            None
                        }
                    }
                })
                .as_mut(),
        }
    }

    /// Flushes and closes `domid`'s file (per-domain mode); a later vGPU of the same
    /// domain id starts a new file.
    pub fn close_domain(&mut self, domid: u16) {
        match self {
            TraceSink::Shared(t) => t.flush(),
            TraceSink::PerDomain { open, .. } => {
                if let Some(Some(mut t)) = open.remove(&domid) {
                    t.flush();
                }
            }
        }
    }
}

/// An [`IoHandler`] that forwards to `inner` and records each access.
pub struct TracingIo<'a> {
    /// The device.
    pub inner: &'a mut dyn IoHandler,
    /// The sink.
    pub trace: &'a mut MmioTrace,
    /// Guest BAR0 base at the start of the batch (`None` before the BAR is programmed).
    pub bar0: Option<u64>,
}

impl std::fmt::Debug for TracingIo<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracingIo")
            .field("trace", &self.trace)
            .field("bar0", &self.bar0)
            .finish()
    }
}

impl IoHandler for TracingIo<'_> {
    fn read(&mut self, space: Space, addr: u64, data: &mut [u8], fx: &mut Effects) {
        self.inner.read(space, addr, data, fx);
        self.trace.record(space, addr, data, false, self.bar0);
    }

    fn write(&mut self, space: Space, addr: u64, data: &[u8], fx: &mut Effects) {
        self.inner.write(space, addr, data, fx);
        self.trace.record(space, addr, data, true, self.bar0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl Buf {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    /// Reads answer the low byte of the address in every byte.
    struct Echo;
    impl IoHandler for Echo {
        fn read(&mut self, _: Space, addr: u64, data: &mut [u8], _: &mut Effects) {
            data.fill(addr as u8);
        }
        fn write(&mut self, _: Space, _: u64, _: &[u8], _: &mut Effects) {}
    }

    #[test]
    fn lines_use_the_fixture_format_with_read_answers() {
        let buf = Buf::default();
        let mut t = MmioTrace::new(Box::new(buf.clone()), 100);
        let mut dev = Echo;
        let mut io = TracingIo {
            inner: &mut dev,
            trace: &mut t,
            bar0: Some(0xf000_0000),
        };
        let mut fx = Effects::default();
        let mut d4 = [0u8; 4];
        io.read(Space::Mmio, 0xf007_8010, &mut d4, &mut fx);
        io.write(
            Space::Mmio,
            0xf000_2230,
            &0x4ffe_651du32.to_le_bytes(),
            &mut fx,
        );
        let mut d2 = [0u8; 2];
        io.read(Space::PciConfig, (0x10u64 << 32) | 0xae, &mut d2, &mut fx);
        io.write(Space::PciConfig, (0x10u64 << 32) | 0x04, &[7, 4], &mut fx);
        io.read(Space::Mmio, 0xe000_0000, &mut d4, &mut fx);
        io.write(Space::Pio, 0x3f8, &[0x41], &mut fx);
        t.flush();
        let text = buf.text();
        let lines: Vec<&str> = text.lines().skip(1).collect();
        assert_eq!(
            lines,
            [
                "R 0x78010 4 0x10101010",
                "W 0x2230 4 0x4ffe651d",
                "CR 0xae 2 0xaeae",
                "CW 0x4 2 0x407",
                "# MMIO R gpa=0xe0000000 4 0x0",
                "# PIO W port=0x3f8 1 0x41",
            ]
        );
        assert_eq!(t.lines(), 6);
    }

    #[test]
    fn budget_caps_the_file_and_counts_what_was_left_out() {
        let buf = Buf::default();
        let mut t = MmioTrace::new(Box::new(buf.clone()), 2);
        for i in 0..5u64 {
            t.record(Space::Mmio, 0x1000 + 4 * i, &[0; 4], true, Some(0));
        }
        assert_eq!((t.lines(), t.dropped()), (2, 3));
        let text = buf.text();
        assert_eq!(text.lines().filter(|l| l.starts_with("W ")).count(), 2);
        assert_eq!(text.matches("budget of 2 lines").count(), 1);
    }

    #[test]
    fn per_domain_sink_keeps_each_domain_in_its_own_file() {
        let dir = std::env::temp_dir().join(format!("xengt-trace-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let template = dir.join("mmio-%d.trace");
        let mut sink = TraceSink::open(&template, 10).unwrap();
        for (domid, off) in [(3u16, 0x10u64), (7, 0x20), (3, 0x30)] {
            let t = sink.for_domain(domid).unwrap();
            t.record(Space::Mmio, off, &[0; 4], true, Some(0));
            t.flush();
        }
        sink.close_domain(3);
        sink.close_domain(7);
        let read = |d: u16| std::fs::read_to_string(dir.join(format!("mmio-{d}.trace"))).unwrap();
        let (a, b) = (read(3), read(7));
        assert!(
            a.contains("W 0x10 4 0x0") && a.contains("W 0x30 4 0x0"),
            "{a}"
        );
        assert!(!a.contains("W 0x20"), "{a}");
        assert!(b.contains("W 0x20 4 0x0") && !b.contains("W 0x10"), "{b}");
        // A new vGPU of domain 3 starts a fresh file.
        sink.for_domain(3).unwrap().flush();
        sink.close_domain(3);
        assert!(!read(3).contains("W 0x10"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn shared_sink_without_placeholder_is_one_file() {
        let path = std::env::temp_dir().join(format!("xengt-trace-shared-{}", std::process::id()));
        let mut sink = TraceSink::open(&path, 10).unwrap();
        assert!(matches!(sink, TraceSink::Shared(_)));
        sink.for_domain(1)
            .unwrap()
            .record(Space::Mmio, 0x4, &[0; 4], false, Some(0));
        sink.for_domain(2)
            .unwrap()
            .record(Space::Mmio, 0x8, &[0; 4], false, Some(0));
        sink.close_domain(1);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("R 0x4 4 0x0") && text.contains("R 0x8 4 0x0"));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn without_a_bar0_mmio_is_a_comment() {
        let buf = Buf::default();
        let mut t = MmioTrace::new(Box::new(buf.clone()), 10);
        t.record(Space::Mmio, 0x1000, &[1, 0, 0, 0], false, None);
        t.record(Space::Mmio, 0x10, &[1, 0, 0, 0], false, Some(0x100));
        assert!(buf.text().contains("# MMIO R gpa=0x1000 4 0x1"));
        assert!(buf.text().contains("# MMIO R gpa=0x10 4 0x1"));
    }
}
