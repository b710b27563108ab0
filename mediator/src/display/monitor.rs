//! The virtual monitor's mode, and the monitor configuration file (the counterpart of
//! GVT's `vgt_monitor_config_file`).
//!
//! # File format
//!
//! UTF-8 text, one `key = value` per line; `#` starts a comment; blank lines are ignored;
//! keys are case-insensitive and may appear in any order (a later line wins):
//!
//! ```text
//! # virtual DP monitor on port D
//! width   = 1920        # active pixels, 640..=4095
//! height  = 1200        # active lines, 480..=4095
//! refresh = 60          # Hz, 24..=120
//! ```
//!
//! `mode = 1920x1200@60` sets all three at once (`@refresh` is optional). Keys that are not
//! given keep the defaults of [`MonitorConfig::default`] (1920×1200 at 60 Hz). Unknown
//! keys, malformed numbers and out-of-range values are errors. Files are at most
//! [`MAX_CONFIG_BYTES`] long.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Longest monitor configuration accepted.
pub const MAX_CONFIG_BYTES: usize = 4096;
/// Smallest / largest width (EDID detailed timings hold 12 bits).
pub const WIDTH_RANGE: (u32, u32) = (640, 4095);
/// Smallest / largest height.
pub const HEIGHT_RANGE: (u32, u32) = (480, 4095);
/// Smallest / largest refresh rate in Hz.
pub const REFRESH_RANGE: (u32, u32) = (24, 120);

/// Why a monitor configuration was rejected.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MonitorConfigError {
    /// The text is longer than [`MAX_CONFIG_BYTES`].
    #[error("monitor config is {0} bytes, more than {MAX_CONFIG_BYTES}")]
    TooLong(usize),
    /// A line is not `key = value`.
    #[error("line {line}: expected `key = value`")]
    Syntax { line: usize },
    /// A key this format does not know.
    #[error("line {line}: unknown key `{key}`")]
    UnknownKey { line: usize, key: String },
    /// A value that is not a number (or not `WxH[@R]` for `mode`).
    #[error("line {line}: bad value `{value}` for `{key}`")]
    BadValue {
        line: usize,
        key: String,
        value: String,
    },
    /// A value outside its range.
    #[error("{what} {value} is outside {min}..={max}")]
    OutOfRange {
        what: &'static str,
        value: u32,
        min: u32,
        max: u32,
    },
    /// The mode's pixel clock does not fit an EDID detailed timing.
    #[error("mode needs a {pixel_clock_khz} kHz pixel clock, above what EDID can describe")]
    ModeTooFast { pixel_clock_khz: u64 },
}

/// The mode the virtual monitor prefers (its EDID's first detailed timing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitorConfig {
    /// Active pixels per line.
    pub width: u32,
    /// Active lines.
    pub height: u32,
    /// Refresh rate in Hz.
    pub refresh: u32,
}

impl Default for MonitorConfig {
    /// 1920×1200 at 60 Hz, GVT's default EDID for the larger vGPU types (§7.5).
    fn default() -> Self {
        Self {
            width: 1920,
            height: 1200,
            refresh: 60,
        }
    }
}

impl MonitorConfig {
    /// GVT's small-type monitor: 1024×768 at 60 Hz.
    pub const XGA: MonitorConfig = MonitorConfig {
        width: 1024,
        height: 768,
        refresh: 60,
    };

    /// A validated configuration.
    pub fn new(width: u32, height: u32, refresh: u32) -> Result<Self, MonitorConfigError> {
        let c = Self {
            width,
            height,
            refresh,
        };
        c.validate()?;
        Ok(c)
    }

    /// Checks every field against its range.
    pub fn validate(&self) -> Result<(), MonitorConfigError> {
        check("width", self.width, WIDTH_RANGE)?;
        check("height", self.height, HEIGHT_RANGE)?;
        check("refresh", self.refresh, REFRESH_RANGE)?;
        let clock = super::edid::cvt_rb(self).pixel_clock_khz;
        if clock > super::edid::MAX_PIXEL_CLOCK_KHZ {
            return Err(MonitorConfigError::ModeTooFast {
                pixel_clock_khz: clock,
            });
        }
        Ok(())
    }

