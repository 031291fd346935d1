//! Reliability at the edges of time and size, against the real file pipeline and a real
//! sled store: one record dated far in the future (or the past) must not move stream
//! time for everyone; it is dead-lettered with a clear code, and the output is what it
//! would have been without it.

use churnwatch::core::time::Ts;
use churnwatch::edge::replay::{replay, ReplayOptions, ReplaySummary};
use churnwatch::generate::{generate, GenConfig};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn history(dir: &Path) -> PathBuf {
    let cfg = GenConfig {
        customers: 400,
        dealers: 3,
        years: 3,
        seed: 5,
        ..GenConfig::default()
    };
    let s = generate(&cfg, &dir.join("history"), &mut |_| {}).unwrap();
    s.files
        .into_iter()
        .find(|f| f.extension().is_some_and(|e| e == "jsonl"))
        .unwrap()
}

fn run(input: &Path, dir: &Path, name: &str) -> (ReplaySummary, Vec<u8>, Vec<Value>) {
    let mut o = ReplayOptions::new(
        vec![input.to_path_buf()],
        dir.join(format!("{name}.store")),
        dir.join(format!("{name}.jsonl")),
    );
    o.fresh = true;
    o.commit_every = 500;
    // A fixed "now", so the test means the same on any day.
    o.as_of = Some(Ts::parse_rfc3339("2026-12-01T00:00:00Z").unwrap());
    let s = replay(&o, &mut |_| {}).unwrap();
    let out = std::fs::read(&o.out).unwrap();
    let dead = std::fs::read_to_string(&o.dead_letter)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (s, out, dead)
}

/// The history with `extra` lines inserted after line `at`.
fn with_lines(input: &Path, dir: &Path, at: usize, extra: &[String]) -> PathBuf {
    let text = std::fs::read_to_string(input).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    for (i, l) in extra.iter().enumerate() {
        lines.insert(at + i, l);
    }
    let path = dir.join("tampered-input.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

#[test]
fn one_far_future_or_far_past_record_changes_nothing_but_the_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let input = history(dir.path());
    let (clean, clean_out, clean_dead) = run(&input, dir.path(), "clean");
    let visit = |id: &str, t: &str| {
        format!(
            r#"{{"type":"visit","event_id":"{id}","event_time":"{t}","dealer_id":"D1","customer_id":"X1","visit_type":"service"}}"#
        )
    };
    let extra = [
        visit("future", "9999-12-31T00:00:00Z"),
        r#"{"type":"tick","event_time":"2999-01-01T00:00:00Z"}"#.to_string(),
        visit("pre-epoch", "1969-07-20T20:17:00Z"),
        visit("after-as-of", "2026-12-05T00:00:00Z"),
    ];
    let lines = std::fs::read_to_string(&input).unwrap().lines().count();
    let tampered = with_lines(&input, dir.path(), lines / 3, &extra);
    let (t, t_out, t_dead) = run(&tampered, dir.path(), "tampered");
    assert_eq!(
        t.bad,
        clean.bad + 4,
        "each implausible record is rejected: {t:?} {clean:?}"
    );
    assert_eq!(t.customers_by_level, clean.customers_by_level);
    assert_eq!(t.status_changes, clean.status_changes);
    assert!(t_out == clean_out, "status changes differ");
    let implausible: Vec<&Value> = t_dead
        .iter()
        .filter(|d| d["code"] == "implausible_time")
        .collect();
    assert_eq!(implausible.len(), 4);
    assert_eq!(t_dead.len(), clean_dead.len() + 4);
    for d in implausible {
        assert_eq!(d["outcome"], "rejected");
        assert_eq!(d["field"], "event_time");
    }
}

#[test]
fn dead_letters_name_the_line_even_after_blank_lines() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let visit = r#"{"type":"visit","event_id":"e1","event_time":"2024-01-01T10:00:00Z","dealer_id":"D1","customer_id":"C1","visit_type":"service"}"#;
    // Line 2 is blank, line 3 only Unicode white space (an ideographic space).
    std::fs::write(&input, format!("{visit}\n\n\u{3000}\nnot json\n")).unwrap();
    let (s, _, dead) = run(&input, dir.path(), "blank");
    assert_eq!((s.records, s.bad), (2, 1));
    assert_eq!(dead[0]["record"], 4, "the fourth line: {dead:?}");
}
