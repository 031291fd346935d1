//! `churnwatch demo` and `churnwatch demo --kafka`: the orchestration of the two demos.
//! The file demo generates a small history, replays it and shows the summary and a few
//! status changes; the Kafka demo produces a history up to today to an in-process mock
//! cluster, runs the service on it until it has caught up with the live ticks, and reads
//! the status changes, dead letters and a few metrics back.
//!
//! May touch stdout, stderr (progress), a temporary directory (or the one the user
//! names) and the in-process mock cluster; everything else goes through the library.

use super::generate::run_generate;
use super::replay::{print_summary, run_replay};
use anyhow::{bail, Context, Result};
use churnwatch::core::policy::Policy;
use churnwatch::core::time::Ts;
use churnwatch::edge::kafka::config::Config as ServiceConfig;
use churnwatch::edge::replay::ReplayOptions;
use churnwatch::generate::GenConfig;
use std::io::BufRead;
use std::path::PathBuf;

/// Runs `churnwatch demo` (the file demo) with `customers`, in `dir` or a temporary
/// directory.
pub fn file(customers: u64, dir: Option<PathBuf>) -> Result<()> {
    let tmp;
    let tmp_used = dir.is_none();
    let dir = match dir {
        Some(d) => d,
        None => {
            tmp = tempfile::tempdir().context("cannot create a temporary directory")?;
            tmp.path().to_path_buf()
        }
    };
    let cfg = GenConfig {
        customers,
        dealers: 5,
        years: 5,
        seed: 7,
        ..GenConfig::default()
    };
    println!(
        "== generating {customers} customers x 5 years into {}",
        dir.display()
    );
    let g = run_generate(&cfg, &dir.join("history"))?;
    println!(
        "   {} events, {} dirty lines, {} latent drop-outs",
        g.events, g.dirty_lines, g.dropouts
    );
    let mut opts = ReplayOptions::new(
        g.files
            .iter()
            .filter(|f| f.extension().is_some_and(|e| e == "jsonl"))
            .cloned()
            .collect(),
        dir.join("store"),
        dir.join("status_changes.jsonl"),
    );
    opts.fresh = true;
    println!("== replaying through the churn engine");
    let s = run_replay(&opts)?;
    print_summary(&s, &opts);
    println!("== a few status changes");
    let f = std::fs::File::open(&opts.out)?;
    let mut shown = std::collections::BTreeSet::new();
    for line in std::io::BufReader::new(f).lines() {
        let line = line?;
        let v: serde_json::Value = serde_json::from_str(&line)?;
        let key = format!("{}{}", v["level"], v["trigger"]);
        if shown.insert(key) {
            println!("{line}");
        }
        if shown.len() >= 6 {
            break;
        }
    }
    if tmp_used {
        println!("== the files above are temporary; pass --dir DIR to keep them and then try");
        println!(
            "   churnwatch inspect --store DIR/store --customer <customer_id from the output>"
        );
    } else {
        println!(
            "== try: churnwatch inspect --store {} --customer <customer_id from the output>",
            opts.store.display()
        );
    }
    Ok(())
}

