//! `cargo run --example criterion-table [DIR]`: the criterion results of
//! benches/review.rs as a Markdown table, the median per iteration of each
//! stage, from DIR (default target/criterion)/<group>/<stage>/new/estimates.json.

use std::path::PathBuf;

const STAGES: [&str; 6] = [
    "decode-kube",
    "decode",
    "review",
    "respond",
    "encode",
    "all",
];

/// The median of one stage in nanoseconds, if criterion measured it.
fn median_ns(path: &std::path::Path) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    let estimates: serde_json::Value = serde_json::from_str(&text).ok()?;
    estimates["median"]["point_estimate"].as_f64()
}

fn fmt(ns: f64) -> String {
    if ns >= 1000.0 {
        format!("{:.2} µs", ns / 1000.0)
    } else {
        format!("{ns:.0} ns")
    }
}

fn main() {
    let root = std::env::args_os().nth(1).map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/criterion"),
        PathBuf::from,
    );
    println!("| group | {} |", STAGES.join(" | "));
    println!("|---|{}", "---|".repeat(STAGES.len()));
    for endpoint in ["validate", "mutate"] {
        for size in ["typical", "large"] {
            let group = format!("{endpoint}_{size}");
            let cells: Vec<String> = STAGES
                .iter()
                .map(|stage| {
                    let path = root.join(&group).join(stage).join("new/estimates.json");
                    median_ns(&path).map_or_else(|| "-".to_string(), fmt)
                })
                .collect();
            println!("| {endpoint}/{size} | {} |", cells.join(" | "));
        }
    }
}