    /// Parses the file format described in the module documentation.
    pub fn parse(text: &str) -> Result<Self, MonitorConfigError> {
        if text.len() > MAX_CONFIG_BYTES {
            return Err(MonitorConfigError::TooLong(text.len()));
        }
        let mut c = Self::default();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let body = raw.split('#').next().unwrap_or("").trim();
            if body.is_empty() {
                continue;
            }
            let (k, v) = body
                .split_once('=')
                .ok_or(MonitorConfigError::Syntax { line })?;
            let key = k.trim().to_ascii_lowercase();
            let value = v.trim();
            let bad = || MonitorConfigError::BadValue {
                line,
                key: key.clone(),
                value: value.to_string(),
            };
            match key.as_str() {
                "width" => c.width = value.parse().map_err(|_| bad())?,
                "height" => c.height = value.parse().map_err(|_| bad())?,
                "refresh" => c.refresh = value.parse().map_err(|_| bad())?,
                "mode" => {
                    let (w, h, r) = parse_mode(value).ok_or_else(bad)?;
                    c.width = w;
                    c.height = h;
                    c.refresh = r.unwrap_or(c.refresh);
                }
                _ => return Err(MonitorConfigError::UnknownKey { line, key }),
            }
        }
        c.validate()?;
        Ok(c)
    }
}

fn parse_mode(s: &str) -> Option<(u32, u32, Option<u32>)> {
    let (size, rate) = match s.split_once('@') {
        Some((a, b)) => (a, Some(b.trim().parse().ok()?)),
        None => (s, None),
    };
    let (w, h) = size.split_once(['x', 'X'])?;
    Some((w.trim().parse().ok()?, h.trim().parse().ok()?, rate))
}

fn check(what: &'static str, value: u32, (min, max): (u32, u32)) -> Result<(), MonitorConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(MonitorConfigError::OutOfRange {
            what,
            value,
            min,
            max,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keys_comments_and_mode() {
        let c = MonitorConfig::parse("# mon\n Width = 1280 # w\nheight=1024\n\nrefresh = 75\n")
            .unwrap();
        assert_eq!(c, MonitorConfig::new(1280, 1024, 75).unwrap());
        let m = MonitorConfig::parse("mode = 1024x768").unwrap();
        assert_eq!((m.width, m.height, m.refresh), (1024, 768, 60));
        let m = MonitorConfig::parse("mode = 2560X1440@30").unwrap();
        assert_eq!((m.width, m.height, m.refresh), (2560, 1440, 30));
        assert_eq!(MonitorConfig::parse("").unwrap(), MonitorConfig::default());
    }

    #[test]
    fn rejects_bad_input() {
        use MonitorConfigError as E;
        assert!(matches!(
            MonitorConfig::parse("width 5"),
            Err(E::Syntax { line: 1 })
        ));
        assert!(matches!(
            MonitorConfig::parse("\ndepth = 5"),
            Err(E::UnknownKey { line: 2, .. })
        ));
        assert!(matches!(
            MonitorConfig::parse("width = -1"),
            Err(E::BadValue { .. })
        ));
        assert!(matches!(
            MonitorConfig::parse("mode = 1024*768"),
            Err(E::BadValue { .. })
        ));
        assert!(matches!(
            MonitorConfig::parse("width = 99999"),
            Err(E::OutOfRange { what: "width", .. })
        ));
        assert!(matches!(
            MonitorConfig::parse("refresh = 0"),
            Err(E::OutOfRange {
                what: "refresh",
                ..
            })
        ));
        assert!(matches!(
            MonitorConfig::parse("mode = 4095x4095@120"),
            Err(E::ModeTooFast { .. })
        ));
        let long = "#".repeat(MAX_CONFIG_BYTES + 1);
        assert!(matches!(MonitorConfig::parse(&long), Err(E::TooLong(_))));
    }
}
