use super::*;
use proptest::prelude::*;

fn cfg() -> DaemonConfig {
    DaemonConfig::default()
}

#[test]
fn hvm_with_explicit_type_sizes() {
    let g = parse(
        "name = \"g\"\ntype = \"hvm\"\nmemory = 2048\nvgt = 1\nvgt_low_gm_sz = 128\nvgt_high_gm_sz = 512\nvgt_fence_sz = 4\nvgt_primary = 1\n",
        "g.cfg",
        &cfg(),
    )
    .unwrap();
    let v = g.vgpu.unwrap();
    assert_eq!(v.type_name.as_deref(), Some("GVTg_V5_4"));
    assert_eq!((v.low_gm_mib, v.high_gm_mib, v.fences), (128, 512, 4));
    assert_eq!(v.primary, Some(true));
    assert_eq!(g.memory_mib, Some(2048));
}

#[test]
fn vgt_only_takes_the_default_type_and_low_only_picks_a_type() {
    let g = parse("name='p'\ntype='pvh'\nvgt=1", "p.cfg", &cfg()).unwrap();
    assert_eq!(g.vgpu.unwrap().type_name.as_deref(), Some("GVTg_V5_4"));
    let g = parse(
        "name='p'\ntype='pvh'\nvgt=1\nvgt_low_gm_sz=0x200",
        "p.cfg",
        &cfg(),
    )
    .unwrap();
    assert_eq!(g.vgpu.unwrap().type_name.as_deref(), Some("GVTg_V5_1"));
    let g = parse("name='p'\nbuilder='hvm'", "p.cfg", &cfg()).unwrap();
    assert_eq!((g.guest_type, g.vgpu), (GuestType::Hvm, None));
}

#[test]
fn bad_low_size_names_file_line_and_allowed_values() {
    let e = parse(
        "name='x'\ntype='hvm'\nvgt=1\nvgt_low_gm_sz=7\n",
        "bad.cfg",
        &cfg(),
    )
    .unwrap_err();
    let s = e.to_string();
    assert!(s.starts_with("bad.cfg:4: vgt_low_gm_sz:"), "{s}");
    assert!(s.contains("allowed: 64, 128, 256, 512"), "{s}");
}

#[test]
fn mismatched_combination_lists_the_types() {
    let e = parse(
        "name='x'\ntype='hvm'\nvgt=1\nvgt_low_gm_sz=64\nvgt_high_gm_sz=512\n",
        "c.cfg",
        &cfg(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("GVTg_V5_8 = 64/384/4"), "{e}");
}

#[test]
fn custom_limits_allow_other_sizes() {
    let mut c = cfg();
    c.limits.custom = Some(crate::config::CustomLimits {
        low_min_mib: 32,
        low_max_mib: 512,
        high_min_mib: 32,
        high_max_mib: 2048,
        granularity_mib: 32,
        max_fences: 8,
    });
    let g = parse(
        "name='x'\ntype='hvm'\nvgt=1\nvgt_low_gm_sz=96\nvgt_high_gm_sz=96\nvgt_fence_sz=2",
        "f",
        &c,
    )
    .unwrap();
    assert_eq!(g.vgpu.unwrap().type_name, None);
    let e = parse("name='x'\ntype='hvm'\nvgt=1\nvgt_low_gm_sz=100", "f", &c).unwrap_err();
    assert!(e.to_string().contains("multiples of 32"), "{e}");
}

#[test]
fn other_rejections() {
    for (src, needle) in [
        ("type='hvm'", "name"),
        ("name='x'\nvgt=1", "PV guests"),
        ("name='x'\ntype='hvm'\nvgt=2", "not 0 or 1"),
        ("name='x'\ntype='hvm'\nvgt_low_gm_sz=64", "without vgt"),
        ("name='x'\ntype='kvm'", "allowed"),
        (
            "name='x'\ntype='hvm'\nvgt=1\nvgt_primary=3",
            "allowed -1, 0, 1",
        ),
        (
            "name='x'\ntype='hvm'\nvgt=1\nvgt_low_gm_sz=-64",
            "out of range",
        ),
        (
            "name='x'\ntype='hvm'\nvgt=1\nvgt_monitor_config_file='rel'",
            "absolute",
        ),
        ("name='x'\nmemory='lots'", "not a number"),
        ("name=['x']", "quoted string"),
    ] {
        let e = parse(src, "t.cfg", &cfg()).unwrap_err();
        assert!(e.to_string().contains(needle), "{src:?} -> {e}");
    }
}

#[test]
fn example_configs_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/examples");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "cfg") {
            let g = load(&p, &cfg()).unwrap();
            assert!(g.vgpu.is_some(), "{}", p.display());
            n += 1;
        }
    }
    assert!(n >= 2);
}

