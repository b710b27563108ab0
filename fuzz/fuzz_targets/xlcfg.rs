//! Fuzz target: the xl.cfg parser (`xengt::xlcfg::parse`) on arbitrary text, against the
//! default daemon configuration. It must never panic; an accepted configuration must
//! request only vGPU types the daemon knows.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xengt::config::DaemonConfig;
use xengt::xlcfg;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let cfg = DaemonConfig::default();
    if let Ok(g) = xlcfg::parse(text, "fuzz.cfg", &cfg) {
        if let Some(name) = g.vgpu.as_ref().and_then(|v| v.type_name.as_ref()) {
            assert!(cfg.find_type(name).is_some(), "unknown type {name:?}");
        }
    }
});
