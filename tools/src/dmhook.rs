//! `xengt-ctl dm-hook`: the vGPU for a guest started by stock `xl create`.
//!
//! Stock xl ignores the `vgt*` keys. It does run whatever `device_model_override` names as
//! the guest's device model, while the new domain is still paused, and it unpauses the
//! domain only after that device model reports it is running. The package installs
//! `/usr/libexec/xengt/qemu-dm-vgt`, a two-line script that runs this hook; a guest config
//! opts in with
//!
//! ```text
//! vgt = 1
//! device_model_override = "/usr/libexec/xengt/qemu-dm-vgt"
//! device_model_args_hvm = [ "-xengt-config", "/etc/xen/guest.cfg" ]
//! ```
//!
//! The hook takes the domain id from QEMU's own `-xen-domid` argument, reads the `vgt*`
//! keys from the config named by `-xengt-config` (the same parser as `xengt-ctl create`),
//! hands the vGPU to xengtd through XenStore and waits until it is Connected, then replaces
//! itself with the real QEMU (`-xengt-qemu PATH`, default Debian's qemu-xen) with the
//! `-xengt-*` arguments removed. So the vGPU exists before the guest's firmware scans PCI.
//! Any failure exits non-zero before QEMU starts: libxl then reports that the device model
//! failed and destroys the domain, and the reason is the last line of
//! `/var/log/xen/qemu-dm-<name>.log`.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use xengt::config::DaemonConfig;
use xengt::xlcfg;

/// Debian 12's qemu-xen (package qemu-system-xen), libxl's default device model there.
pub const DEFAULT_QEMU: &str = "/usr/libexec/xen-qemu-system-i386";

/// What the hook found in its arguments.
#[derive(Debug, PartialEq, Eq)]
pub struct HookArgs {
    /// The guest (QEMU's `-xen-domid`).
    pub domid: u16,
    /// The xl config with the `vgt*` keys (`-xengt-config`).
    pub config: PathBuf,
    /// The device model to run afterwards (`-xengt-qemu`).
    pub qemu: PathBuf,
    /// QEMU's arguments, without the `-xengt-*` ones.
    pub qemu_args: Vec<OsString>,
}

/// Splits the hook's own arguments from QEMU's.
pub fn parse_args(args: &[OsString]) -> Result<HookArgs, String> {
    let mut config = None;
    let mut qemu = None;
    let mut domid = None;
    let mut rest = Vec::with_capacity(args.len());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match a.to_str() {
            Some("-xengt-config") => config = Some(PathBuf::from(value("-xengt-config")?)),
            Some("-xengt-qemu") => qemu = Some(PathBuf::from(value("-xengt-qemu")?)),
            Some("-xen-domid") => {
                let v = value("-xen-domid")?;
                let id = v
                    .to_str()
                    .and_then(|s| s.parse::<u16>().ok())
                    .filter(|d| xengt::daemon::valid_guest_domid(*d))
                    .ok_or_else(|| format!("-xen-domid {v:?} is not a guest domain id"))?;
                domid = Some(id);
                rest.push(a.clone());
                rest.push(v);
            }
            _ => rest.push(a.clone()),
        }
    }
    Ok(HookArgs {
        domid: domid.ok_or(
            "no -xen-domid argument: run this only as an xl device_model_override \
             (see man xengt-ctl-dm-hook)",
        )?,
        config: config.ok_or(
            "no -xengt-config argument: add device_model_args_hvm = [ \"-xengt-config\", \
             \"/path/to/this/guest.cfg\" ] to the guest's config",
        )?,
        qemu: qemu.unwrap_or_else(|| PathBuf::from(DEFAULT_QEMU)),
        qemu_args: rest,
    })
}

/// Runs the hook: hand-off, then exec QEMU. Returns only on failure.
pub fn run(
    args: &[OsString],
    daemon_cfg: &DaemonConfig,
    timeout: Duration,
) -> Result<std::convert::Infallible, String> {
    let a = parse_args(args)?;
    let guest = xlcfg::load(&a.config, daemon_cfg).map_err(|e| e.to_string())?;
    let Some(req) = &guest.vgpu else {
        return Err(format!(
            "{}: no vgt = 1 (drop device_model_override if the guest needs no vGPU)",
            a.config.display()
        ));
    };
    if !a.qemu.is_file() {
        return Err(format!(
            "device model {} does not exist (install qemu-system-xen or pass -xengt-qemu PATH)",
            a.qemu.display()
        ));
    }
    crate::xl::hand_off(a.domid, req, timeout)?;
    eprintln!(
        "xengt-ctl dm-hook: vGPU of domain {} connected; starting {}",
        a.domid,
        a.qemu.display()
    );
    let e = Command::new(&a.qemu).args(&a.qemu_args).exec();
    Err(format!("cannot start {}: {e}", a.qemu.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn own_arguments_are_taken_out_and_qemus_kept_in_order() {
        let a = parse_args(&os(&[
            "-xen-domid",
            "7",
            "-chardev",
            "x",
            "-xengt-config",
            "/etc/xen/g.cfg",
            "-machine",
            "xenfv",
        ]))
        .unwrap();
        assert_eq!(a.domid, 7);
        assert_eq!(a.config, PathBuf::from("/etc/xen/g.cfg"));
        assert_eq!(a.qemu, PathBuf::from(DEFAULT_QEMU));
        assert_eq!(
            a.qemu_args,
            os(&["-xen-domid", "7", "-chardev", "x", "-machine", "xenfv"])
        );
    }

    #[test]
    fn missing_or_bad_arguments_say_what_to_add() {
        let e = parse_args(&os(&["-xengt-config", "/g.cfg"])).unwrap_err();
        assert!(e.contains("-xen-domid"), "{e}");
        let e = parse_args(&os(&["-xen-domid", "3"])).unwrap_err();
        assert!(e.contains("device_model_args_hvm"), "{e}");
        for bad in ["0", "65535", "x", "-1"] {
            let e = parse_args(&os(&["-xen-domid", bad, "-xengt-config", "/g"])).unwrap_err();
            assert!(e.contains("not a guest domain id"), "{bad}: {e}");
        }
        let e = parse_args(&os(&["-xen-domid", "3", "-xengt-config"])).unwrap_err();
        assert!(e.contains("needs a value"), "{e}");
    }
}
