//! Integration tests of the file pipeline against a real store on disk (fjall, and sled
//! where named) and the
//! real `churnwatch` binary: determinism, crash/resume, dead letters, inspect, Avro.

use churnwatch::codec::Format;
use churnwatch::edge::replay::{replay, ReplayOptions};
use churnwatch::generate::{generate, GenConfig};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_churnwatch"))
}

fn history(dir: &Path, customers: u64, seed: u64) -> PathBuf {
    let cfg = GenConfig {
        customers,
        dealers: 4,
        years: 4,
        seed,
        ..GenConfig::default()
    };
    let s = generate(&cfg, &dir.join("history"), &mut |_| {}).unwrap();
    s.files
        .into_iter()
        .find(|f| f.extension().is_some_and(|e| e == "jsonl"))
        .unwrap()
}

fn opts(input: &Path, dir: &Path, name: &str) -> ReplayOptions {
    let mut o = ReplayOptions::new(
        vec![input.to_path_buf()],
        dir.join(format!("{name}.store")),
        dir.join(format!("{name}.jsonl")),
    );
    o.fresh = true;
    o
}

#[test]
fn replaying_twice_gives_byte_identical_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = history(dir.path(), 300, 1);
    let a = replay(&opts(&input, dir.path(), "a"), &mut |_| {}).unwrap();
    let mut ob = opts(&input, dir.path(), "b");
    ob.commit_every = 777; // commit points must not change the output...
    ob.cache_capacity = 5; // ...nor evicting customers to sled and loading them back
    let b = replay(&ob, &mut |_| {}).unwrap();
    assert!(a.status_changes > 50, "history too quiet: {a:?}");
    assert_eq!(a.status_changes, b.status_changes);
    let (x, y) = (
        std::fs::read(dir.path().join("a.jsonl")).unwrap(),
        std::fs::read(dir.path().join("b.jsonl")).unwrap(),
    );
    assert!(x == y, "outputs differ");
    assert_eq!(
        std::fs::read(dir.path().join("a.jsonl.dead.jsonl")).unwrap(),
        std::fs::read(dir.path().join("b.jsonl.dead.jsonl")).unwrap()
    );
    assert!(
        a.bad > 0 && a.duplicates > 0,
        "generator dirt should show: {a:?}"
    );
    assert!(a.changes_by_level["win_back"] > 0 && a.changes_by_level["retain"] > 0);
}

#[test]
fn outputs_are_byte_identical_for_any_thread_count_commit_interval_cache_size_and_store_engine() {
    use churnwatch::store::StoreEngine;
    let dir = tempfile::tempdir().unwrap();
    let input = history(dir.path(), 400, 5);
    let mut base = opts(&input, dir.path(), "base");
    base.threads = 1;
    base.shards = 1;
    let reference = replay(&base, &mut |_| {}).unwrap();
    assert!(reference.status_changes > 50, "{reference:?}");
    let read = |name: &str| {
        (
            std::fs::read(dir.path().join(format!("{name}.jsonl"))).unwrap(),
            std::fs::read(dir.path().join(format!("{name}.jsonl.dead.jsonl"))).unwrap(),
        )
    };
    let want = read("base");
    // (threads, commit interval, store engine, customers kept in memory, most changed
    // customers per commit): a small cache makes customers leave memory between
    // commits and come back from the store; a small commit bound makes commits fall
    // between the record intervals, wherever enough customers changed.
    let max = usize::MAX;
    for (threads, commit_every, engine, cache, commit_customers) in [
        (2, 200_000, StoreEngine::Fjall, 100_000, max),
        (3, 101, StoreEngine::Fjall, 100_000, max),
        (8, 1, StoreEngine::Fjall, 100_000, max),
        (2, 997, StoreEngine::Sled, 100_000, max),
        (2, 5_000, StoreEngine::Fjall, 16, max),
        (1, 200_000, StoreEngine::Fjall, 16, max),
        (2, 200_000, StoreEngine::Fjall, 100_000, 7),
        (2, 5_000, StoreEngine::Sled, 16, 50),
    ] {
        let name = format!("t{threads}-c{commit_every}-{engine}-m{cache}-d{commit_customers}");
        let mut o = opts(&input, dir.path(), &name);
        o.threads = threads;
        o.shards = threads;
        o.commit_every = commit_every;
        o.cache_capacity = cache;
        o.commit_customers = commit_customers;
        o.store_options.engine = Some(engine);
        let mut commits = 0u64;
        let s = replay(&o, &mut |_| commits += 1).unwrap();
        assert_eq!(s.status_changes, reference.status_changes, "{name}");
        assert!(
            read(&name) == want,
            "{name}: outputs differ from one thread's"
        );
        if commit_customers == 7 {
            // Each commit carries at most 7 changed customers (400 customers, many
            // visits each): far more commits than the one the record interval makes.
            assert!(commits > 100, "{name}: only {commits} commits");
        }
    }
}