proptest! {
    #[test]
    fn never_panics_on_arbitrary_text(s in "\\PC*") {
        let _ = parse(&s, "fuzz", &cfg());
    }

    #[test]
    fn never_panics_on_config_like_text(s in "[a-z_ =+\\[\\],'\"#;\\\\0-9x\n-]{0,200}") {
        let _ = parse(&s, "fuzz", &cfg());
    }

    #[test]
    fn numbers_roundtrip(v in 0u64..=4096, hex in any::<bool>()) {
        let text = if hex { format!("0x{v:x}") } else { v.to_string() };
        let m = parse_settings(&format!("k = {text}")).unwrap();
        let Value::Num(t) = &m["k"].value else { panic!("not a number") };
        prop_assert_eq!(parse_int(t), i64::try_from(v).ok());
    }
}

#[test]
fn ggtt_backing_defaults_to_ram_for_hvm_and_trapped_for_pvh() {
    let hvm = parse("name='h'\ntype='hvm'\nvgt=1", "h.cfg", &cfg()).unwrap();
    assert_eq!(hvm.vgpu.unwrap().ggtt_backing, GgttBacking::Ram);
    let pvh = parse("name='p'\ntype='pvh'\nvgt=1", "p.cfg", &cfg()).unwrap();
    assert_eq!(pvh.vgpu.unwrap().ggtt_backing, GgttBacking::Trapped);
    let forced = parse(
        "name='h'\ntype='hvm'\nvgt=1\nvgt_ggtt_backing='trapped'",
        "h.cfg",
        &cfg(),
    )
    .unwrap();
    assert_eq!(forced.vgpu.unwrap().ggtt_backing, GgttBacking::Trapped);
    let forced = parse(
        "name='p'\ntype='pvh'\nvgt=1\nvgt_ggtt_backing='ram'",
        "p.cfg",
        &cfg(),
    )
    .unwrap();
    assert_eq!(forced.vgpu.unwrap().ggtt_backing, GgttBacking::Ram);
}