/// Runs `churnwatch demo --kafka` with at most 500 of `customers`, in `dir` or a
/// temporary directory.
pub fn kafka(customers: u64, dir: Option<PathBuf>) -> Result<()> {
    use churnwatch::edge::kafka::io::{backfill_jsonl, mock_cluster, read_topic};
    let tmp;
    let dir = match dir {
        Some(d) => d,
        None => {
            tmp = tempfile::tempdir().context("cannot create a temporary directory")?;
            tmp.path().to_path_buf()
        }
    };
    // History up to today, so that the live ticks (wall-clock time) continue it.
    let today = chrono::Utc::now().date_naive();
    let gen = GenConfig {
        customers: customers.min(500),
        dealers: 5,
        years: 3,
        seed: 7,
        start: Ts::from_date(today - chrono::Months::new(36)),
        ..GenConfig::default()
    };
    println!(
        "== generating {} customers x 3 years into {}",
        gen.customers,
        dir.display()
    );
    let g = run_generate(&gen, &dir.join("history"))?;
    let events = g
        .files
        .iter()
        .find(|f| f.extension().is_some_and(|e| e == "jsonl"))
        .context("the generator wrote no JSON-lines file")?
        .clone();
    let mut cfg = ServiceConfig::default();
    let partitions = 6;
    cfg.output.create_topics = false;
    cfg.state.dir = dir.join("service-state");
    cfg.admin.listen = "127.0.0.1:0".into();
    cfg.ticks.interval_ms = 1000;
    cfg.metrics.kpi_interval_ms = 1000;
    let cluster = mock_cluster(&cfg, partitions)?;
    cfg.kafka.bootstrap_servers = cluster.bootstrap_servers();
    println!(
        "== in-process Kafka mock cluster at {} ({partitions} partitions per topic)",
        cfg.kafka.bootstrap_servers
    );
    let b = backfill_jsonl(&cfg, &events, partitions)?;
    println!(
        "   produced {} lines as {} records (keyed by customer_id) to {}, {}, {}",
        b.lines,
        b.records,
        cfg.input.repair_orders.topic,
        cfg.input.visits.topic,
        cfg.input.contracts.topic
    );
    let client = {
        let mut c = rdkafka::ClientConfig::new();
        c.set("bootstrap.servers", &cfg.kafka.bootstrap_servers);
        c
    };
    let status_topic = cfg.output.status_topic.clone();
    let dead_topic = cfg.output.dead_letter_topic.clone();
    let running = churnwatch::edge::kafka::start(cfg, Policy::default())?;
    println!(
        "== churnwatch run: admin on http://{}/metrics",
        running.admin_addr
    );
    let started = std::time::Instant::now();
    let shared = running.shared.clone();
    // Everything produced so far is read, handed on, committed and delivered once the
    // loop has found itself caught up (live ticks keep arriving after that).
    // Then one more round after the tick producer has written a tick into every
    // partition, so that stream time reaches the wall clock.
    let wait_caught_up = |since: u64| -> Result<()> {
        while shared.caught_up_seen() == since {
            std::thread::sleep(std::time::Duration::from_millis(50));
            if started.elapsed() > std::time::Duration::from_secs(300) {
                bail!(
                    "the service processed only {} of {} records in 300 s",
                    shared.metrics.processed_events.get(),
                    b.records
                );
            }
        }
        Ok(())
    };
    wait_caught_up(0)?;
    while shared.metrics.ticks_produced.get() < 3 * partitions as u64 {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    wait_caught_up(shared.caught_up_seen())?;
    let secs = started.elapsed().as_secs_f64();
    let body = shared.metrics.render();
    let summary = running.stop()?;
    let published = shared.published();
    println!(
        "   processed {} records in {secs:.1} s ({} of them live ticks at wall-clock time); drained and stopped",
        summary.processed,
        shared.metrics.ticks_consumed.get() - b.ticks * 3 * partitions as u64
    );
    let wait = std::time::Duration::from_secs(60);
    let changes = read_topic(&client, &status_topic, wait, |m| {
        m.len() as u64 >= published.changes
    })?;
    let dead = read_topic(&client, &dead_topic, wait, |m| {
        m.len() as u64 >= published.dead_letters
    })?;
    let mut by_level = std::collections::BTreeMap::new();
    let mut shown = std::collections::BTreeSet::new();
    let mut samples = Vec::new();
    for m in &changes {
        use rdkafka::Message;
        let v: serde_json::Value = serde_json::from_slice(m.payload().unwrap_or_default())?;
        let level = v["level"].as_str().unwrap_or("?").to_string();
        *by_level.entry(level.clone()).or_insert(0u64) += 1;
        if shown.insert(format!("{level}{}", v["trigger"])) && samples.len() < 4 {
            samples.push(v.to_string());
        }
    }
    println!(
        "== topic {status_topic}: {} status changes by new level {by_level:?}",
        changes.len()
    );
    for s in samples {
        println!("   {s}");
    }
    println!("== topic {dead_topic}: {} dead letters", dead.len());
    println!("== a few metrics from /metrics");
    for line in body.lines().filter(|l| {
        l.starts_with("churnwatch_customers{")
            || l.starts_with("churnwatch_processed_events_total")
            || l.starts_with("churnwatch_end_to_end_seconds_count")
    }) {
        println!("   {line}");
    }
    drop(cluster);
    Ok(())
}
