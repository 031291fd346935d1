//! `churnwatch replay` and `churnwatch inspect`: the file edge from the command line.
//! Maps the flags to [`ReplayOptions`], runs the replay with progress, prints its summary
//! (and writes it as JSON on request); looks one customer up in a replay's store.
//!
//! May touch stdout, stderr (progress), the summary file the user names and, through the
//! library, the inputs, the store and the outputs.

use super::progress::Progress;
use super::{load_policy_and_model, parse_instant, InspectArgs, ReplayArgs};
use anyhow::{bail, Context, Result};
use churnwatch::core::time::Ts;
use churnwatch::edge::replay::{self, ReplayOptions, ReplayProgress, ReplaySummary};

/// Runs `churnwatch replay`.
pub fn run(a: ReplayArgs) -> Result<()> {
    let mut opts = ReplayOptions::new(a.inputs, a.store, a.out);
    if let Some(d) = a.dead_letter {
        opts.dead_letter = d;
    }
    opts.format = a.format;
    opts.fresh = a.fresh;
    if a.commit_every == 0 {
        bail!("--commit-every must be at least 1");
    }
    opts.commit_every = a.commit_every;
    if a.memory_mib < 64 {
        bail!("--memory-mib must be at least 64 (the store engine needs a few MiB of cache and write buffer)");
    }
    opts.memory_budget(a.memory_mib << 20);
    if let Some(c) = a.cache_capacity {
        opts.cache_capacity = c;
    }
    opts.store_options.engine = a.store_engine;
    match a.threads {
        Some(0) => bail!("--threads must be at least 1"),
        Some(n) => opts.threads = n,
        None => {}
    }
    match a.shards {
        Some(0) => bail!("--shards must be at least 1"),
        Some(n) => opts.shards = n,
        None => {}
    }
    opts.policy = load_policy_and_model(a.policy.as_deref(), a.model.as_deref())?;
    opts.until = a
        .until
        .as_deref()
        .map(|u| parse_instant(u, "--until"))
        .transpose()?;
    opts.as_of = a
        .as_of
        .as_deref()
        .map(|u| parse_instant(u, "--as-of"))
        .transpose()?;
    let s = run_replay(&opts)?;
    print_summary(&s, &opts);
    if let (Some(until), Some(end)) = (opts.until, s.stream_time.as_deref()) {
        if Ts::parse_rfc3339(end).is_ok_and(|end| end > until) {
            eprintln!(
                "note: --until {} is before the newest record ({end}); stream time was already past it, so it changed nothing",
                until.to_rfc3339()
            );
        }
    }
    if let Some(path) = a.summary_json {
        std::fs::write(&path, serde_json::to_vec_pretty(&s)?)
            .with_context(|| format!("cannot write summary to {}", path.display()))?;
    }
    Ok(())
}

/// Runs `churnwatch inspect`.
pub fn inspect(a: InspectArgs) -> Result<()> {
    let InspectArgs {
        store,
        customer,
        policy,
        model,
    } = a;
    // Without --policy or --model the store's own policy applies.
    let policy = match (&policy, &model) {
        (None, None) => None,
        _ => Some(load_policy_and_model(policy.as_deref(), model.as_deref())?),
    };
    match replay::inspect(&store, &customer, policy.as_ref())? {
        Some(v) => {
            if let Some(note) = v.note {
                eprintln!("note: {note}");
            }
            println!("{}", serde_json::to_string_pretty(&v.json)?);
            Ok(())
        }
        None => bail!(
            "customer `{customer}` is not in the store at {}",
            store.display()
        ),
    }
}

/// Replays `opts` with progress on stderr.
pub fn run_replay(opts: &ReplayOptions) -> Result<ReplaySummary> {
    let mut p = Progress::new("replaying", 1);
    let s = replay::replay(opts, &mut |r: ReplayProgress| {
        p.set(r.bytes_done, r.bytes_total, "of the input")
    })?;
    p.finish();
    Ok(s)
}

/// Prints a replay's summary on stdout.
pub fn print_summary(s: &ReplaySummary, opts: &ReplayOptions) {
    if s.already_complete {
        println!(
            "this replay was already complete in {}; pass --fresh to run it again",
            opts.store.display()
        );
    } else if s.resumed {
        println!(
            "resumed an interrupted replay from {}",
            opts.store.display()
        );
    }
    println!(
        "records      {:>12}  ({} events, {} ticks)",
        s.records, s.events, s.ticks
    );
    println!(
        "bad          {:>12}  rejected to {}",
        s.bad,
        opts.dead_letter.display()
    );
    println!(
        "field issues {:>12}  (bad VIN/phone dropped, event kept)",
        s.field_issues
    );
    println!("duplicates   {:>12}", s.duplicates);
    println!(
        "late         {:>12}  ({} corrections)",
        s.late, s.corrections
    );
    println!("customers    {:>12}", s.customers);
    println!("timers fired {:>12}", s.timers_fired);
    println!(
        "changes      {:>12}  written to {}",
        s.status_changes,
        opts.out.display()
    );
    for (k, v) in &s.changes_by_level {
        println!("  to {k:<10}{v:>12}");
    }
    println!(
        "customers now by level:     {}",
        fmt_map(&s.customers_by_level)
    );
    println!(
        "customers now by lifecycle: {}",
        fmt_map(&s.customers_by_lifecycle)
    );
    println!(
        "customers now by tier:      {}",
        fmt_map(&s.customers_by_tier)
    );
    println!("stream time  {}", s.stream_time.as_deref().unwrap_or("-"));
    println!(
        "elapsed      {:>12.2} s  ({:.0} events/s)",
        s.elapsed_secs, s.events_per_sec
    );
    println!("store        {:>12} bytes", s.store_bytes);
}

fn fmt_map(m: &std::collections::BTreeMap<String, u64>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}