#[test]
fn a_store_keeps_its_engine_and_naming_another_is_refused() {
    use churnwatch::store::StoreEngine;
    let dir = tempfile::tempdir().unwrap();
    let input = history(dir.path(), 30, 6);
    let mut o = opts(&input, dir.path(), "s");
    o.store_options.engine = Some(StoreEngine::Sled);
    replay(&o, &mut |_| {}).unwrap();
    assert_eq!(StoreEngine::found_in(&o.store), Some(StoreEngine::Sled));
    let mut again = o.clone();
    again.fresh = false;
    again.store_options.engine = Some(StoreEngine::Fjall);
    let e = replay(&again, &mut |_| {}).unwrap_err().to_string();
    assert!(
        e.contains("is a sled store") && e.contains("--fresh"),
        "{e}"
    );
    // Without the flag it resumes on the engine it has; --fresh rebuilds with fjall.
    again.store_options.engine = None;
    assert!(replay(&again, &mut |_| {}).unwrap().already_complete);
    again.store_options.engine = Some(StoreEngine::Fjall);
    again.fresh = true;
    replay(&again, &mut |_| {}).unwrap();
    assert_eq!(StoreEngine::found_in(&o.store), Some(StoreEngine::Fjall));
}

#[test]
fn a_finished_replay_is_not_run_twice_and_other_inputs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = history(dir.path(), 50, 2);
    let o = opts(&input, dir.path(), "a");
    let first = replay(&o, &mut |_| {}).unwrap();
    let mut again = o.clone();
    again.fresh = false;
    let second = replay(&again, &mut |_| {}).unwrap();
    assert!(second.already_complete);
    assert_eq!(second.status_changes, first.status_changes);
    let mut precious = again.clone();
    precious.store = dir.path().join("precious");
    std::fs::create_dir_all(&precious.store).unwrap();
    std::fs::write(precious.store.join("thesis.txt"), "do not delete").unwrap();
    precious.fresh = true;
    let e = replay(&precious, &mut |_| {}).unwrap_err().to_string();
    assert!(e.contains("not a churnwatch state store"), "{e}");
    assert!(precious.store.join("thesis.txt").exists());
    let mut other = again.clone();
    other.inputs.push(input.clone());
    let e = replay(&other, &mut |_| {}).unwrap_err().to_string();
    assert!(e.contains("--fresh"), "{e}");
}

