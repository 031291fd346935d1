//! A damaged state store must never crash churnwatch: against the real binary and a
//! real store on disk (each engine: fjall, the default, and sled), every file of the
//! store is truncated (to nothing, to half, by a few bytes), has a byte flipped at
//! several offsets, or is deleted, and then
//! `inspect` and `replay` (resume) run on it. Each must either succeed with exactly
//! the undamaged store's answer (no silent rollback to an older commit), or fail
//! cleanly (exit 1) saying the store is damaged and how to rebuild it; and the
//! rebuild it names (`replay --fresh`) must then work.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const COMMIT_EVERY: &str = "50";

thread_local! {
    /// The store engine the current test runs against.
    static ENGINE: std::cell::Cell<&'static str> = const { std::cell::Cell::new("fjall") };
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_churnwatch"))
}

fn run(c: &mut Command) -> Output {
    c.output().expect("run churnwatch")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The replay of `input` into `store`, writing `<out>` and `<out>.dead.jsonl`.
fn replay(input: &Path, store: &Path, out: &Path, fresh: bool) -> Command {
    let mut c = bin();
    c.args([
        "replay",
        "--log",
        "warn",
        "--commit-every",
        COMMIT_EVERY,
        "--store-engine",
        ENGINE.with(|e| e.get()),
        "--input",
    ])
    .arg(input)
    .arg("--store")
    .arg(store)
    .arg("--out")
    .arg(out);
    if fresh {
        c.arg("--fresh");
    }
    c
}

fn inspect(store: &Path, customer: &str) -> Command {
    let mut c = bin();
    c.args(["inspect", "--log", "warn", "--store"])
        .arg(store)
        .args(["--customer", customer]);
    c
}

fn dead(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(".dead.jsonl");
    PathBuf::from(s)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// One way of damaging a store file.
#[derive(Debug, Clone, Copy)]
enum Damage {
    Truncate(u64),
    Flip(u64),
    Delete,
}

impl Damage {
    fn apply(self, path: &Path) {
        match self {
            Damage::Truncate(n) => std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .unwrap()
                .set_len(n)
                .unwrap(),
            Damage::Flip(at) => {
                let mut b = std::fs::read(path).unwrap();
                b[at as usize] ^= 0x5a;
                std::fs::write(path, b).unwrap();
            }
            Damage::Delete if path.is_dir() => std::fs::remove_dir_all(path).unwrap(),
            Damage::Delete => std::fs::remove_file(path).unwrap(),
        }
    }
}

/// What the undamaged store answers.
struct Reference {
    input: PathBuf,
    out: Vec<u8>,
    dead: Vec<u8>,
    customer: String,
    inspected: serde_json::Value,
}

/// Checks one command's result on a damaged store; returns the violations.
fn judge(
    case: &str,
    what: &str,
    o: &Output,
    ok: impl FnOnce(&Output) -> Option<String>,
) -> Vec<String> {
    let err = text(&o.stderr);
    let code = o.status.code();
    let mut v = Vec::new();
    if code == Some(101) || err.contains("panicked") {
        v.push(format!("{case}: {what} panicked: {}", first_line(&err)));
    } else if o.status.success() {
        if let Some(bad) = ok(o) {
            v.push(format!("{case}: {what} succeeded inconsistently: {bad}"));
        }
    } else if code != Some(1) {
        v.push(format!(
            "{case}: {what} ended with {:?}: {}",
            o.status,
            first_line(&err)
        ));
    } else if !(err.contains("damaged")
        && err.contains("replay --fresh")
        && err.contains("state.dir"))
    {
        v.push(format!(
            "{case}: {what} failed without saying the store is damaged and how to rebuild it: {}",
            first_line(&err)
        ));
    }
    v
}

fn first_line(s: &str) -> String {
    s.lines()
        .find(|l| l.contains("panicked") || l.starts_with("error"))
        .or_else(|| s.lines().next())
        .unwrap_or("")
        .chars()
        .take(300)
        .collect()
}

/// Damages a copy of the store one way, then runs `inspect`, `replay` and (if either
/// refused the store) the rebuild `replay --fresh`.
fn check_case(
    dir: &Path,
    base: &Path,
    base_out: &Path,
    r: &Reference,
    file: &str,
    damage: Damage,
) -> Vec<String> {
    let case = format!("{file} {damage:?}");
    let work = dir.join("case");
    let _ = std::fs::remove_dir_all(&work);
    let store = work.join("store");
    copy_dir(base, &store);
    let out = work.join("out.jsonl");
    std::fs::copy(base_out, &out).unwrap();
    std::fs::copy(dead(base_out), dead(&out)).unwrap();
    damage.apply(&store.join(file));

    let mut v = Vec::new();
    let i = run(&mut inspect(&store, &r.customer));
    v.extend(judge(&case, "inspect", &i, |o| {
        let got: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
        (got != r.inspected).then(|| format!("customer view differs: {got}"))
    }));
    let p = run(&mut replay(&r.input, &store, &out, false));
    v.extend(judge(&case, "replay", &p, |o| {
        if !text(&o.stdout).contains("already complete") {
            return Some("ran the replay again (the store lost commits silently)".into());
        }
        (std::fs::read(&out).unwrap() != r.out || std::fs::read(dead(&out)).unwrap() != r.dead)
            .then(|| "outputs changed".into())
    }));
    let outcome = |o: &Output| match o.status.code() {
        Some(0) => "ok".to_string(),
        c => format!("{c:?} {}", first_line(&text(&o.stderr))),
    };
    eprintln!(
        "{case}\n    inspect: {}\n    replay:  {}",
        outcome(&i),
        outcome(&p)
    );
    if !(i.status.success() && p.status.success()) {
        let f = run(&mut replay(&r.input, &store, &out, true));
        if !f.status.success() {
            v.push(format!(
                "{case}: the rebuild `replay --fresh` failed: {}",
                first_line(&text(&f.stderr))
            ));
        } else if std::fs::read(&out).unwrap() != r.out
            || std::fs::read(dead(&out)).unwrap() != r.dead
        {
            v.push(format!(
                "{case}: the rebuild `replay --fresh` gave other outputs"
            ));
        }
    }
    v
}

/// Truncations and flips at offsets spread over a file of `len` bytes, and deletion.
fn damages(len: u64) -> Vec<Damage> {
    let mut d = vec![Damage::Delete];
    if len > 0 {
        d.push(Damage::Truncate(0));
        d.push(Damage::Truncate(len / 2));
        d.push(Damage::Truncate(len.saturating_sub(3)));
        let mut at: Vec<u64> = [0, 9, len / 4, len / 2, len * 3 / 4, len - 1]
            .into_iter()
            .filter(|&o| o < len)
            .collect();
        at.dedup();
        d.extend(at.into_iter().map(Damage::Flip));
    }
    d
}

/// Every file under `dir`, as a path relative to it, with its length; directories
/// too (length 0), so that deleting a whole folder is a case.
fn store_files(dir: &Path, rel: &Path, out: &mut Vec<(String, u64)>) {
    for e in std::fs::read_dir(dir.join(rel)).unwrap() {
        let e = e.unwrap();
        let name = rel.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            out.push((name.to_string_lossy().into_owned(), 0));
            store_files(dir, &name, out);
        } else {
            let len = e.metadata().unwrap().len();
            out.push((name.to_string_lossy().into_owned(), len));
        }
    }
}

#[test]
fn a_damaged_fjall_store_fails_cleanly_or_answers_as_before_never_panics() {
    ENGINE.with(|e| e.set("fjall"));
    damage_matrix("version");
}

#[test]
fn a_damaged_sled_store_fails_cleanly_or_answers_as_before_never_panics() {
    ENGINE.with(|e| e.set("sled"));
    damage_matrix("db");
}

/// Damages each file of a finished replay's store (which must hold `must_have`) every
/// way in [`damages`] and checks every case.
fn damage_matrix(must_have: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let g = run(bin()
        .args([
            "generate",
            "--log",
            "warn",
            "--customers",
            "400",
            "--years",
            "2",
            "--seed",
            "1",
            "--out",
        ])
        .arg(dir.join("gen")));
    assert!(g.status.success(), "{}", text(&g.stderr));
    let input = dir.join("gen/events.jsonl");

    // The reference: one uninterrupted run.
    let ref_out = dir.join("ref.jsonl");
    let p = run(&mut replay(&input, &dir.join("ref.store"), &ref_out, true));
    assert!(p.status.success(), "{}", text(&p.stderr));
    let out = std::fs::read(&ref_out).unwrap();
    let first: serde_json::Value =
        serde_json::from_str(text(&out).lines().next().unwrap()).unwrap();
    let customer = first["customer_id"].as_str().unwrap().to_string();
    let i = run(&mut inspect(&dir.join("ref.store"), &customer));
    assert!(i.status.success(), "{}", text(&i.stderr));
    let r = Reference {
        input: input.clone(),
        dead: std::fs::read(dead(&ref_out)).unwrap(),
        inspected: serde_json::from_slice(&i.stdout).unwrap(),
        out,
        customer,
    };

    // The store under test: the same replay, then opened twice more (a resume that
    // finds it complete, an inspect), so that it holds a sled snapshot besides the log.
    let base = dir.join("base.store");
    let base_out = dir.join("base.jsonl");
    for c in [
        &mut replay(&input, &base, &base_out, true),
        &mut replay(&input, &base, &base_out, false),
        &mut inspect(&base, &r.customer),
    ] {
        let o = run(c);
        assert!(o.status.success(), "{}", text(&o.stderr));
    }
    assert!(std::fs::read(&base_out).unwrap() == r.out);

    let mut files = Vec::new();
    store_files(&base, Path::new(""), &mut files);
    files.sort();
    assert!(files.iter().any(|(f, _)| f == must_have), "{files:?}");
    let mut violations = Vec::new();
    let mut cases = 0;
    for (file, len) in &files {
        for d in damages(*len) {
            cases += 1;
            violations.extend(check_case(dir, &base, &base_out, &r, file, d));
        }
    }
    assert!(
        violations.is_empty(),
        "{} violations in {cases} damage cases (store files {files:?}):\n{}",
        violations.len(),
        violations.join("\n")
    );
}

/// sled's recovery keeps the intact prefix of a damaged log and drops the rest without
/// an error. Here the store's sled files are put back as they were a few commits
/// before the end (a copy taken right after a commit, as a crash would leave them):
/// `inspect` and `replay` must report the lost commits instead of answering from the
/// older state or silently redoing the work. Outputs cut shorter than the store
/// committed them must be reported too, not padded.
#[test]
fn a_fjall_store_that_lost_commits_and_outputs_cut_short_are_reported() {
    ENGINE.with(|e| e.set("fjall"));
    lost_commits(churnwatch::store::StoreEngine::Fjall);
}

#[test]
fn a_sled_store_that_lost_commits_and_outputs_cut_short_are_reported() {
    ENGINE.with(|e| e.set("sled"));
    lost_commits(churnwatch::store::StoreEngine::Sled);
}

fn lost_commits(engine: churnwatch::store::StoreEngine) {
    use churnwatch::edge::replay::{replay as run_replay, ReplayOptions};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let g = run(bin()
        .args([
            "generate",
            "--log",
            "warn",
            "--customers",
            "200",
            "--years",
            "2",
            "--seed",
            "1",
            "--out",
        ])
        .arg(dir.join("gen")));
    assert!(g.status.success(), "{}", text(&g.stderr));
    let input = dir.join("gen/events.jsonl");
    let store = dir.join("store");
    let out = dir.join("out.jsonl");
    let older = dir.join("older");
    let mut o = ReplayOptions::new(vec![input.clone()], store.clone(), out.clone());
    o.commit_every = 50;
    o.store_options.engine = Some(engine);
    let mut commits = 0;
    run_replay(&o, &mut |_| {
        commits += 1;
        if commits == 20 {
            // The engine's files as a crash right after this commit leaves them.
            copy_dir(&store, &older);
            let _ = std::fs::remove_file(older.join("churnwatch.mark"));
        }
    })
    .unwrap();
    assert!(commits > 25, "{commits} commits");
    let whole = std::fs::read(&out).unwrap();
    let customer = serde_json::from_str::<serde_json::Value>(text(&whole).lines().next().unwrap())
        .unwrap()["customer_id"]
        .as_str()
        .unwrap()
        .to_string();

    // Outputs cut short: refused, and the file is left as it is.
    let f = std::fs::OpenOptions::new().write(true).open(&out).unwrap();
    f.set_len(whole.len() as u64 / 2).unwrap();
    let p = run(&mut replay(&input, &store, &out, false));
    let err = text(&p.stderr);
    assert_eq!(p.status.code(), Some(1), "{err}");
    assert!(
        err.contains("replay --fresh") && err.contains("cut"),
        "{err}"
    );
    assert_eq!(
        std::fs::metadata(&out).unwrap().len(),
        whole.len() as u64 / 2
    );
    std::fs::write(&out, &whole).unwrap();

    // The engine's files of commit 20 with the mark of the finished replay.
    for e in std::fs::read_dir(&store).unwrap() {
        let e = e.unwrap();
        if e.file_name() != "churnwatch.mark" {
            if e.file_type().unwrap().is_dir() {
                std::fs::remove_dir_all(e.path()).unwrap();
            } else {
                std::fs::remove_file(e.path()).unwrap();
            }
        }
    }
    copy_dir(&older, &store);
    for c in [
        &mut inspect(&store, &customer),
        &mut replay(&input, &store, &out, false),
    ] {
        let o = run(c);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{c:?}: {err}");
        assert!(
            err.contains("damaged")
                && err.contains("lost commits")
                && err.contains("replay --fresh"),
            "{err}"
        );
    }
    assert_eq!(std::fs::read(&out).unwrap(), whole, "outputs touched");

    // Restored on purpose: without the mark the replay resumes from commit 20 and ends
    // with the same outputs.
    std::fs::remove_file(store.join("churnwatch.mark")).unwrap();
    let p = run(&mut replay(&input, &store, &out, false));
    assert!(p.status.success(), "{}", text(&p.stderr));
    assert!(!text(&p.stdout).contains("already complete"));
    assert!(
        std::fs::read(&out).unwrap() == whole,
        "outputs differ after the resume"
    );
}
