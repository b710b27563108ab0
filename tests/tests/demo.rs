//! `xengtd demo --guests 4 --seconds 5` through the library entry point: exit status,
//! summary and one PNG per guest showing that guest's own pattern.

use std::collections::HashMap;

use xengt::demo::{run, DemoArgs, COLOURS};

/// The most frequent RGB colour of a PNG.
fn dominant(path: &std::path::Path) -> [u8; 3] {
    let dec = png::Decoder::new(std::fs::File::open(path).expect("PNG exists"));
    let mut reader = dec.read_info().expect("PNG header");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("PNG frame");
    assert_eq!(info.color_type, png::ColorType::Rgba);
    let mut counts: HashMap<[u8; 3], u64> = HashMap::new();
    for px in buf[..info.buffer_size()].chunks_exact(4) {
        *counts.entry([px[0], px[1], px[2]]).or_default() += 1;
    }
    counts
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .expect("pixels")
        .0
}

#[test]
fn four_guests_draw_their_own_patterns_and_shares_follow_weights() {
    let out = std::env::temp_dir().join(format!("xengt-demo-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let report = run(&DemoArgs {
        guests: 4,
        seconds: 5,
        out: out.clone(),
    })
    .unwrap();
    assert!(report.passed, "{report:#?}");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    let guests = summary["guests"].as_array().unwrap();
    assert_eq!(guests.len(), 4);
    let mut seen = Vec::new();
    for (i, g) in guests.iter().enumerate() {
        assert!(g["frames"].as_u64().unwrap() > 0);
        assert!(g["ioreqs"].as_u64().unwrap() > 0);
        let share = g["vgpu"]["engine_share"].as_f64().unwrap();
        let want = g["vgpu"]["expected_share"].as_f64().unwrap();
        assert!(
            (share - want).abs() <= 0.1 * want,
            "guest {i}: {share} vs {want}"
        );
        let png = out.join(g["png"].as_str().unwrap());
        let c = dominant(&png);
        let want = COLOURS[i].to_be_bytes();
        assert_eq!(
            c,
            [want[1], want[2], want[3]],
            "guest {i} shows its own colour"
        );
        seen.push(c);
    }
    seen.dedup();
    assert_eq!(seen.len(), 4, "distinct dominant colours");
    assert_eq!(guests[0]["vgpu"]["rejected"]["RegisterNotAllowed"], 1);
    let _ = std::fs::remove_dir_all(&out);
}

/// Every guest count the help allows sets up and draws: 5 and 6 guests once failed with
/// `low GM exhausted` because the demo asked for more aperture than the host leaves.
#[test]
fn every_allowed_guest_count_fits_the_host() {
    for guests in [5, COLOURS.len()] {
        let out =
            std::env::temp_dir().join(format!("xengt-demo-test-{}-{guests}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let report = run(&DemoArgs {
            guests,
            seconds: 1,
            out: out.clone(),
        })
        .unwrap_or_else(|e| panic!("--guests {guests}: {e}"));
        assert_eq!(report.guests.len(), guests);
        assert!(report.passed, "--guests {guests}: {report:#?}");
        let types: Vec<_> = report
            .guests
            .iter()
            .map(|g| g.vgpu.type_name.clone())
            .collect();
        assert!(
            types.iter().any(|t| t == "GVTg_V5_4") || guests == COLOURS.len(),
            "mixed weights where they fit: {types:?}"
        );
        let _ = std::fs::remove_dir_all(&out);
    }
}