#[test]
fn bad_ggtt_backing_is_refused_with_its_key() {
    let e = parse(
        "name='h'\ntype='hvm'\nvgt=1\nvgt_ggtt_backing='rom'",
        "h.cfg",
        &cfg(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("vgt_ggtt_backing") && e.contains("rom"), "{e}");
    let e = parse(
        "name='h'\ntype='hvm'\nvgt_ggtt_backing='ram'",
        "h.cfg",
        &cfg(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("without vgt"), "{e}");
    assert_eq!(parse_ggtt_backing(" ram\n"), Some(GgttBacking::Ram));
    assert_eq!(parse_ggtt_backing("Ram"), None);
    for b in [GgttBacking::Ram, GgttBacking::Trapped] {
        assert_eq!(parse_ggtt_backing(ggtt_backing_name(b)), Some(b));
    }
}

#[test]
fn pvh_guests_ask_the_daemon_to_place_the_bars() {
    let cfg = DaemonConfig::default();
    let body = "vgt = 1\nvgt_low_gm_sz = 64\nvgt_high_gm_sz = 384\nvgt_fence_sz = 4\n";
    let pvh = parse(
        &format!("name = \"p\"\ntype = \"pvh\"\n{body}"),
        "p.cfg",
        &cfg,
    )
    .unwrap();
    let hvm = parse(
        &format!("name = \"h\"\ntype = \"hvm\"\n{body}"),
        "h.cfg",
        &cfg,
    )
    .unwrap();
    assert!(pvh.vgpu.unwrap().preset_bars);
    assert!(!hvm.vgpu.unwrap().preset_bars);
}

#[test]
fn unknown_vgt_key_names_it_and_the_nearest_known_key() {
    let e = parse(
        "name='x'\ntype='hvm'\nvgt=1\nvgt_low_gm_size=256\nvgt_fenc_sz=4\n",
        "t.cfg",
        &cfg(),
    )
    .unwrap_err()
    .to_string();
    // The first typo by line, one line, with the suggestion.
    assert_eq!(
        e,
        "t.cfg:4: vgt_low_gm_size: unknown vGPU key; did you mean vgt_low_gm_sz?"
    );
    // Also without vgt = 1 (the typo may be in vgt itself).
    let e = parse("name='x'\ntype='hvm'\nVGT=1\n", "t.cfg", &cfg()).unwrap_err();
    assert!(e.to_string().contains("did you mean vgt?"), "{e}");
    // Keys that are not vgt* stay accepted, as xl's own keys.
    parse(
        "name='x'\ntype='hvm'\nvgt=1\nvga='none'\nserial='pty'\nmy_own_key=3\ngvt=1\n",
        "t.cfg",
        &cfg(),
    )
    .unwrap();
}

#[test]
fn populate_on_demand_is_refused_for_vgpu_guests_only() {
    let e = parse(
        "name='x'\ntype='hvm'\nmemory=2048\nmaxmem=4096\nvgt=1\n",
        "pod.cfg",
        &cfg(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("pod.cfg:4: maxmem: 4096 > memory 2048:"),
        "{e}"
    );
    assert!(
        e.contains("populate-on-demand") && e.contains("set maxmem = 2048"),
        "{e}"
    );
    assert_eq!(e.lines().count(), 1);
    let e = parse(
        "name='x'\ntype='hvm'\nmemory=2048\nmaxmem=1024\nvgt=1",
        "f",
        &cfg(),
    );
    assert!(e.unwrap_err().to_string().contains("set maxmem = 2048"));
    for ok in [
        "name='x'\ntype='hvm'\nmemory=2048\nmaxmem=2048\nvgt=1",
        "name='x'\ntype='hvm'\nmaxmem=4096\nvgt=1",
        "name='x'\ntype='hvm'\nmemory=2048\nvgt=1",
        "name='x'\ntype='hvm'\nmemory=2048\nmaxmem=4096",
    ] {
        parse(ok, "f", &cfg()).unwrap();
    }
}

#[test]
fn all_digit_names_are_refused() {
    let e = parse("name='42'\ntype='hvm'", "n.cfg", &cfg()).unwrap_err();
    assert!(e.to_string().contains("domain id"), "{e}");
    assert_eq!(check_domain_name("vm42"), Ok(()));
    assert!(check_domain_name("").is_err());
    assert!(check_domain_name("a\nb").is_err());
    assert!(check_domain_name(&"a".repeat(65)).is_err());
}

#[test]
fn the_stock_xl_hook_is_recognised_and_its_arguments_checked() {
    let base = "name='h'\ntype='hvm'\nmemory=1024\nvgt=1\n";
    let hook = "device_model_override='/usr/libexec/xengt/qemu-dm-vgt'\n";
    let args = "device_model_args_hvm=['-xengt-config', '/etc/xen/h.cfg']\n";
    let g = parse(&format!("{base}{hook}{args}"), "h.cfg", &cfg()).unwrap();
    assert!(g.dm_hook);
    assert!(g.vgpu.is_some());
    // Another device model is not the hook.
    let other = "device_model_override='/usr/bin/qemu-system-x86_64'\n";
    assert!(
        !parse(&format!("{base}{other}"), "h.cfg", &cfg())
            .unwrap()
            .dm_hook
    );
    assert!(!parse(base, "h.cfg", &cfg()).unwrap().dm_hook);
    // The hook without its -xengt-config argument cannot find the vgt keys.
    let e = parse(&format!("{base}{hook}"), "h.cfg", &cfg())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("device_model_args_hvm") && e.contains("-xengt-config") && e.contains("h.cfg"),
        "{e}"
    );
    let e = parse(
        &format!("{base}{hook}device_model_args_hvm=['-xengt-config']\n"),
        "h.cfg",
        &cfg(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("-xengt-config"), "{e}");
    // The hook without vgt = 1, or on a PVH guest, is refused.
    let e = parse(
        &format!("name='h'\ntype='hvm'\n{hook}{args}"),
        "h.cfg",
        &cfg(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("no vgt = 1"), "{e}");
    let e = parse(
        &format!("name='h'\ntype='pvh'\nvgt=1\n{hook}{args}"),
        "h.cfg",
        &cfg(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("type = \"hvm\""), "{e}");
}

#[test]
fn the_example_hvm_config_uses_the_hook() {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../configs/examples/hvm-vgt.cfg"
    );
    let g = load(Path::new(p), &cfg()).unwrap();
    assert!(g.dm_hook);
    assert_eq!(g.vgpu.unwrap().type_name.as_deref(), Some("GVTg_V5_2"));
}