#[test]
fn every_malformed_kind_goes_to_the_dead_letter_file_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let good = r#"{"type":"visit","event_id":"ok","event_time":"2024-01-01T10:00:00Z","dealer_id":"D","customer_id":"C","visit_type":"service"}"#;
    let lines = [
        ("malformed", r#"{"type":"visit","event_id":"#.to_string()),
        ("malformed", "[1,2,3]".to_string()),
        ("malformed", "\u{0}\u{1}garbage".to_string()),
        ("missing_field", good.replace(r#""customer_id":"C","#, "")),
        ("missing_field", good.replace(r#""event_id":"ok","#, "")),
        ("invalid_field", good.replace("2024-01-01T10:00:00Z", "01/01/2024")),
        ("invalid_field", good.replace(r#""visit_type":"service""#, r#""visit_type":"drive_by""#)),
        ("invalid_field", good.replace(r#""customer_id":"C""#, r#""customer_id":42"#)),
        ("unknown_type", good.replace(r#""type":"visit""#, r#""type":"sale""#)),
        ("invalid_field", r#"{"type":"repair_order","event_id":"r","event_time":"2024-01-01T10:00:00Z","dealer_id":"D","customer_id":"C","ro_number":"1","ro_type":"maintenance","total_amount":-3}"#.to_string()),
        ("invalid_field", r#"{"type":"repair_order","event_id":"r","event_time":"2024-01-01T10:00:00Z","dealer_id":"D","customer_id":"C","ro_number":"1","ro_type":"oil","total_amount":3}"#.to_string()),
        ("missing_field", r#"{"type":"contract","event_id":"k","event_time":"2024-01-01T10:00:00Z","dealer_id":"D","customer_id":"C","contract_id":"K","contract_type":"insurance","action":"signed"}"#.to_string()),
    ];
    let mut text = String::new();
    for (_, l) in &lines {
        text.push_str(l);
        text.push('\n');
    }
    text.push_str(good);
    text.push('\n');
    // A bad VIN and a bad phone: the event is kept, the field is dropped and noted.
    text.push_str(r#"{"type":"repair_order","event_id":"r2","event_time":"2024-01-02T10:00:00Z","dealer_id":"D","customer_id":"C","ro_number":"2","ro_type":"maintenance","total_amount":3,"vin":"LSVAA4182E21234","phone":"12-34"}"#);
    text.push('\n');
    let input = dir.path().join("dirty.jsonl");
    std::fs::write(&input, text).unwrap();
    let s = replay(&opts(&input, dir.path(), "d"), &mut |_| {}).unwrap();
    assert_eq!(s.bad, lines.len() as u64);
    assert_eq!(s.events, 2);
    assert_eq!(s.field_issues, 2);
    let dead: Vec<serde_json::Value> =
        std::fs::read_to_string(dir.path().join("d.jsonl.dead.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    assert_eq!(dead.len(), lines.len() + 2);
    for (i, (code, _)) in lines.iter().enumerate() {
        assert_eq!(dead[i]["code"], *code, "line {}: {}", i + 1, dead[i]);
        assert_eq!(dead[i]["outcome"], "rejected");
        assert_eq!(dead[i]["record"], (i + 1) as u64);
        assert!(dead[i]["reason"].as_str().unwrap().len() > 10);
    }
    assert_eq!(dead[3]["field"], "customer_id");
    let dropped: Vec<_> = dead[lines.len()..]
        .iter()
        .map(|d| d["field"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(dropped, vec!["phone", "vin"]);
}

/// A small deterministic generator for kill points (the same points on every machine).
struct Lcg(u64);

impl Lcg {
    /// The next value in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n.max(1)
    }
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map_or(0, |m| m.len())
}

/// Starts `cmd` and, once `watch` has grown to `threshold` bytes, waits `delay` and
/// kills it with SIGKILL. Returns whether it was killed (false: it finished first).
fn kill_when_grown(cmd: &mut Command, watch: &Path, threshold: u64, delay: Duration) -> bool {
    let mut child = cmd.spawn().unwrap();
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "replay failed: {status}");
            return false;
        }
        if file_len(watch) >= threshold {
            let until = Instant::now() + delay;
            while Instant::now() < until {
                std::hint::spin_loop();
            }
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "replay failed: {status}");
                return false;
            }
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            return true;
        }
        if started.elapsed() > Duration::from_secs(300) {
            child.kill().unwrap();
            panic!("the replay hangs: {cmd:?}");
        }
        std::thread::sleep(Duration::from_micros(100));
    }
}

/// Kills `churnwatch replay` with SIGKILL at points chosen from its progress, resumes
/// each time, and checks the final outputs and dead letters are byte-identical to an
/// uninterrupted run.
///
/// The status-change file grows only when the replay commits, so it shows progress:
/// each kill waits until the file has grown past a random threshold above its length
/// when the run started (a resumed run first cuts it back to the committed length, so
/// only new progress counts), then a random short delay, so kills land at varying
/// places in the commit cycle (between writing the outputs and committing, inside the
/// commit, between commits). Kill points follow progress, not the clock, so the test
/// interrupts the replay as often whatever the build's speed; a run that still ends
/// before its kill starts a new round from scratch.
#[test]
fn sigkill_at_random_points_then_resume_gives_identical_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = history(dir.path(), 1500, 3);
    let out = dir.path().join("killed.jsonl");
    let dead = dir.path().join("killed.jsonl.dead.jsonl");
    // Each start after a kill takes another thread and shard count (1 to 3): the
    // store holds customers, not shards, so a resumed replay may change it.
    let run = |name: &str, fresh: bool, threads: u32| {
        let mut c = bin();
        c.args(["replay", "--input"])
            .arg(&input)
            .arg("--store")
            .arg(dir.path().join(format!("{name}.store")))
            .arg("--out")
            .arg(dir.path().join(format!("{name}.jsonl")))
            .args(["--commit-every", "400", "--log", "warn"])
            .args(["--threads", &threads.to_string()])
            .args(["--shards", &threads.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if fresh {
            c.arg("--fresh");
        }
        c
    };
    assert!(run("whole", true, 2).status().unwrap().success());
    let whole = std::fs::read(dir.path().join("whole.jsonl")).unwrap();
    let whole_dead = std::fs::read(dir.path().join("whole.jsonl.dead.jsonl")).unwrap();
    assert!(!whole.is_empty() && !whole_dead.is_empty());
    let end = whole.len() as u64;

    const KILLS: u32 = 6;
    let mut rng = Lcg(0x5eed);
    let mut kills = 0;
    let mut rounds = 0;
    while kills < KILLS && rounds < 5 {
        rounds += 1;
        let _ = std::fs::remove_file(&out);
        let _ = std::fs::remove_file(&dead);
        let mut fresh = true;
        while kills < KILLS {
            let before = file_len(&out);
            // Somewhere in the first 60% of what is left.
            let threshold = before + 1 + rng.below(end.saturating_sub(before) * 6 / 10);
            let delay = Duration::from_micros([0, 0, 50, 300, 1_000, 3_000][rng.below(6) as usize]);
            let killed = kill_when_grown(
                &mut run("killed", fresh, 1 + kills % 3),
                &out,
                threshold,
                delay,
            );
            fresh = false;
            if !killed {
                break;
            }
            kills += 1;
        }
        assert!(run("killed", false, 3).status().unwrap().success());
        let b = std::fs::read(&out).unwrap();
        assert!(
            whole == b,
            "outputs differ after {kills} kills: {} vs {} bytes",
            whole.len(),
            b.len()
        );
        assert!(
            whole_dead == std::fs::read(&dead).unwrap(),
            "dead letters differ after {kills} kills"
        );
    }
    assert!(
        kills >= KILLS,
        "only {kills} kills landed in {rounds} rounds: every run ended before its kill point"
    );
}

#[test]
fn avro_output_is_a_readable_container_and_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let input = history(dir.path(), 200, 4);
    let mut o = opts(&input, dir.path(), "j");
    let json = replay(&o, &mut |_| {}).unwrap();
    o = opts(&input, dir.path(), "v");
    o.out = dir.path().join("v.avro");
    o.format = Format::Avro;
    o.commit_every = 1000;
    replay(&o, &mut |_| {}).unwrap();
    let bytes = std::fs::read(&o.out).unwrap();
    let reader = apache_avro::Reader::new(&bytes[..]).unwrap();
    let mut n = 0u64;
    for record in reader {
        record.unwrap();
        n += 1;
    }
    assert_eq!(n, json.status_changes);
    // The same changes as the JSON output, record for record.
    let from_avro = churnwatch::codec::avro::read_status_changes(&bytes[..]).unwrap();
    let from_json: Vec<churnwatch::core::status::StatusChange> =
        std::fs::read_to_string(dir.path().join("j.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    assert_eq!(from_avro, from_json);
    let first = std::fs::read(&o.out).unwrap();
    replay(&o, &mut |_| {}).unwrap();
    assert_eq!(first, std::fs::read(&o.out).unwrap());
}

#[test]
fn a_policy_record_reads_back_as_the_same_policy_and_names_what_differs() {
    use churnwatch::core::policy::Policy;
    use churnwatch::edge::replay::{policy_differences, policy_record};
    let mut p = Policy::default();
    p.lifecycle.quasi_churned_months = 3;
    let r = policy_record(&p);
    assert_eq!(serde_json::from_str::<Policy>(&r).unwrap(), p);
    let d = policy_differences(&r, &policy_record(&Policy::default()));
    assert_eq!(d, "lifecycle.quasi_churned_months: 3 → 6");
}

/// A replay store remembers its policy and its output files: replaying it with another
/// policy, or claiming other output files for it, is refused with what differs; inspect
/// uses the store's policy unless given one, and says when the one given differs.
#[test]
fn a_store_is_never_resumed_or_reported_with_another_policy_or_other_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let input = history(dir.path(), 100, 5);
    let store = dir.path().join("s");
    let strict = dir.path().join("strict.toml");
    std::fs::write(&strict, "[lifecycle]\nquasi_churned_months = 3\n").unwrap();
    let replay = |out: &str, policy: Option<&Path>| {
        let mut c = bin();
        c.args(["replay", "--log", "warn", "--input"])
            .arg(&input)
            .arg("--store")
            .arg(&store)
            .arg("--out")
            .arg(dir.path().join(out));
        if let Some(p) = policy {
            c.arg("--policy").arg(p);
        }
        c.output().unwrap()
    };
    let o = replay("o.jsonl", Some(&strict));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The default policy on the same store: refused, naming the setting.
    let o = replay("o.jsonl", None);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("another policy")
            && err.contains("lifecycle.quasi_churned_months: 3 → 6")
            && err.contains("--fresh"),
        "{err}"
    );
    // Another --out on the finished store: refused, and nothing claims the new file.
    let o = replay("other.jsonl", Some(&strict));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("o.jsonl") && err.contains("other.jsonl"),
        "{err}"
    );
    assert!(!dir.path().join("other.jsonl").exists());
    // The same policy and outputs: the finished replay is reported again.
    let o = replay("o.jsonl", Some(&strict));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // Inspect: without a policy, the store's (a customer gone quiet for 3 months is
    // quasi-churned under it, active under the default); with the default, a note.
    let first = std::fs::read_to_string(dir.path().join("o.jsonl")).unwrap();
    let quiet = first
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|c| c["lifecycle"] == "quasi_churned")
        .expect("some customer goes quiet for 3 months");
    let id = quiet["customer_id"].as_str().unwrap();
    let inspect = |policy: Option<&Path>| {
        let mut c = bin();
        c.args(["inspect", "--store"])
            .arg(&store)
            .args(["--customer", id]);
        if let Some(p) = policy {
            c.arg("--policy").arg(p);
        }
        c.output().unwrap()
    };
    let o = inspect(None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["current"]["lifecycle"], v["published"]["lifecycle"],
        "{v}"
    );
    let default = dir.path().join("default.toml");
    std::fs::write(&default, "").unwrap();
    let o = inspect(Some(&default));
    let note = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success());
    assert!(
        note.contains("not the one the store was replayed with")
            && note.contains("quasi_churned_months"),
        "{note}"
    );
}

#[test]
fn cli_replay_inspect_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let input = history(dir.path(), 100, 5);
    let store = dir.path().join("s");
    let out = bin()
        .args(["replay", "--input"])
        .arg(&input)
        .arg("--store")
        .arg(&store)
        .arg("--out")
        .arg(dir.path().join("o.jsonl"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("events/s"), "{stdout}");
    let first = std::fs::read_to_string(dir.path().join("o.jsonl")).unwrap();
    let change: serde_json::Value = serde_json::from_str(first.lines().next().unwrap()).unwrap();
    let id = change["customer_id"].as_str().unwrap();
    let out = bin()
        .args(["inspect", "--store"])
        .arg(&store)
        .args(["--customer", id])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["customer_id"], id);
    assert!(v["current"]["level"].is_string());
    let out = bin()
        .args(["inspect", "--store"])
        .arg(&store)
        .args(["--customer", "nobody"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not in the store"));
    // An --until in the past says it changed nothing.
    let out = bin()
        .args([
            "replay",
            "--log",
            "warn",
            "--until",
            "2001-01-01",
            "--input",
        ])
        .arg(&input)
        .arg("--store")
        .arg(dir.path().join("s-until"))
        .arg("--out")
        .arg(dir.path().join("o-until.jsonl"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--until 2001-01-01T00:00:00Z is before the newest record")
            && err.contains("changed nothing"),
        "{err}"
    );
    let bad_policy = dir.path().join("p.toml");
    std::fs::write(&bad_policy, "[lifecycle]\nchurn_months = 3\n").unwrap();
    let out = bin()
        .args(["replay", "--input"])
        .arg(&input)
        .arg("--store")
        .arg(dir.path().join("s2"))
        .arg("--out")
        .arg(dir.path().join("o2.jsonl"))
        .arg("--policy")
        .arg(&bad_policy)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("churn_months"));
    let out = bin()
        .args(["replay", "--input", "/nonexistent.jsonl", "--store"])
        .arg(dir.path().join("s3"))
        .arg("--out")
        .arg(dir.path().join("o3.jsonl"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.jsonl"));
}

#[test]
fn demo_runs_with_nothing_else() {
    let out = bin().args(["demo", "--customers", "150"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        s.contains("a few status changes") && s.contains("\"level\""),
        "{s}"
    );
}

/// The same records as JSON lines and as an Avro object container replay to the same
/// status changes and dead letters.
#[test]
fn avro_container_input_replays_like_json_lines() {
    use churnwatch::codec::avro::{InputKind, InputWriter};
    let dir = tempfile::tempdir().unwrap();
    let input = history(dir.path(), 150, 6);
    // Repair orders only (one record type per container), in file order.
    let ros: Vec<serde_json::Value> = std::fs::read_to_string(&input)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["type"] == "repair_order" && churnwatch::core::event::validate(v).is_ok())
        .collect();
    assert!(ros.len() > 500);
    let json_path = dir.path().join("ro.jsonl");
    std::fs::write(
        &json_path,
        ros.iter().map(|v| v.to_string() + "\n").collect::<String>(),
    )
    .unwrap();
    let avro_path = dir.path().join("ro.avro");
    let mut w = InputWriter::new(
        std::fs::File::create(&avro_path).unwrap(),
        InputKind::RepairOrder,
    )
    .unwrap();
    for chunk in ros.chunks(100) {
        w.write_block(chunk).unwrap();
    }
    drop(w.into_inner());
    let from_json = replay(&opts(&json_path, dir.path(), "fromjson"), &mut |_| {}).unwrap();
    let mut o = opts(&avro_path, dir.path(), "fromavro");
    o.commit_every = 333; // resumable position = record index
    let from_avro = replay(&o, &mut |_| {}).unwrap();
    assert_eq!(from_json.events, ros.len() as u64);
    assert_eq!(from_avro.events, ros.len() as u64);
    assert!(from_json.status_changes > 0);
    assert_eq!(
        std::fs::read(dir.path().join("fromjson.jsonl")).unwrap(),
        std::fs::read(dir.path().join("fromavro.jsonl")).unwrap()
    );
}
