//! Backtest benchmark (issue 11): a backtest of 3 policies over the 50,000-customer ×
//! 5-year history against a single `replay` of it, both run as the release binary on
//! the same machine in the same run, alternately (replay, backtest, replay, ...), so
//! that load from other processes falls on both alike. Prints per run and as medians
//! of `--runs` runs (default 3): wall time, CPU seconds (user + system of the child,
//! from `wait4`), peak RSS, and the ratio backtest / replay of the medians. The target
//! is a ratio below 1.5.
//!
//! ```text
//! cargo bench --features generator --bench backtest_scale -- [--runs N] [--input FILE]
//! ```
//!
//! The replay is the default one (`replay --fresh --as-of 2031-01-01`, default flags,
//! a fresh store); the backtest runs three policies — the default, `cadence_factor =
//! 1.25` and `2.0` — with the same `--as-of` and writes its report. The history is
//! `--input`, or generated once into `target/bench-data/c50000/` (seed 3, as
//! `replay_scale` does) and reused.

use std::path::{Path, PathBuf};
#[path = "common/measure.rs"]
mod measure;

use measure::{bin, measure, median, Run};

/// The 50,000-customer history, generated once.
fn history(dir: &Path) -> PathBuf {
    let out = dir.join("c50000");
    let events = out.join("events.jsonl");
    if !events.exists() {
        eprintln!(
            "generating 50000 customers × 5 years into {}",
            out.display()
        );
        let _ = std::fs::remove_dir_all(&out);
        measure(bin().args([
            "generate",
            "--log",
            "warn",
            "--customers",
            "50000",
            "--years",
            "5",
            "--seed",
            "3",
            "--out",
            out.to_str().expect("utf-8 path"),
        ]));
    }
    events
}

const AS_OF: &str = "2031-01-01";

fn replay(work: &Path, input: &Path) -> Run {
    let store = work.join("store");
    let _ = std::fs::remove_dir_all(&store);
    let r = measure(
        bin()
            .args(["replay", "--log", "warn", "--fresh", "--as-of", AS_OF])
            .arg("--input")
            .arg(input)
            .arg("--store")
            .arg(&store)
            .arg("--out")
            .arg(work.join("out.jsonl")),
    );
    let _ = std::fs::remove_dir_all(&store);
    r
}

fn backtest(work: &Path, input: &Path, policies: &[PathBuf]) -> Run {
    let report = work.join("report");
    let _ = std::fs::remove_dir_all(&report);
    let mut cmd = bin();
    cmd.args(["backtest", "--log", "warn", "--as-of", AS_OF])
        .arg("--input")
        .arg(input)
        .arg("--report")
        .arg(&report);
    for p in policies {
        cmd.arg("--policy").arg(p);
    }
    measure(&mut cmd)
}

struct Summary {
    wall: f64,
    cpu: f64,
    rss_mib: f64,
}

fn summarize(name: &str, runs: &[Run]) -> Summary {
    let s = Summary {
        wall: median(runs.iter().map(|r| r.wall).collect()),
        cpu: median(runs.iter().map(|r| r.cpu).collect()),
        rss_mib: median(runs.iter().map(|r| r.rss_kib as f64).collect()) / 1024.0,
    };
    let walls: Vec<String> = runs.iter().map(|r| format!("{:.1}", r.wall)).collect();
    let cpus: Vec<String> = runs.iter().map(|r| format!("{:.1}", r.cpu)).collect();
    println!(
        "{name:<22} {:>9.1} {:>9.1} {:>9.0}   (wall: {}; CPU: {})",
        s.wall,
        s.cpu,
        s.rss_mib,
        walls.join(", "),
        cpus.join(", ")
    );
    s
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let runs: usize = flag("--runs").map_or(3, |r| r.parse().expect("--runs N"));
    assert!(runs > 0, "--runs must be at least 1");
    let input = match flag("--input") {
        Some(p) => PathBuf::from(p),
        None => {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
            std::fs::create_dir_all(&dir).expect("bench data directory");
            history(&dir)
        }
    };
    let work = tempfile::tempdir().expect("a scratch directory");
    let policies: Vec<PathBuf> = [
        ("base", ""),
        ("eager", "[prevent]\ncadence_factor = 1.25\n"),
        ("patient", "[prevent]\ncadence_factor = 2.0\n"),
    ]
    .iter()
    .map(|(name, text)| {
        let p = work.path().join(format!("{name}.toml"));
        std::fs::write(&p, text).expect("policy file");
        p
    })
    .collect();
    println!(
        "input {}, {runs} runs each, alternating; as of {AS_OF}",
        input.display()
    );
    let mut replays = Vec::new();
    let mut backtests = Vec::new();
    for i in 0..runs {
        let r = replay(work.path(), &input);
        eprintln!(
            "run {}: replay   {:.1} s wall, {:.1} s CPU",
            i + 1,
            r.wall,
            r.cpu
        );
        replays.push(r);
        let b = backtest(work.path(), &input, &policies);
        eprintln!(
            "run {}: backtest {:.1} s wall, {:.1} s CPU",
            i + 1,
            b.wall,
            b.cpu
        );
        backtests.push(b);
    }
    println!(
        "{:<22} {:>9} {:>9} {:>9}",
        "median of runs", "wall s", "CPU s", "peak MiB"
    );
    let r = summarize("replay", &replays);
    let b = summarize("backtest (3 policies)", &backtests);
    println!(
        "backtest / replay: wall {:.2} (target < 1.5), CPU {:.2}",
        b.wall / r.wall,
        b.cpu / r.cpu
    );
}
