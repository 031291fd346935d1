//! Replay scaling benchmark: `churnwatch replay` of generated histories of 50,000 and
//! 200,000 customers × 5 years (and 1,000,000 with `--full`), run as the release
//! binary, each a fresh store at default flags. Prints per size the wall time, events/s,
//! µs per record and peak RSS (the child's maximum resident set, from `wait4`), the
//! median of `--runs` runs (default 3), and the ratio of µs/record against the
//! smallest size (linear time means ≈ 1.0). With `--baseline` it also replays the
//! smallest size on the sled engine in the same run, for the ratio fjall : sled.
//!
//! ```text
//! cargo bench --features generator --bench replay_scale -- [--full] [--runs N] [--baseline]
//! ```
//!
//! Histories are generated once into `target/bench-data/` (seed 3, as in the issue that
//! set the targets) and reused.

use std::path::{Path, PathBuf};
#[path = "common/measure.rs"]
mod measure;

use measure::{bin, measure, median, Run};

/// The history of `n` customers, generated once.
fn history(dir: &Path, n: u64) -> (PathBuf, u64) {
    let out = dir.join(format!("c{n}"));
    let events = out.join("events.jsonl");
    if !events.exists() {
        eprintln!("generating {n} customers × 5 years into {}", out.display());
        let _ = std::fs::remove_dir_all(&out);
        measure(bin().args([
            "generate",
            "--log",
            "warn",
            "--customers",
            &n.to_string(),
            "--years",
            "5",
            "--seed",
            "3",
            "--out",
            out.to_str().expect("utf-8 path"),
        ]));
    }
    let text = std::fs::File::open(&events).expect("history");
    use std::io::BufRead;
    let lines = std::io::BufReader::with_capacity(1 << 20, text)
        .split(b'\n')
        .count() as u64;
    (events, lines)
}

fn replay(dir: &Path, input: &Path, engine: &str) -> Run {
    let store = dir.join("store");
    let _ = std::fs::remove_dir_all(&store);
    let r = measure(
        bin()
            .args([
                "replay",
                "--log",
                "warn",
                "--fresh",
                "--as-of",
                "2030-01-01",
            ])
            .args(["--store-engine", engine, "--input"])
            .arg(input)
            .arg("--store")
            .arg(&store)
            .arg("--out")
            .arg(dir.join("out.jsonl")),
    );
    let _ = std::fs::remove_dir_all(&store);
    r
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let full = args.iter().any(|a| a == "--full");
    let baseline = args.iter().any(|a| a == "--baseline");
    let runs: usize = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .map_or(3, |r| r.parse().expect("--runs N"));
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    std::fs::create_dir_all(&dir).expect("bench data directory");
    let mut sizes = vec![50_000u64, 200_000];
    if full {
        sizes.push(1_000_000);
    }
    println!(
        "{:>10} {:>11} {:>6} {:>9} {:>11} {:>10} {:>10} {:>8}",
        "customers", "records", "engine", "wall s", "events/s", "µs/record", "peak MiB", "µs ratio"
    );
    let mut first_us = None;
    let mut rows = Vec::new();
    for &n in &sizes {
        let (input, records) = history(&dir, n);
        let mut engines = vec!["fjall"];
        if baseline && n == sizes[0] {
            engines.push("sled");
        }
        for engine in engines {
            let results: Vec<Run> = (0..runs).map(|_| replay(&dir, &input, engine)).collect();
            let wall = median(results.iter().map(|r| r.wall).collect());
            let rss = median(results.iter().map(|r| r.rss_kib as f64).collect()) / 1024.0;
            let us = wall * 1e6 / records as f64;
            if engine == "fjall" && first_us.is_none() {
                first_us = Some(us);
            }
            let ratio = us / first_us.unwrap_or(us);
            let walls: Vec<String> = results.iter().map(|r| format!("{:.1}", r.wall)).collect();
            let cpu = median(results.iter().map(|r| r.cpu).collect());
            println!(
                "{n:>10} {records:>11} {engine:>6} {wall:>9.1} {:>11.0} {us:>10.2} {rss:>10.0} {ratio:>8.2}   (runs: {}; CPU median {cpu:.1} s)",
                records as f64 / wall,
                walls.join(", ")
            );
            rows.push((n, engine, us, rss));
        }
    }
    if let (Some(s), Some(f)) = (
        rows.iter().find(|r| r.1 == "sled"),
        rows.iter().find(|r| r.1 == "fjall" && r.0 == sizes[0]),
    ) {
        println!(
            "fjall : sled at {} customers — time {:.2}, peak RSS {:.2}",
            f.0,
            f.2 / s.2,
            f.3 / s.3
        );
    }
}
